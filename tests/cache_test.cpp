// Completion cache: keys, records, the SQLite backend (threads, processes, restart, limits, damage)
// and the generate --cache CLI. A hit must run no forward pass: a layer callback counts them.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "minigpt/frugal/completion_cache.hpp"
#include "test_data.hpp"
#ifdef MINIGPT_HAVE_SQLITE
#include "minigpt/frugal/cache_sqlite.hpp"
#endif

using namespace minigpt;
using namespace minigpt::frugal;
namespace fs = std::filesystem;

namespace {

using minigpt::test::temp_path;

completion_request request(std::vector<std::int32_t> prompt, std::uint64_t seed = 42, float temp = 0.8f) {
    completion_request r;
    r.model_fingerprint = "model-A";
    r.prompt_tokens = std::move(prompt);
    r.params.max_tokens = 16;
    r.params.sampling.seed = seed;
    r.params.sampling.temperature = temp;
    return r;
}

completion sample_completion(const std::string& text) {
    completion c;
    c.text = text;
    c.tokens = {1, 2, 3};
    c.logprobs = {-0.5f, -1.25f, -2.0f};
    c.reason = stop_reason::stop_string;
    c.stop_string = "\n";
    c.stats.n_prompt_tokens = 7;
    c.stats.n_generated = 3;
    return c;
}


}  // namespace

TEST(CompletionKey, EveryParameterCounts) {
    const auto base = make_key(request({1, 2, 3}));
    EXPECT_EQ(make_key(request({1, 2, 3})).bytes, base.bytes);
    EXPECT_NE(make_key(request({1, 2, 4})).bytes, base.bytes);
    EXPECT_NE(make_key(request({1, 2, 3}, 43)).bytes, base.bytes);  // another seed
    auto r = request({1, 2, 3});
    r.params.sampling.top_k = 41;
    EXPECT_NE(make_key(r).bytes, base.bytes);
    r = request({1, 2, 3});
    r.params.stop = {"x"};
    EXPECT_NE(make_key(r).bytes, base.bytes);
    r = request({1, 2, 3});
    r.params.sampling.logit_bias = {{5, -1.0f}};
    EXPECT_NE(make_key(r).bytes, base.bytes);
    r = request({1, 2, 3});
    r.model_fingerprint = "model-B";
    EXPECT_NE(make_key(r).bytes, base.bytes);
    // Adapters: a set, order-free, but present or not matters.
    r = request({1, 2, 3});
    r.adapters = {"a.gguf@1", "b.gguf@0.5"};
    auto r2 = r;
    r2.adapters = {"b.gguf@0.5", "a.gguf@1"};
    EXPECT_EQ(make_key(r).bytes, make_key(r2).bytes);
    EXPECT_NE(make_key(r).bytes, base.bytes);
    // Greedy: the seed cannot change the output, so it is not part of the key.
    EXPECT_EQ(make_key(request({1}, 1, 0.0f)).bytes, make_key(request({1}, 2, 0.0f)).bytes);
    // Scope: the key without the prompt.
    EXPECT_EQ(make_key(request({9, 9})).scope, base.scope);
}

TEST(CompletionRecord, RoundTripAndDamage) {
    const auto key = make_key(request({1, 2, 3}));
    const auto c = sample_completion("hello");
    const std::string rec = encode_record(key, c);
    const auto [k, d] = decode_record(rec, "test");
    EXPECT_EQ(k, key.bytes);
    EXPECT_EQ(d.text, "hello");
    EXPECT_EQ(d.tokens, c.tokens);
    EXPECT_EQ(d.logprobs, c.logprobs);
    EXPECT_EQ(d.reason, stop_reason::stop_string);
    EXPECT_EQ(d.stats.n_generated, 3);
    // Every truncation and every single-byte change is detected (never a crash, never a wrong answer).
    for (std::size_t n = 0; n < rec.size(); ++n) EXPECT_THROW(decode_record(std::string_view(rec).substr(0, n), "test"), format_error) << n;
    for (std::size_t i = 0; i < rec.size(); ++i) {
        std::string bad = rec;
        bad[i] = static_cast<char>(bad[i] ^ 0x5a);
        EXPECT_THROW(decode_record(bad, "test"), format_error) << i;
    }
    try {
        decode_record(rec.substr(0, 20), "cache.db entry 1");
    } catch (const format_error& e) {
        EXPECT_NE(std::string(e.what()).find("cache.db entry 1"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("at byte"), std::string::npos);
    }
}

#ifdef MINIGPT_HAVE_SQLITE

TEST(SqliteCache, HitMissSeedAndRestart) {
    const auto path = temp_path("hit.db");
    {
        completion_cache cache(std::make_unique<sqlite_cache>(path));
        EXPECT_FALSE(cache.lookup(request({1, 2, 3})));
        cache.store(request({1, 2, 3}), sample_completion("first"));
        const auto hit = cache.lookup(request({1, 2, 3}));
        ASSERT_TRUE(hit);
        EXPECT_TRUE(hit->from_cache);
        EXPECT_EQ(hit->text, "first");
        EXPECT_FALSE(cache.lookup(request({1, 2, 3}, 7)));  // another seed misses
        auto r = request({1, 2, 3});
        r.params.sampling.top_p = 0.5f;
        EXPECT_FALSE(cache.lookup(r));                       // another parameter misses
        EXPECT_EQ(cache.stats().hits, 1u);
        EXPECT_EQ(cache.stats().misses, 3u);
    }
    // After a restart (new connection on the same file).
    completion_cache again(std::make_unique<sqlite_cache>(path));
    const auto hit = again.lookup(request({1, 2, 3}));
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->text, "first");
    EXPECT_EQ(hit->logprobs, sample_completion("first").logprobs);
}

TEST(SqliteCache, RandomSeedIsNotReusedUnlessAllowed) {
    const auto path = temp_path("seed.db");
    completion_cache cache(std::make_unique<sqlite_cache>(path));
    const auto r = request({5}, k_random_seed);
    cache.store(r, sample_completion("random"));
    EXPECT_FALSE(cache.lookup(r));
    EXPECT_EQ(cache.stats().bypassed, 1u);  // lookups that skipped the cache
    EXPECT_EQ(cache.stats().stores, 0u);
    completion_cache lax(std::make_unique<sqlite_cache>(path), cache_options{.reuse_random_seed = true, .embed = {}, .semantic_threshold = 0});
    lax.store(r, sample_completion("random"));
    EXPECT_TRUE(lax.lookup(r));
    // Greedy with the random seed is reproducible and cached.
    const auto g = request({6}, k_random_seed, 0.0f);
    cache.store(g, sample_completion("greedy"));
    EXPECT_TRUE(cache.lookup(g));
}

TEST(SqliteCache, ThreadsAndProcessesShareOneFile) {
    const auto path = temp_path("mp.db");
    { sqlite_cache init(path); }
    // Two child processes and two threads in this one, each with its own connection, write at once.
    std::vector<pid_t> kids;
    for (int p = 0; p < 2; ++p) {
        const pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int rc = 0;
            try {
                completion_cache c(std::make_unique<sqlite_cache>(path));
                for (int i = 0; i < 40; ++i) c.store(request({100 + p, i}), sample_completion("proc" + std::to_string(p) + ":" + std::to_string(i)));
            } catch (...) { rc = 1; }
            _exit(rc);
        }
        kids.push_back(pid);
    }
    completion_cache shared(std::make_unique<sqlite_cache>(path));
    std::vector<std::thread> threads;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 40; ++i) {
                shared.store(request({200 + t, i}), sample_completion("thr" + std::to_string(t) + ":" + std::to_string(i)));
                auto h = shared.lookup(request({200 + t, i}));
                if (!h || h->text != "thr" + std::to_string(t) + ":" + std::to_string(i)) ++wrong;
            }
        });
    for (auto& t : threads) t.join();
    for (auto pid : kids) {
        int status = 0;
        waitpid(pid, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    EXPECT_EQ(wrong.load(), 0);
    completion_cache reader(std::make_unique<sqlite_cache>(path));
    for (int p = 0; p < 2; ++p)
        for (int i = 0; i < 40; ++i) {
            auto h = reader.lookup(request({100 + p, i}));
            ASSERT_TRUE(h) << p << " " << i;
            EXPECT_EQ(h->text, "proc" + std::to_string(p) + ":" + std::to_string(i));
        }
}

TEST(SqliteCache, LimitsEvictLeastRecentlyUsedAndExpire) {
    const auto path = temp_path("lru.db");
    auto backend = std::make_unique<sqlite_cache>(path, sqlite_cache_options{.max_entries = 3});
    auto* raw = backend.get();
    completion_cache cache(std::move(backend));
    for (int i = 0; i < 3; ++i) cache.store(request({i}), sample_completion(std::to_string(i)));
    ASSERT_TRUE(cache.lookup(request({0})));  // 0 becomes the most recently used
    cache.store(request({3}), sample_completion("3"));
    cache.store(request({4}), sample_completion("4"));
    EXPECT_EQ(raw->size().first, 3);
    EXPECT_TRUE(cache.lookup(request({0})));
    EXPECT_FALSE(cache.lookup(request({1})));
    EXPECT_FALSE(cache.lookup(request({2})));
    EXPECT_TRUE(cache.lookup(request({4})));

    // Byte limit: room for about two records.
    const auto one = static_cast<std::int64_t>(make_key(request({0})).bytes.size() + encode_record(make_key(request({0})), sample_completion("0")).size());
    completion_cache small(std::make_unique<sqlite_cache>(temp_path("bytes.db"), sqlite_cache_options{.max_bytes = 2 * one + one / 2}));
    for (int i = 0; i < 4; ++i) small.store(request({i}), sample_completion(std::to_string(i)));
    EXPECT_FALSE(small.lookup(request({0})));
    EXPECT_FALSE(small.lookup(request({1})));
    EXPECT_TRUE(small.lookup(request({2})));
    EXPECT_TRUE(small.lookup(request({3})));

    // TTL: an entry older than the limit is a miss.
    completion_cache ttl(std::make_unique<sqlite_cache>(temp_path("ttl.db"), sqlite_cache_options{.ttl_seconds = 0.2}));
    ttl.store(request({1}), sample_completion("old"));
    EXPECT_TRUE(ttl.lookup(request({1})));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(ttl.lookup(request({1})));
}

TEST(SqliteCache, GarbageTruncatedAndTamperedFilesAreErrors) {
    const auto garbage = temp_path("garbage.db");
    {
        std::ofstream out(garbage, std::ios::binary);
        for (int i = 0; i < 8192; ++i) out.put(static_cast<char>((i * 131 + 7) & 0xff));
    }
    try {
        sqlite_cache c(garbage);
        FAIL() << "a garbage file was opened as a cache";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find(garbage), std::string::npos) << e.what();
    }

    // A real cache cut short.
    const auto path = temp_path("trunc.db");
    {
        completion_cache c(std::make_unique<sqlite_cache>(path));
        for (int i = 0; i < 200; ++i) c.store(request({i, i + 1}), sample_completion(std::string(200, 'x') + std::to_string(i)));
    }
    const auto full = fs::file_size(path);
    ASSERT_GT(full, 16384u);
    fs::resize_file(path, full / 2);
    bool threw = false;
    try {
        completion_cache c(std::make_unique<sqlite_cache>(path));
        for (int i = 0; i < 200; ++i) {
            auto h = c.lookup(request({i, i + 1}));
            if (h) {
                EXPECT_EQ(h->text, std::string(200, 'x') + std::to_string(i));  // never another answer
            }
        }
    } catch (const error& e) {
        threw = true;
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_TRUE(threw);

    // A record altered inside a healthy database: the checksum catches it.
    const auto tampered = temp_path("tamper.db");
    {
        completion_cache c(std::make_unique<sqlite_cache>(tampered));
        c.store(request({1}), sample_completion("right answer"));
    }
    {
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(tampered.c_str(), &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, "UPDATE minigpt_completions SET record = CAST(REPLACE(CAST(record AS TEXT), 'right', 'wrong') AS BLOB)",
                               nullptr, nullptr, nullptr), SQLITE_OK);
        sqlite3_close(db);
    }
    completion_cache c(std::make_unique<sqlite_cache>(tampered));
    EXPECT_THROW(c.lookup(request({1})), format_error);
}

TEST(SqliteCache, SemanticMatchIsOffByDefaultAndUsesTheCallersThreshold) {
    // A toy embedding: counts of a few words.
    auto embed = [](std::string_view t) {
        std::vector<float> v(4, 0.0f);
        const char* words[] = {"capital", "france", "germany", "weather"};
        for (int i = 0; i < 4; ++i)
            for (std::size_t at = t.find(words[i]); at != std::string_view::npos; at = t.find(words[i], at + 1)) v[i] += 1;
        return v;
    };
    const auto path = temp_path("sem.db");
    completion_cache exact(std::make_unique<sqlite_cache>(path));
    exact.store(request({1, 2}), sample_completion("Paris"), "capital of france");
    EXPECT_FALSE(exact.lookup(request({1, 3}), "the capital of france?"));  // off by default

    completion_cache sem(std::make_unique<sqlite_cache>(path), {.embed = embed, .semantic_threshold = 0.95});
    sem.store(request({1, 2}), sample_completion("Paris"), "capital of france");
    auto h = sem.lookup(request({1, 3}), "the capital of france?");
    ASSERT_TRUE(h);
    EXPECT_TRUE(h->semantic);
    EXPECT_EQ(h->text, "Paris");
    EXPECT_FALSE(sem.lookup(request({1, 4}), "capital of germany"));  // cosine 0.5 < 0.95
    auto other = request({1, 3});
    other.params.sampling.top_k = 3;
    EXPECT_FALSE(sem.lookup(other, "the capital of france?"));  // other parameters: other scope
    EXPECT_EQ(sem.stats().semantic_hits, 1u);
}

// The acceptance test with a real model: the second identical request runs no forward pass.
TEST(SqliteCache, SecondRequestRunsNoForwardPass) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(test::shared_path("models/stories260K.gguf"));
    completion_cache cache(std::make_unique<sqlite_cache>(temp_path("model.db")));
    generation_params gp;
    gp.max_tokens = 12;
    gp.sampling.seed = 7;
    completion_request req{lm.weights->fingerprint(), {}, lm.vocab->encode("Once upon a time", true), gp};
    int n_layer_calls = 0;
    auto run = [&] {
        context ctx(lm.weights, {.n_ctx = 128});
        ctx.set_layer_callback([&](std::int64_t, std::span<const float>, std::int64_t) { ++n_layer_calls; });
        return cache.get_or_generate(req, [&] { return generate_completion(lm, ctx, req.prompt_tokens, gp); });
    };
    const auto first = run();
    const int calls_first = n_layer_calls;
    EXPECT_GT(calls_first, 0);
    EXPECT_EQ(first.tokens.size(), 12u);
    EXPECT_EQ(first.logprobs.size(), 12u);
    const auto second = run();
    EXPECT_EQ(n_layer_calls, calls_first);  // no forward pass at all
    EXPECT_TRUE(second.from_cache);
    EXPECT_EQ(second.text, first.text);
    EXPECT_EQ(second.tokens, first.tokens);
    EXPECT_EQ(second.logprobs, first.logprobs);
    // A different seed runs the model again.
    req.params.sampling.seed = 8;
    gp.sampling.seed = 8;
    run();
    EXPECT_GT(n_layer_calls, calls_first);
    EXPECT_EQ(cache.stats().hits, 1u);
    EXPECT_EQ(cache.stats().misses, 2u);
    // The recorded log-probabilities are the model's: recompute the first one with a fresh context.
    context ctx(lm.weights, {.n_ctx = 128});
    ctx.decode(req.prompt_tokens);
    const auto row = ctx.logits(0);
    double mx = -1e30, s = 0;
    for (float v : row) mx = std::max(mx, double(v));
    for (float v : row) s += std::exp(double(v) - mx);
    EXPECT_NEAR(first.logprobs[0], double(row[static_cast<std::size_t>(first.tokens[0])]) - mx - std::log(s), 1e-5);
}

// Across processes through the CLI: the second run prints the same text and reports a hit.
TEST(SqliteCache, CliSecondRunIsAHit) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto path = temp_path("cli.db");
    const std::string cmd = std::string(MINIGPT_TOOL) + " generate -m " + test::shared_path("models/stories260K.gguf") +
                            " -p 'Once upon a time' -n 20 --seed 3 --cache " + path + " 2>&1";
    auto run = [&] {
        FILE* p = popen(cmd.c_str(), "r");
        std::string out;
        char buf[512];
        while (p && std::fgets(buf, sizeof buf, p)) out += buf;
        EXPECT_EQ(p ? pclose(p) : -1, 0) << out;
        return out;
    };
    const auto a = run();
    const auto b = run();
    EXPECT_NE(a.find("cache: 0 hits, 1 miss"), std::string::npos) << a;
    EXPECT_NE(b.find("cache: 1 hit, 0 misses"), std::string::npos) << b;
    EXPECT_EQ(a.substr(0, a.find("\nprompt eval")), b.substr(0, b.find("\nprompt eval")));  // the text, before the timings
    // A garbage cache file is a clear error, exit status 1.
    const auto bad = temp_path("cli-bad.db");
    { std::ofstream(bad) << std::string(5000, 'z'); }
    const std::string badcmd = std::string(MINIGPT_TOOL) + " generate -m " + test::shared_path("models/stories260K.gguf") +
                               " -p x -n 2 --cache " + bad + " 2>&1";
    FILE* p = popen(badcmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    EXPECT_NE(pclose(p), 0);
    EXPECT_NE(out.find("error"), std::string::npos) << out;
}

#else
TEST(SqliteCache, Skipped) { GTEST_SKIP() << "built without SQLite (libsqlite3-dev)"; }
#endif

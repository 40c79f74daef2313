// `minigpt serve --cache`: the completion cache in the server, driven as clients drive it (curl
// against the real binary on a free loopback port). A second identical request is answered from the
// cache: the response equals the first, and the engine's counters in GET /metrics (requests, tokens
// generated, steps) do not move, so no forward pass ran; streamed and chat requests hit the same way;
// another seed or other parameters miss; sampling without a seed and logprobs requests bypass it;
// the entries survive a restart of the server (SQLite) and are shared by two servers (Redis, when
// redis-server is installed); a file that is not a cache stops the server with an error naming it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "redis_helpers.hpp"
#include "serve_helpers.hpp"
#include "test_data.hpp"

using json = nlohmann::json;
using minigpt::test::run;

namespace {

using minigpt::test::greedy_completion;
using minigpt::test::serve_process;

// `minigpt serve` with two slots on the test model (tests/serve_helpers.hpp).
serve_process cache_server(const std::string& flags) {
    return serve_process(minigpt::test::serve_model(), "-np 2 -c 1024 " + flags);
}

bool built_without(const serve_process& s, const char* library) {
    return s.log().find(std::string("built without ") + library) != std::string::npos;
}

// The concatenated text of a streamed response, and its finish reason.
std::pair<std::string, std::string> streamed_text(const serve_process& s, const std::string& path, json body) {
    body["stream"] = true;
    std::string text, finish;
    bool done = false;
    for (const auto& payload : s.stream(path, body)) {
        if (payload == "[DONE]") { done = true; continue; }
        const auto c = json::parse(payload)["choices"][0];
        if (c.contains("text")) text += c["text"].get<std::string>();
        if (c.contains("delta") && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
        if (!c["finish_reason"].is_null()) finish = c["finish_reason"].get<std::string>();
    }
    EXPECT_TRUE(done) << "no [DONE]";
    return {text, finish};
}

// The engine's counters: any forward pass moves at least one of them.
std::vector<double> engine_counters(const serve_process& s) {
    return {s.metric("minigpt_requests_total"), s.metric("minigpt_tokens_generated_total"), s.metric("minigpt_engine_steps_total"),
            s.metric("minigpt_prompt_tokens_evaluated_total")};
}

}  // namespace

TEST(ServerCache, SecondIdenticalRequestSkipsTheEngine) {
    const auto dir = minigpt::test::temp_dir("server-cache");
    const std::string file = (dir / "completions.sqlite").string();
    serve_process s = cache_server("--cache " + file);
    if (s.port() == 0 && built_without(s, "SQLite")) GTEST_SKIP() << "minigpt was built without SQLite";
    ASSERT_GT(s.port(), 0) << s.log();
    EXPECT_NE(s.log().find("completion cache " + file), std::string::npos) << s.log();

    // First request: a miss, generated and stored.
    const json req = greedy_completion("Once upon a time", 24);
    const auto first = s.post("/v1/completions", req);
    ASSERT_TRUE(first.contains("choices")) << first;
    EXPECT_EQ(s.metric("minigpt_cache_misses_total"), 1);
    EXPECT_EQ(s.metric("minigpt_cache_hits_total"), 0);
    EXPECT_EQ(s.metric("minigpt_cache_stores_total"), 1);
    const auto engine_before = engine_counters(s);
    EXPECT_GT(engine_before[1], 0);

    // Same request: a hit with the same answer, and the engine did nothing.
    const auto second = s.post("/v1/completions", req);
    EXPECT_EQ(second["choices"][0]["text"], first["choices"][0]["text"]);
    EXPECT_EQ(second["choices"][0]["finish_reason"], first["choices"][0]["finish_reason"]);
    EXPECT_EQ(second["usage"], first["usage"]);
    EXPECT_EQ(s.metric("minigpt_cache_hits_total"), 1);
    EXPECT_EQ(engine_counters(s), engine_before);

    // Streamed, same parameters: also a hit; the chunks add up to the same text.
    const auto [streamed, finish] = streamed_text(s, "/v1/completions", req);
    EXPECT_EQ(streamed, first["choices"][0]["text"].get<std::string>());
    EXPECT_EQ(finish, first["choices"][0]["finish_reason"].get<std::string>());
    EXPECT_EQ(s.metric("minigpt_cache_hits_total"), 2);
    EXPECT_EQ(engine_counters(s), engine_before);

    // Other parameters miss: more tokens, a different prompt.
    s.post("/v1/completions", greedy_completion("Once upon a time", 25));
    s.post("/v1/completions", greedy_completion("Once upon a tim", 24));
    EXPECT_EQ(s.metric("minigpt_cache_misses_total"), 3);
    EXPECT_EQ(s.metric("minigpt_requests_total"), engine_before[0] + 2);

    // Sampling with a seed: the same seed hits, another seed misses.
    json sampled = greedy_completion("The little dog", 24);
    sampled["temperature"] = 1.0;
    sampled["seed"] = 7;
    const auto a = s.post("/v1/completions", sampled);
    const auto engine_sampled = engine_counters(s);
    EXPECT_EQ(s.post("/v1/completions", sampled)["choices"][0]["text"], a["choices"][0]["text"]);
    EXPECT_EQ(engine_counters(s), engine_sampled);
    sampled["seed"] = 8;
    s.post("/v1/completions", sampled);
    EXPECT_EQ(s.metric("minigpt_requests_total"), engine_sampled[0] + 1);
    EXPECT_EQ(s.metric("minigpt_cache_hits_total"), 3);
    EXPECT_EQ(s.metric("minigpt_cache_misses_total"), 5);

    // Sampling without a seed is not reproducible, and logprobs are not kept: both bypass the cache.
    sampled.erase("seed");
    s.post("/v1/completions", sampled);
    json with_logprobs = req;
    with_logprobs["logprobs"] = 2;
    const auto lp = s.post("/v1/completions", with_logprobs);
    EXPECT_FALSE(lp["choices"][0]["logprobs"]["tokens"].empty()) << lp;
    EXPECT_EQ(s.metric("minigpt_cache_bypassed_total"), 2);

    // Chat: the second identical request is a hit, non-streamed and streamed.
    const json chat = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "Tell a story."}}}}, {"max_tokens", 16}, {"temperature", 0}};
    const auto c1 = s.post("/v1/chat/completions", chat);
    const auto engine_chat = engine_counters(s);
    const auto c2 = s.post("/v1/chat/completions", chat);
    EXPECT_EQ(c2["choices"][0]["message"]["content"], c1["choices"][0]["message"]["content"]);
    EXPECT_EQ(c2["object"], "chat.completion");
    EXPECT_EQ(streamed_text(s, "/v1/chat/completions", chat).first, c1["choices"][0]["message"]["content"].get<std::string>());
    EXPECT_EQ(engine_counters(s), engine_chat);
    EXPECT_EQ(s.metric("minigpt_cache_errors_total"), 0);

    // After a restart the entries are still there (one SQLite file).
    s.stop();
    serve_process again = cache_server("--cache " + file);
    ASSERT_GT(again.port(), 0) << again.log();
    EXPECT_EQ(again.post("/v1/completions", req)["choices"][0]["text"], first["choices"][0]["text"]);
    EXPECT_EQ(again.metric("minigpt_cache_hits_total"), 1);
    EXPECT_EQ(again.metric("minigpt_requests_total"), 0);
    EXPECT_EQ(again.metric("minigpt_tokens_generated_total"), 0);
    again.stop();
    std::filesystem::remove_all(dir);
}

// With LoRA adapters loaded, the adapters a request runs with are part of its key: the same prompt
// at another adapter scale is a miss with its own answer, never the other scale's.
TEST(ServerCache, AdapterScalesAreKeptApart) {
    MINIGPT_REQUIRE_SHARED("models/lora/stories260K-lora.gguf");
    const auto dir = minigpt::test::temp_dir("server-cache-lora");
    const std::string file = (dir / "completions.sqlite").string();
    serve_process s = cache_server("--cache " + file + " --lora-scaled " + minigpt::test::shared_path("models/lora/stories260K-lora.gguf") + " 0.5");
    if (s.port() == 0 && built_without(s, "SQLite")) GTEST_SKIP() << "minigpt was built without SQLite";
    ASSERT_GT(s.port(), 0) << s.log();
    json at_1 = greedy_completion("Once upon a time", 24), at_0 = at_1;
    at_1["lora"] = json::array({{{"id", 0}, {"scale", 1.0}}});
    at_0["lora"] = json::array({{{"id", 0}, {"scale", 0.0}}});
    const auto default_scale = s.post("/v1/completions", greedy_completion("Once upon a time", 24));
    const auto scale_1 = s.post("/v1/completions", at_1);
    const auto scale_0 = s.post("/v1/completions", at_0);
    EXPECT_EQ(s.metric("minigpt_cache_misses_total"), 3);
    EXPECT_EQ(s.metric("minigpt_cache_hits_total"), 0);
    EXPECT_NE(scale_1["choices"][0]["text"], scale_0["choices"][0]["text"]);
    EXPECT_NE(scale_1["choices"][0]["text"], default_scale["choices"][0]["text"]);
    const auto engine_before = engine_counters(s);
    EXPECT_EQ(s.post("/v1/completions", at_1)["choices"][0]["text"], scale_1["choices"][0]["text"]);
    EXPECT_EQ(s.post("/v1/completions", at_0)["choices"][0]["text"], scale_0["choices"][0]["text"]);
    EXPECT_EQ(s.metric("minigpt_cache_hits_total"), 2);
    EXPECT_EQ(engine_counters(s), engine_before);
    s.stop();
    std::filesystem::remove_all(dir);
}

// A file that is not an SQLite database: the server does not start, and says which file.
TEST(ServerCache, GarbageCacheFileStopsTheServer) {
    const auto dir = minigpt::test::temp_dir("server-cache-garbage");
    const std::string file = (dir / "garbage.sqlite").string();
    std::ofstream(file, std::ios::binary) << std::string(4096, 'x');
    serve_process s = cache_server("--cache " + file);
    if (built_without(s, "SQLite")) GTEST_SKIP() << "minigpt was built without SQLite";
    EXPECT_EQ(s.port(), 0) << s.log();
    EXPECT_NE(s.exit_code(), 0);
    EXPECT_NE(s.log().find(file), std::string::npos) << s.log();
    std::filesystem::remove_all(dir);
}

// Two servers (as on two machines) share one Redis: what one generated, the other serves.
TEST(ServerCache, TwoServersShareRedis) {
    const auto bin = minigpt::test::find_redis_server();
    if (bin.empty()) GTEST_SKIP() << "redis-server is not installed (Debian: redis-server)";
    minigpt::test::redis_process redis(bin);
    ASSERT_TRUE(redis.ready()) << "redis-server did not start";
    const std::string url = redis.url();
    serve_process one = cache_server("--cache " + url);
    if (built_without(one, "hiredis")) GTEST_SKIP() << "minigpt was built without hiredis";
    serve_process two = cache_server("--cache " + url);
    ASSERT_GT(one.port(), 0) << one.log();
    ASSERT_GT(two.port(), 0) << two.log();
    const json req = greedy_completion("Once upon a time", 20);
    const auto a = one.post("/v1/completions", req);
    const auto b = two.post("/v1/completions", req);
    EXPECT_EQ(b["choices"][0]["text"], a["choices"][0]["text"]);
    EXPECT_EQ(two.metric("minigpt_cache_hits_total"), 1);
    EXPECT_EQ(two.metric("minigpt_requests_total"), 0);
    EXPECT_EQ(one.metric("minigpt_cache_misses_total"), 1);
}

// Prompt-prefix KV files: a restored prefix plus a decoded tail gives the same logits as llama2.c's
// run.c (golden logits in ../shared) and as recomputing everything; hostile files are errors that name
// the offset and field, and leave the context untouched.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "minigpt/generate/generation.hpp"
#include "minigpt/generate/prompt_cache.hpp"
#include "test_data.hpp"

using namespace minigpt;
namespace fs = std::filesystem;

namespace {

using minigpt::test::temp_path;


std::vector<float> read_f32(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    std::vector<float> v(static_cast<std::size_t>(in.tellg()) / 4);
    in.seekg(0);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    return v;
}

std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(PromptCache, RestoredPrefixGivesGoldenLogits) {
    MINIGPT_REQUIRE_SHARED("golden/stories260K/logits.f32");
    const auto m = model::load(test::shared_path("models/stories260K.bin"));
    const auto ids = test::read_ids(test::shared_path("golden/stories260K/greedy-ids.txt"));  // BOS + 256
    const auto golden = read_f32(test::shared_path("golden/stories260K/logits.f32"));          // (256, 512)
    const std::int64_t n_vocab = m->config().n_vocab;
    const std::size_t n_saved = 100, n_total = 160;
    const auto path = temp_path("kv.bin");
    {
        context a(m, {.n_ctx = 256});
        a.decode(std::span(ids).first(n_saved), logits_for::none);
        save_prompt_cache(path, a, std::span(ids).first(n_saved));
    }
    context b(m, {.n_ctx = 256});
    const auto info = load_prompt_cache(path, b, std::span(ids).first(n_total));
    EXPECT_EQ(info.n_restored, static_cast<std::int64_t>(n_saved));
    EXPECT_EQ(b.n_past(), static_cast<std::int64_t>(n_saved));
    b.decode(std::span(ids).subspan(n_saved, n_total - n_saved), logits_for::all);
    // Row r of golden is the logits after feeding ids[0..r]; b's row j follows ids[n_saved + j].
    double worst = 0;
    for (std::size_t j = 0; j < n_total - n_saved; ++j) {
        const auto row = b.logits(static_cast<std::int64_t>(j));
        const float* want = golden.data() + (n_saved + j) * static_cast<std::size_t>(n_vocab);
        for (std::int64_t v = 0; v < n_vocab; ++v) worst = std::max(worst, std::abs(double(row[static_cast<std::size_t>(v)]) - want[v]));
    }
    EXPECT_LT(worst, 1e-3);

    // And equal (to float rounding of a different batch split) to recomputing the whole prompt here.
    context c(m, {.n_ctx = 256});
    c.decode(std::span(ids).first(n_total), logits_for::all);
    double diff = 0;
    for (std::size_t j = 0; j < n_total - n_saved; ++j) {
        const auto rb = b.logits(static_cast<std::int64_t>(j)), rc = c.logits(static_cast<std::int64_t>(n_saved + j));
        for (std::int64_t v = 0; v < n_vocab; ++v) diff = std::max(diff, std::abs(double(rb[static_cast<std::size_t>(v)]) - rc[static_cast<std::size_t>(v)]));
    }
    EXPECT_LT(diff, 1e-4);
    std::printf("restored-prefix logits: max |diff| %.2e vs run.c, %.2e vs full recompute\n", worst, diff);
}

TEST(PromptCache, PartialMatchAndFullMatchKeepOneTokenToDecode) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    const auto m = model::load(test::shared_path("models/stories260K.bin"));
    const std::vector<std::int32_t> saved = {1, 400, 401, 402, 403, 404};
    const auto path = temp_path("kv2.bin");
    {
        context a(m, {.n_ctx = 64});
        a.decode(saved);
        save_prompt_cache(path, a, saved);
    }
    context b(m, {.n_ctx = 64});
    EXPECT_EQ(load_prompt_cache(path, b, std::vector<std::int32_t>{1, 400, 401, 9, 9}).n_restored, 3);  // diverges at 3
    context c(m, {.n_ctx = 64});
    EXPECT_EQ(load_prompt_cache(path, c, saved).n_restored, 5);  // the last token is decoded again for its logits
    EXPECT_EQ(c.n_logits_rows(), 0);
    context d(m, {.n_ctx = 64});
    EXPECT_EQ(load_prompt_cache(path, d, std::vector<std::int32_t>{2, 400}).n_restored, 0);
}

TEST(PromptCache, HostileFilesNameOffsetAndField) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    const auto m = model::load(test::shared_path("models/stories260K.bin"));
    const std::vector<std::int32_t> toks = {1, 10, 20, 30, 40, 50, 60, 70};
    const auto path = temp_path("kv3.bin");
    {
        context a(m, {.n_ctx = 64});
        a.decode(toks);
        save_prompt_cache(path, a, toks);
    }
    const std::string good = slurp(path);
    auto try_load = [&](const std::string& bytes, context_params p = {.n_ctx = 64}) -> std::string {
        const auto bad = temp_path("kv-bad.bin");
        std::ofstream(bad, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        context ctx(m, p);
        try {
            load_prompt_cache(bad, ctx, toks);
        } catch (const format_error& e) {
            EXPECT_EQ(ctx.n_past(), 0) << "the context changed on a failed load";
            return e.what();
        }
        return "";
    };
    // Every truncation is an error.
    for (std::size_t n = 0; n < good.size(); n += 37) EXPECT_NE(try_load(good.substr(0, n)), "") << n;
    EXPECT_NE(try_load(good.substr(0, good.size() - 1)).find("bytes"), std::string::npos);
    // A flipped byte anywhere is an error.
    for (std::size_t i = 0; i < good.size(); i += 53) {
        std::string bad = good;
        bad[i] = static_cast<char>(bad[i] ^ 0x20);
        EXPECT_NE(try_load(bad), "") << i;
    }
    std::string bad = good;
    bad[0] = 'X';
    EXPECT_NE(try_load(bad).find("at byte 0: not a minigpt prompt cache"), std::string::npos);
    // A huge token count.
    bad = good;
    const std::size_t n_tokens_at = 4 + 4 + 8 + m->fingerprint().size() + 8 + 8 + 4;
    const std::int64_t huge = 1ll << 40;
    std::memcpy(bad.data() + n_tokens_at, &huge, 8);
    EXPECT_NE(try_load(bad).find("at byte " + std::to_string(n_tokens_at) + ": n_tokens"), std::string::npos) << try_load(bad);
    // An out-of-range token id (fix the checksum so only the id is wrong).
    bad = good;
    const std::int32_t big = 100000;
    std::memcpy(bad.data() + n_tokens_at + 8 + 4, &big, 4);
    EXPECT_NE(try_load(bad).find("token 1 id 100000 out of range"), std::string::npos) << try_load(bad);
    // Another KV type than the context's.
    EXPECT_NE(try_load(good, {.n_ctx = 64, .kv_type = dtype::f16}).find("KV type"), std::string::npos);
    // Another model: the fingerprint is named.
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const auto other = model::load(test::shared_path("models/gpt2-tiny.gguf"));
    context ctx(other, {.n_ctx = 64});
    try {
        load_prompt_cache(path, ctx, toks);
        FAIL();
    } catch (const format_error& e) {
        EXPECT_NE(std::string(e.what()).find("model fingerprint"), std::string::npos) << e.what();
    }
}

// The CLI: a second run with --prompt-cache restores the prompt and prints the same greedy text.
TEST(PromptCache, CliRestoresAndMatches) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto path = temp_path("cli-kv.bin");
    fs::remove(path);
    const std::string cmd = std::string(MINIGPT_TOOL) + " generate -m " + test::shared_path("models/stories260K.gguf") +
                            " -p 'Once upon a time there was a little girl' -n 24 --temp 0 --prompt-cache " + path + " 2>&1";
    auto run = [&] {
        FILE* p = popen(cmd.c_str(), "r");
        std::string out;
        char buf[512];
        while (p && std::fgets(buf, sizeof buf, p)) out += buf;
        EXPECT_EQ(p ? pclose(p) : -1, 0) << out;
        return out;
    };
    const auto a = run();
    ASSERT_TRUE(fs::exists(path)) << a;
    const auto b = run();
    EXPECT_NE(a.find("prompt cache: 0 positions restored"), std::string::npos) << a;
    EXPECT_EQ(b.find("prompt cache: 0 positions restored"), std::string::npos) << b;
    EXPECT_NE(b.find("positions restored"), std::string::npos) << b;
    EXPECT_EQ(a.substr(0, a.find("\nprompt eval")), b.substr(0, b.find("\nprompt eval")));  // the text, before the timings
}

// A program built with MINIGPT_SEPARATE_COMPILATION (include/minigpt/core/api.hpp): this translation
// unit sees only the declarations <minigpt/model.hpp> gives in that mode, and links minigpt compiled
// once by minigpt_add_library. Checked against llama2.c's run.c, as the header-only forward tests are.
#include <gtest/gtest.h>

#include <minigpt/model.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "test_data.hpp"

#ifndef MINIGPT_SEPARATE_COMPILATION
#error "this test is meant to be built with MINIGPT_SEPARATE_COMPILATION"
#endif

using namespace minigpt;

TEST(SeparateCompilation, GreedyGenerationMatchesLlama2c) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto golden = test::read_ids(test::shared_path("golden/stories260K/greedy-ids.txt"));  // BOS, then 256 ids
    ASSERT_EQ(golden.size(), 257u);
    auto lm = llm::load(test::shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 512});
    generation_params p;
    p.max_tokens = 256;
    p.ignore_eos = true;
    p.sampling.temperature = 0.0f;
    std::string streamed;
    const auto out = generate(lm, ctx, "", p, [&](std::int32_t, std::string_view text) {
        streamed += text;
        return true;
    });
    EXPECT_EQ(out.tokens, std::vector<std::int32_t>(golden.begin() + 1, golden.end()));
    EXPECT_EQ(streamed, out.text);
    EXPECT_EQ(out.stats.n_generated, 256);
    EXPECT_EQ(ctx.n_past(), 257);  // BOS and every generated token
}

TEST(SeparateCompilation, TeacherForcedLogitsMatchLlama2c) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto ids = test::read_ids(test::shared_path("golden/stories260K/greedy-ids.txt"));
    const auto golden = test::read_f32(test::shared_path("golden/stories260K/logits.f32"));  // (256, 512)
    auto lm = llm::load(test::shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 256, .n_batch = 64});  // four prefill chunks
    ctx.decode(std::span(ids).first(256), logits_for::all);
    ASSERT_EQ(ctx.n_logits_rows(), 256);
    float worst = 0;
    for (std::int64_t p = 0; p < 256; ++p) {
        const auto row = ctx.logits(p);
        for (std::size_t i = 0; i < row.size(); ++i)
            worst = std::max(worst, std::abs(row[i] - golden[static_cast<std::size_t>(p) * row.size() + i]));
    }
    EXPECT_LT(worst, 1e-3f);
    // A fork carries the cache: its next logits equal the parent's for the same token.
    auto child = ctx.fork();
    ctx.truncate(255);
    child->truncate(255);
    ctx.decode(std::span(ids).subspan(255, 1));
    child->decode(std::span(ids).subspan(255, 1));
    const auto a = ctx.logits(0), b = child->logits(0);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
}

TEST(SeparateCompilation, ErrorsCrossTheBoundary) {
    try {
        (void)llm::load("/nonexistent/model.gguf");
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos) << e.what();
    }
    EXPECT_THROW(context(nullptr), error);
}

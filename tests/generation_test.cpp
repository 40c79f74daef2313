// Tests of the generation loop and the model-backed text_session: greedy output equals
// the reference ids, stop strings, callbacks, max tokens, EOS, context-full handling
// (stop and shift), seeded determinism, and fork() reusing the prompt's KV cache.
#include <gtest/gtest.h>

#include "minigpt/generate/generation.hpp"
#include "minigpt/generate/model_session.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::read_ids;
using minigpt::test::shared_path;

namespace {

generation_params greedy(std::int32_t n) {
    generation_params p;
    p.max_tokens = n;
    p.sampling = sampling_params::greedy();
    return p;
}

}  // namespace

TEST(Generation, GreedyFromBosMatchesLlama2c) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto golden = read_ids(shared_path("golden/stories260K/greedy-ids.txt"));
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 300});
    std::vector<std::int32_t> streamed;
    const auto out = generate(lm, ctx, "", greedy(256), [&](std::int32_t id, std::string_view) {
        if (id >= 0) streamed.push_back(id);
        return true;
    });
    EXPECT_EQ(out.tokens, std::vector<std::int32_t>(golden.begin() + 1, golden.end()));
    EXPECT_EQ(streamed, out.tokens);
    EXPECT_EQ(out.reason, stop_reason::max_tokens);
    EXPECT_EQ(out.stats.n_prompt_tokens, 1);
    EXPECT_EQ(out.stats.n_generated, 256);
    EXPECT_EQ(out.text, lm.vocab->decode(out.tokens).substr(0, out.text.size()));
}

TEST(Generation, Gpt2PromptContinuationMatchesLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const llm lm = llm::load(shared_path("models/gpt2-tiny.gguf"));
    context ctx(lm.weights);
    auto p = greedy(32);
    p.add_bos = false;  // llama.cpp adds no BOS for GPT-2 vocabularies either
    const auto out = generate(lm, ctx, minigpt::test::read_text(shared_path("golden/gpt2-tiny/prompt.txt")), p);
    EXPECT_EQ(out.tokens, read_ids(shared_path("golden/gpt2-tiny/greedy-continuation-ids.txt")));
    EXPECT_EQ(out.text, lm.vocab->decode(out.tokens));
}

TEST(Generation, StopStringsAcrossTokenBoundaries) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    context ref_ctx(lm.weights, {.n_ctx = 128});
    const auto full = generate(lm, ref_ctx, "", greedy(40));
    // A stop string straddling two tokens: the end of token 10's text plus the start of token 11's.
    std::string before;
    for (int i = 0; i < 10; ++i) before += lm.vocab->token_to_piece(full.tokens[static_cast<std::size_t>(i)]);
    const std::size_t at = full.text.find(lm.vocab->token_to_piece(full.tokens[10]), before.size() - 4);
    ASSERT_NE(at, std::string::npos);
    const std::string stop = full.text.substr(at - 2, 5);
    context ctx(lm.weights, {.n_ctx = 128});
    auto p = greedy(40);
    p.stop = {"never-appears", stop};
    std::string streamed;
    const auto out = generate(lm, ctx, "", p, [&](std::int32_t, std::string_view t) { streamed += t; return true; });
    EXPECT_EQ(out.reason, stop_reason::stop_string);
    EXPECT_EQ(out.stop_string, stop);
    EXPECT_EQ(out.text, full.text.substr(0, full.text.find(stop)));
    EXPECT_EQ(streamed, out.text);  // nothing of the stop string was ever streamed
    EXPECT_EQ(ctx.n_past(), 1 + static_cast<std::int64_t>(out.tokens.size()));  // generated tokens are in the context
}

TEST(Generation, CallbackStopsAndMaxTokens) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 128});
    int calls = 0;
    const auto out = generate(lm, ctx, "", greedy(50), [&](std::int32_t, std::string_view) { return ++calls < 5; });
    EXPECT_EQ(out.reason, stop_reason::callback);
    EXPECT_EQ(out.tokens.size(), 5u);
    context ctx2(lm.weights, {.n_ctx = 128});
    EXPECT_EQ(generate(lm, ctx2, "", greedy(7)).tokens.size(), 7u);
}

TEST(Generation, EndOfGenerationToken) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 128});
    auto p = greedy(20);
    p.sampling.logit_bias = {{lm.vocab->eos(), 1000.0f}};  // force EOS as the first token
    const auto out = generate(lm, ctx, "", p);
    EXPECT_EQ(out.reason, stop_reason::end_of_generation);
    EXPECT_EQ(out.tokens, std::vector<std::int32_t>{lm.vocab->eos()});
    EXPECT_TRUE(out.text.empty());
    context ctx2(lm.weights, {.n_ctx = 128});
    p.ignore_eos = true;
    EXPECT_EQ(generate(lm, ctx2, "", p).tokens.size(), 20u);
}

TEST(Generation, ContextFullStopsOrShifts) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 32});
    const auto out = generate(lm, ctx, "", greedy(100));
    EXPECT_EQ(out.reason, stop_reason::context_full);
    EXPECT_EQ(ctx.n_past(), 32);
    EXPECT_EQ(out.tokens.size(), 32u);  // 31 fed + the last sampled one

    // Shift: keep BOS, drop half of the rest, re-evaluate, continue. After the first shift the
    // context holds BOS + the newest tokens, which equals decoding them from scratch.
    context shifted(lm.weights, {.n_ctx = 32});
    auto p = greedy(60);
    p.on_full = context_full_policy::shift;
    p.n_keep = 1;
    const auto long_out = generate(lm, shifted, "", p);
    EXPECT_EQ(long_out.tokens.size(), 60u);
    EXPECT_LE(shifted.n_past(), 32);
    // The first 32 tokens are unaffected by the shift.
    EXPECT_EQ(std::vector<std::int32_t>(long_out.tokens.begin(), long_out.tokens.begin() + 31),
              std::vector<std::int32_t>(out.tokens.begin(), out.tokens.begin() + 31));
    context too_small(lm.weights, {.n_ctx = 4});
    EXPECT_THROW(generate(lm, too_small, "Once upon a time there was a dog", greedy(5)), error);
}

TEST(Generation, SeededSamplingIsReproducible) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    generation_params p;
    p.max_tokens = 40;
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 1234;
    context a(lm.weights, {.n_ctx = 64}), b(lm.weights, {.n_ctx = 64}), c(lm.weights, {.n_ctx = 64});
    const auto x = generate(lm, a, "", p);
    const auto y = generate(lm, b, "", p);
    p.sampling.seed = 99;
    const auto z = generate(lm, c, "", p);
    EXPECT_EQ(x.tokens, y.tokens);
    EXPECT_NE(x.tokens, z.tokens);
}

TEST(ModelSession, AppendGenerateForkAndCount) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    model_session s(llm::load(shared_path("models/gpt2-tiny.gguf")), {.n_ctx = 128});
    s.append("The quick brown fox");
    EXPECT_EQ(s.n_tokens(), 4u);  // GPT-2 adds no BOS
    EXPECT_EQ(s.count_tokens(" jumps over"), 2u);
    auto fork = s.fork();
    generation_options o;
    o.max_tokens = 8;
    o.sampling = sampling_params::greedy();
    const auto a = s.generate(o);
    const auto b = fork->generate(o);
    EXPECT_EQ(a.text, b.text);
    EXPECT_EQ(a.n_tokens, 8);
    EXPECT_EQ(s.n_tokens(), 12u);
    EXPECT_EQ(s.transcript(), "The quick brown fox" + a.text);
    // Appending after generation continues the same context (no recomputation of the prefix).
    s.append(" and");
    EXPECT_EQ(s.n_tokens(), 13u);
    EXPECT_EQ(fork->n_tokens(), 12u);
}

// Log-probabilities in generation results, checked against a log-softmax recomputed here in
// long double from the logits of an independent replay of the same tokens, and the CLI's
// `generate --logprobs N` output against the library.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "minigpt/generate/generation.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::shared_path;

namespace {

// log softmax of one row, the textbook way: full sum in long double, no max shift needed for
// these small logits but done anyway for safety.
std::vector<double> reference_log_softmax(std::span<const float> logits) {
    long double m = logits[0];
    for (float l : logits) m = std::max<long double>(m, l);
    long double s = 0;
    for (float l : logits) s += std::exp(static_cast<long double>(l) - m);
    std::vector<double> out;
    for (float l : logits) out.push_back(static_cast<double>(l - m - std::log(s)));
    return out;
}

// Replays prompt + generated tokens one decode call at a time (as generation does) and checks
// every step's recorded logprobs against the reference.
void check_against_replay(const llm& lm, const std::vector<std::int32_t>& prompt, const generation_output& out, int n_top) {
    ASSERT_EQ(out.logprobs.size(), out.tokens.size());
    context ctx(lm.weights, {.n_ctx = 256, .n_threads = 1});
    ctx.decode(prompt);
    for (std::size_t i = 0; i < out.tokens.size(); ++i) {
        const auto ref = reference_log_softmax(ctx.logits(0));
        const auto& got = out.logprobs[i];
        EXPECT_EQ(got.id, out.tokens[i]);
        EXPECT_NEAR(got.logprob, ref[static_cast<std::size_t>(out.tokens[i])], 1e-5) << "step " << i;
        std::vector<std::int32_t> order(ref.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return ref[a] > ref[b]; });
        ASSERT_EQ(got.top.size(), static_cast<std::size_t>(n_top));
        for (int k = 0; k < n_top; ++k) {
            EXPECT_EQ(got.top[k].id, order[k]) << "step " << i << " rank " << k;
            EXPECT_NEAR(got.top[k].logprob, ref[order[k]], 1e-5);
        }
        // probabilities of the whole row sum to one
        double total = 0;
        for (double l : ref) total += std::exp(l);
        EXPECT_NEAR(total, 1.0, 1e-9);
        ctx.decode(std::span(&out.tokens[i], 1));
    }
}

}  // namespace

TEST(Logprobs, GreedyGenerationMatchesReplayedLogSoftmax) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    const auto prompt = lm.vocab->encode("Once upon a time", true);
    context ctx(lm.weights, {.n_ctx = 256, .n_threads = 1});
    generation_params gp;
    gp.max_tokens = 24;
    gp.sampling = sampling_params::greedy();
    gp.n_logprobs = 5;
    std::vector<std::int32_t> history;
    sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    const auto out = generate_from_tokens(ctx, *lm.vocab, history, prompt, gp, smp);
    check_against_replay(lm, prompt, out, 5);
    // Greedy: the chosen token is the most likely one.
    for (const auto& t : out.logprobs) EXPECT_EQ(t.top[0].id, t.id);
}

TEST(Logprobs, SampledTokensReportTheModelDistributionBeforeSampling) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    const auto prompt = lm.vocab->encode("The cat", true);
    context ctx(lm.weights, {.n_ctx = 256, .n_threads = 1});
    generation_params gp;
    gp.max_tokens = 24;
    gp.sampling.temperature = 1.5f;  // a hot sampler: its own distribution differs from the model's
    gp.sampling.top_k = 0;
    gp.sampling.top_p = 1.0f;
    gp.sampling.min_p = 0.0f;
    gp.sampling.seed = 7;
    gp.n_logprobs = 3;
    std::vector<std::int32_t> history;
    sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    const auto out = generate_from_tokens(ctx, *lm.vocab, history, prompt, gp, smp);
    check_against_replay(lm, prompt, out, 3);
}

TEST(Logprobs, OffByDefaultAndChosenOnlyAtZero) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 128, .n_threads = 1});
    generation_params gp;
    gp.max_tokens = 4;
    gp.sampling = sampling_params::greedy();
    EXPECT_TRUE(generate(lm, ctx, "Hi", gp).logprobs.empty());
    gp.n_logprobs = 0;
    context ctx2(lm.weights, {.n_ctx = 128, .n_threads = 1});
    const auto out = generate(lm, ctx2, "Hi", gp);
    ASSERT_EQ(out.logprobs.size(), 4u);
    for (const auto& t : out.logprobs) {
        EXPECT_TRUE(t.top.empty());
        EXPECT_LE(t.logprob, 0.0f);
    }
}

TEST(Logprobs, RejectsBadInput) {
    const std::vector<float> row = {1.0f, 2.0f, NAN};
    EXPECT_THROW(logprobs_of(row, 0, 1), error);
    const std::vector<float> ok = {1.0f, 2.0f, 3.0f};
    EXPECT_THROW(logprobs_of(ok, 3, 1), error);
    EXPECT_THROW(logprobs_of(ok, -1, 1), error);
    EXPECT_THROW(logprobs_of(ok, 0, -1), error);
    // n_top beyond the vocabulary: every token, best first
    const auto r = logprobs_of(ok, 0, 10);
    ASSERT_EQ(r.top.size(), 3u);
    EXPECT_EQ(r.top[0].id, 2);
    EXPECT_NEAR(r.logprob, 1.0 - std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), 1e-6);
}

TEST(Logprobs, CliPrintsTheLibraryValues) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(shared_path("models/stories260K.gguf"));
    context ctx(lm.weights, {.n_ctx = 256, .n_threads = 1});
    generation_params gp;
    gp.max_tokens = 8;
    gp.sampling = sampling_params::greedy();
    gp.n_logprobs = 2;
    const auto lib = generate(lm, ctx, "Once upon a time", gp);

    std::string out;
    const std::string cmd = std::string(MINIGPT_TOOL) + " generate -m " + shared_path("models/stories260K.gguf") +
                            " -p 'Once upon a time' -n 8 --temp 0 -c 256 -t 1 --logprobs 2 --no-stats 2>&1 >/dev/null";
    ASSERT_EQ(minigpt::test::run(cmd, &out), 0) << out;
    std::istringstream in(out.substr(out.find("natural log):\n") + 14));
    for (std::size_t i = 0; i < lib.logprobs.size(); ++i) {
        std::string line;
        ASSERT_TRUE(std::getline(in, line)) << out;
        std::istringstream ls(line);
        std::size_t index;
        std::int32_t id;
        ls >> index >> id;
        EXPECT_EQ(index, i);
        EXPECT_EQ(id, lib.logprobs[i].id);
        const auto pos = line.rfind(" | top:");
        ASSERT_NE(pos, std::string::npos) << line;
        // the column before " | top:" is the chosen token's logprob
        const auto lp_start = line.rfind(' ', pos - 1);
        EXPECT_NEAR(std::stod(line.substr(lp_start, pos - lp_start)), lib.logprobs[i].logprob, 1e-5) << line;
    }
}

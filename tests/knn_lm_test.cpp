// Tests of kNN-LM interpolation against hand-computed distributions, of the windowing and
// datastore builder, and of perplexity scoring with a synthetic model whose answer is
// known in closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>

#include "minigpt/knn.hpp"
#include "test_data.hpp"

namespace {

using minigpt::test::temp_path;

using namespace minigpt;
using namespace minigpt::knn;

constexpr float inf = std::numeric_limits<float>::infinity();

// Neighbours (d=1, token 5), (d=2, token 5), (d=3, token 7). With T = 1:
// p(5) = (e^-1 + e^-2) / (e^-1 + e^-2 + e^-3), p(7) = e^-3 / (same); values from a calculator.
const std::vector<neighbour> k_three = {{1.0f, 5, 10}, {2.0f, 5, 11}, {3.0f, 7, 12}};
constexpr double k_p5_t1 = 0.90996942682961957, k_p7_t1 = 0.090030573170380462;
constexpr double k_p5_t2 = 0.81367627677415233, k_p7_t2 = 0.18632372322584756;  // T = 2: e^-0.5, e^-1, e^-1.5

TEST(KnnLm, KnnDistributionAggregatesTokensAndScalesWithTemperature) {
    auto d1 = knn_log_distribution(k_three, 1.0f);
    ASSERT_EQ(d1.size(), 2u);
    EXPECT_EQ(d1[0].token, 5);
    EXPECT_EQ(d1[1].token, 7);
    EXPECT_NEAR(std::exp(d1[0].log_prob), k_p5_t1, 1e-12);
    EXPECT_NEAR(std::exp(d1[1].log_prob), k_p7_t1, 1e-12);
    auto d2 = knn_log_distribution(k_three, 2.0f);
    EXPECT_NEAR(std::exp(d2[0].log_prob), k_p5_t2, 1e-12);
    EXPECT_NEAR(std::exp(d2[1].log_prob), k_p7_t2, 1e-12);
    // Order of the neighbours does not matter.
    const std::vector<neighbour> shuffled = {k_three[2], k_three[0], k_three[1]};
    EXPECT_NEAR(std::exp(knn_log_distribution(shuffled, 1.0f)[0].log_prob), k_p5_t1, 1e-12);
    EXPECT_TRUE(knn_log_distribution({}, 1.0f).empty());
    EXPECT_THROW(knn_log_distribution(k_three, 0.0f), minigpt::error);
    EXPECT_THROW(knn_log_distribution(k_three, -1.0f), minigpt::error);
}

TEST(KnnLm, HugeDistancesStayFinite) {
    // exp(-1000) underflows even in double; the log-space shift keeps p = 1 / (1 + e^-1).
    const std::vector<neighbour> far = {{1000.0f, 1, 0}, {1001.0f, 2, 1}};
    auto d = knn_log_distribution(far, 1.0f);
    ASSERT_EQ(d.size(), 2u);
    EXPECT_NEAR(std::exp(d[0].log_prob), 0.7310585786300049, 1e-12);
    EXPECT_NEAR(std::exp(d[1].log_prob), 1.0 - 0.7310585786300049, 1e-12);
}

// Vocabulary of 8 with a hand-picked LM distribution.
const std::vector<float> k_p_lm = {0.05f, 0.1f, 0.15f, 0.2f, 0.1f, 0.15f, 0.05f, 0.2f};

std::vector<float> logs(const std::vector<float>& p) {
    std::vector<float> l;
    for (float x : p) l.push_back(std::log(x));
    return l;
}

TEST(KnnLm, InterpolationMatchesHandComputedMixture) {
    // lambda = 0.25: p(5) = 0.25 * p5 + 0.75 * 0.15, p(7) = 0.25 * p7 + 0.75 * 0.2, others 0.75 * p_lm.
    const double want5 = 0.25 * k_p5_t1 + 0.75 * 0.15, want7 = 0.25 * k_p7_t1 + 0.75 * 0.2;
    const auto p = interpolate(k_p_lm, k_three, 0.25f, 1.0f);
    std::vector<float> lp(8);
    interpolate_log_probs(logs(k_p_lm), k_three, 0.25f, 1.0f, lp);
    for (int w = 0; w < 8; ++w) {
        const double want = w == 5 ? want5 : w == 7 ? want7 : 0.75 * k_p_lm[static_cast<std::size_t>(w)];
        EXPECT_NEAR(p[static_cast<std::size_t>(w)], want, 1e-7) << w;
        EXPECT_NEAR(std::exp(lp[static_cast<std::size_t>(w)]), want, 1e-7) << w;
    }
    EXPECT_NEAR(std::accumulate(p.begin(), p.end(), 0.0), 1.0, 1e-6);
    EXPECT_NEAR(std::exp(interpolated_log_prob(std::log(0.15), k_three, 5, 0.25f, 1.0f)), want5, 1e-12);
    EXPECT_NEAR(std::exp(interpolated_log_prob(std::log(0.1), k_three, 1, 0.25f, 1.0f)), 0.075, 1e-12);
    // In place.
    auto inplace = logs(k_p_lm);
    interpolate_log_probs(inplace, k_three, 0.25f, 1.0f, inplace);
    for (int w = 0; w < 8; ++w) EXPECT_EQ(inplace[static_cast<std::size_t>(w)], lp[static_cast<std::size_t>(w)]);
}

TEST(KnnLm, LambdaZeroAndOneAreThePureModels) {
    const auto lm = logs(k_p_lm);
    std::vector<float> out(8);
    interpolate_log_probs(lm, k_three, 0.0f, 1.0f, out);
    EXPECT_EQ(out, lm);
    interpolate_log_probs(lm, {}, 0.0f, 1.0f, out);  // no neighbours needed when they have no weight
    EXPECT_EQ(out, lm);
    EXPECT_EQ(interpolated_log_prob(-1.5, {}, 3, 0.0f, 1.0f), -1.5);

    interpolate_log_probs(lm, k_three, 1.0f, 1.0f, out);
    for (int w = 0; w < 8; ++w) {
        if (w == 5) EXPECT_NEAR(std::exp(out[5]), k_p5_t1, 1e-7);
        else if (w == 7) EXPECT_NEAR(std::exp(out[7]), k_p7_t1, 1e-7);
        else EXPECT_EQ(out[static_cast<std::size_t>(w)], -inf) << w;
    }
    const auto p = interpolate(k_p_lm, k_three, 1.0f, 2.0f);
    EXPECT_NEAR(p[5], k_p5_t2, 1e-7);
    EXPECT_NEAR(p[7], k_p7_t2, 1e-7);
    EXPECT_EQ(p[0], 0.0f);
    EXPECT_EQ(interpolated_log_prob(-1.0, k_three, 2, 1.0f, 1.0f), -std::numeric_limits<double>::infinity());
}

TEST(KnnLm, BadArgumentsThrow) {
    const auto lm = logs(k_p_lm);
    std::vector<float> out(8), short_out(7);
    EXPECT_THROW(interpolate_log_probs(lm, k_three, 1.5f, 1.0f, out), minigpt::error);
    EXPECT_THROW(interpolate_log_probs(lm, k_three, -0.1f, 1.0f, out), minigpt::error);
    EXPECT_THROW(interpolate_log_probs(lm, k_three, 0.5f, 0.0f, out), minigpt::error);
    EXPECT_THROW(interpolate_log_probs(lm, k_three, 0.5f, 1.0f, short_out), minigpt::error);
    EXPECT_THROW(interpolate_log_probs(lm, {}, 0.5f, 1.0f, out), minigpt::error);
    const std::vector<neighbour> outside = {{1.0f, 8, 0}};  // token 8 in a vocabulary of 8
    try {
        interpolate_log_probs(lm, outside, 0.5f, 1.0f, out);
        ADD_FAILURE() << "out-of-vocabulary neighbour accepted";
    } catch (const minigpt::error& e) {
        EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
    }
    knn_lm_params p;
    p.k = 0;
    EXPECT_THROW(p.validate(), minigpt::error);
    p = {};
    p.temperature = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(p.validate(), minigpt::error);
}

TEST(KnnLm, LogSoftmaxAndPerplexityAccumulator) {
    const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
    std::vector<float> out(3);
    log_softmax(logits, out);
    // log(e^1 + e^2 + e^3) = 3.40760596444438
    EXPECT_NEAR(out[0], 1.0 - 3.40760596444438, 1e-6);
    EXPECT_NEAR(out[2], 3.0 - 3.40760596444438, 1e-6);
    const std::vector<float> big = {1000.0f, 1000.0f};
    std::vector<float> out2(2);
    log_softmax(big, out2);
    EXPECT_NEAR(out2[0], -std::log(2.0), 1e-6);

    perplexity_accumulator acc;
    acc.add_log_prob(std::log(0.5));
    acc.add_log_prob(std::log(0.125));
    EXPECT_EQ(acc.n_tokens, 2);
    EXPECT_NEAR(acc.nll_sum, std::log(16.0), 1e-12);
    EXPECT_NEAR(acc.perplexity(), 4.0, 1e-12);  // geometric mean of 1/0.5 and 1/0.125
}

TEST(KnnLm, StageRewritesLogitsWithNeighbours) {
    // Store: key (0,0) -> token 2, key (10,0) -> token 3. A query at (0,1) has neighbours at
    // squared distances 1 and 101; with k = 1 only token 2 gets kNN mass.
    tensor keys = tensor::empty(dtype::f32, {2, 2});
    keys.data<float>()[2] = 10.0f;
    auto store = datastore::from_memory(std::move(keys), {2, 3});
    auto index = std::make_shared<exact_index>(store);
    knn_lm_params p;
    p.lambda = 0.5f;
    p.k = 1;
    knn_lm stage(index, p);
    std::vector<float> logits(4, 0.0f);  // uniform LM over 4 tokens
    const float query[2] = {0.0f, 1.0f};
    stage.apply(logits, query);
    ASSERT_EQ(stage.last_neighbours().size(), 1u);
    EXPECT_EQ(stage.last_neighbours()[0].value, 2);
    EXPECT_FLOAT_EQ(stage.last_neighbours()[0].distance, 1.0f);
    EXPECT_NEAR(std::exp(logits[2]), 0.5 + 0.5 * 0.25, 1e-6);
    EXPECT_NEAR(std::exp(logits[0]), 0.5 * 0.25, 1e-6);
    const std::vector<float> uniform(4, 0.0f);
    EXPECT_NEAR(std::exp(stage.log_prob(uniform, query, 2)), 0.625, 1e-9);
    // k = 2, T = 100: weights e^-0.01 and e^-1.01 over tokens 2 and 3.
    p.k = 2;
    p.temperature = 100.0f;
    stage.set_params(p);
    const double w2 = std::exp(-0.01), w3 = std::exp(-1.01);
    EXPECT_NEAR(std::exp(stage.log_prob(uniform, query, 3)), 0.5 * w3 / (w2 + w3) + 0.125, 1e-7);
    EXPECT_THROW(stage.log_prob(uniform, query, 4), minigpt::error);
    EXPECT_THROW(knn_lm(nullptr, p), minigpt::error);
}

TEST(KnnWindows, HandEnumeratedCases) {
    auto w = make_windows(10, {4, 0});
    ASSERT_EQ(w.size(), 3u);
    EXPECT_EQ(w[0].begin, 0); EXPECT_EQ(w[0].end, 4); EXPECT_EQ(w[0].first_used, 0);
    EXPECT_EQ(w[1].begin, 4); EXPECT_EQ(w[1].end, 8); EXPECT_EQ(w[1].first_used, 4);
    EXPECT_EQ(w[2].begin, 8); EXPECT_EQ(w[2].end, 10); EXPECT_EQ(w[2].first_used, 8);
    // Overlapping: windows start every 2 tokens, each uses only the positions not seen yet.
    w = make_windows(7, {4, 2});
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(w[0].begin, 0); EXPECT_EQ(w[0].end, 4); EXPECT_EQ(w[0].first_used, 0);
    EXPECT_EQ(w[1].begin, 2); EXPECT_EQ(w[1].end, 6); EXPECT_EQ(w[1].first_used, 4);
    // Position 5 (predicting token 6) is in window 1; no third window is needed.
    EXPECT_TRUE(make_windows(1, {4, 0}).empty());
    EXPECT_TRUE(make_windows(0, {4, 0}).empty());
    EXPECT_THROW(make_windows(10, {0, 0}), minigpt::error);
    EXPECT_THROW(make_windows(10, {4, 5}), minigpt::error);
}


// A fake model whose "hidden state" at stream position p is (p, token[p]) and whose LM is
// uniform over n_vocab: nothing about it depends on the code under test.
struct fake_model {
    std::int64_t n_vocab;
    std::vector<std::int64_t> calls;  // pos0 of each call
    void keys(std::span<const std::int32_t> tokens, std::int64_t pos0, float* out) {
        calls.push_back(pos0);
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            out[2 * i] = static_cast<float>(pos0 + static_cast<std::int64_t>(i));
            out[2 * i + 1] = static_cast<float>(tokens[i]);
        }
    }
};

TEST(KnnBuilder, StorePairsEachPositionWithTheNextToken) {
    const std::vector<std::int32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5};
    const std::string path = temp_path("builder.store");
    fake_model m{10, {}};
    for (std::int64_t stride : {0, 2}) {
        m.calls.clear();
        {
            datastore_writer w(path, 2, dtype::f32, "fake");
            const auto n = build_datastore(w, tokens, {4, stride},
                                           [&](std::span<const std::int32_t> t, std::int64_t pos0, float* out) { m.keys(t, pos0, out); });
            EXPECT_EQ(n, 10);
            w.finish();
        }
        auto s = datastore::open(path, "fake");
        ASSERT_EQ(s->n_keys(), 10);
        for (std::int64_t p = 0; p < 10; ++p) {
            EXPECT_EQ(s->keys().data<float>()[2 * p], static_cast<float>(p));            // position p, once, in order
            EXPECT_EQ(s->keys().data<float>()[2 * p + 1], static_cast<float>(tokens[static_cast<std::size_t>(p)]));
            EXPECT_EQ(s->values()[static_cast<std::size_t>(p)], tokens[static_cast<std::size_t>(p + 1)]);
        }
        if (stride == 0) EXPECT_EQ(m.calls, (std::vector<std::int64_t>{0, 4, 8}));
        else EXPECT_EQ(m.calls, (std::vector<std::int64_t>{0, 2, 4, 6}));  // [6, 10) covers position 9, the last
    }
    std::remove(path.c_str());
}

TEST(KnnBuilder, PerplexityOfTheStoredTextDropsAsPredicted) {
    // Uniform LM over V = 10: base perplexity 10. The store holds this very text, so each
    // position's nearest key (k = 1) is itself at distance 0 with the true next token:
    // p = lambda + (1 - lambda) / V, perplexity = 1 / p exactly.
    const std::vector<std::int32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9};
    const std::int64_t V = 10;
    fake_model m{V, {}};
    std::vector<std::int32_t> values;
    std::vector<float> keys;
    for (std::size_t p = 0; p + 1 < tokens.size(); ++p) {
        keys.push_back(static_cast<float>(p));
        keys.push_back(static_cast<float>(tokens[p]));
        values.push_back(tokens[p + 1]);
    }
    tensor t = tensor::empty(dtype::f32, {static_cast<std::int64_t>(values.size()), 2});
    std::copy(keys.begin(), keys.end(), t.data<float>());
    exact_index index(datastore::from_memory(std::move(t), values));
    knn_lm_params p;
    p.lambda = 0.25f;
    p.k = 1;
    auto provider = [&](std::span<const std::int32_t> tok, std::int64_t pos0, float* k_out, float* logits_out) {
        m.keys(tok, pos0, k_out);
        std::fill(logits_out, logits_out + static_cast<std::ptrdiff_t>(tok.size()) * V, 0.0f);
    };
    const auto r = evaluate_perplexity(tokens, 2, V, {5, 0}, provider, &index, p);
    EXPECT_EQ(r.base.n_tokens, 14);
    EXPECT_EQ(r.mixed.n_tokens, 14);
    EXPECT_NEAR(r.base.perplexity(), 10.0, 1e-5);
    EXPECT_NEAR(r.mixed.perplexity(), 1.0 / (0.25 + 0.75 / 10.0), 1e-5);
    const auto none = evaluate_perplexity(tokens, 2, V, {5, 0}, provider, nullptr, p);
    EXPECT_NEAR(none.mixed.perplexity(), 10.0, 1e-5);
    const std::vector<std::int32_t> bad = {1, 10};
    EXPECT_THROW(evaluate_perplexity(bad, 2, V, {5, 0}, provider, &index, p), minigpt::error);
}

}  // namespace

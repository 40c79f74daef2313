// Tests of the sampler chain, its stages and the RNG.
//
// Each stage is checked on small cases worked out by hand (the arithmetic is in the comments);
// the whole chain against a brute-force double-precision reference written here (full sort, no
// shortcuts) on random logits, including vocabulary sizes that take the fast paths; the draw
// with a chi-square goodness-of-fit test; and the RNG against the value the C++ standard fixes
// for mt19937_64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "minigpt/generate/rng.hpp"
#include "minigpt/generate/sampler.hpp"

namespace mg = minigpt;

namespace {

constexpr float k_inf = std::numeric_limits<float>::infinity();
using ids_t = std::vector<std::int32_t>;

mg::candidates make(std::vector<float> logits) {
    mg::candidates c;
    c.assign(logits);
    return c;
}

ids_t ids(const mg::candidates& c) {
    ids_t out;
    for (const auto& x : c) out.push_back(x.id);
    return out;
}

ids_t sorted_ids(const mg::candidates& c) {
    ids_t out = ids(c);
    std::sort(out.begin(), out.end());
    return out;
}

// Logits {1, 2, 3, 4} for tokens 0..3. Softmax: e^(l-4) = {0.049787, 0.135335, 0.367879, 1},
// sum 1.553002, so p = {0.032059, 0.087144, 0.236883, 0.643914}.
const std::vector<float> k_1234 = {1, 2, 3, 4};

}  // namespace

// ---------------------------------------------------------------- single stages, by hand

TEST(SamplerStages, SoftmaxMatchesHandValues) {
    auto c = make(k_1234);
    c.softmax();
    EXPECT_NEAR(c[0].p, 0.032059, 1e-6);
    EXPECT_NEAR(c[1].p, 0.087144, 1e-6);
    EXPECT_NEAR(c[2].p, 0.236883, 1e-6);
    EXPECT_NEAR(c[3].p, 0.643914, 1e-6);
}

TEST(SamplerStages, TopKKeepsTheKBestSorted) {
    auto c = make(k_1234);
    mg::top_k_stage{2}.apply(c);
    EXPECT_EQ(ids(c), (ids_t{3, 2}));
    EXPECT_TRUE(c.sorted());

    // Through the sampler (fused selection), k beyond the vocabulary keeps everything.
    mg::sampling_params sp;
    sp.top_k = 2000000000;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = 1;
    mg::sampler s(sp, 4);
    s.choose(k_1234);
    EXPECT_EQ(ids(s.last_candidates()), (ids_t{3, 2, 1, 0}));

    auto off = make(k_1234);
    mg::top_k_stage{0}.apply(off);
    EXPECT_EQ(off.size(), 4u);
    auto big = make(k_1234);
    mg::top_k_stage{10}.apply(big);
    EXPECT_EQ(ids(big), (ids_t{3, 2, 1, 0}));
}

TEST(SamplerStages, TopKBreaksTiesByLowestId) {
    // 5 at ids 1, 2, 4: the top 2 are ids 1 and 2.
    auto c = make({0, 5, 5, 1, 5});
    mg::top_k_stage{2}.apply(c);
    EXPECT_EQ(ids(c), (ids_t{1, 2}));
}

TEST(SamplerStages, TopPKeepsSmallestPrefixReachingP) {
    // Best first: 0.643914 (sum 0.643914), +0.236883 = 0.880797, +0.087144 = 0.967941.
    auto c = make(k_1234);
    mg::top_p_stage{0.8f}.apply(c);   // 0.6439 < 0.8 <= 0.8808
    EXPECT_EQ(ids(c), (ids_t{3, 2}));
    auto one = make(k_1234);
    mg::top_p_stage{0.6f}.apply(one);  // 0.6439 >= 0.6 already
    EXPECT_EQ(ids(one), (ids_t{3}));
    auto three = make(k_1234);
    mg::top_p_stage{0.9f}.apply(three);  // 0.8808 < 0.9 <= 0.9679
    EXPECT_EQ(ids(three), (ids_t{3, 2, 1}));
    auto tiny = make(k_1234);
    mg::top_p_stage{0.0f}.apply(tiny);  // keeps at least one
    EXPECT_EQ(ids(tiny), (ids_t{3}));
    auto off = make(k_1234);
    mg::top_p_stage{1.0f}.apply(off);
    EXPECT_EQ(off.size(), 4u);
}

TEST(SamplerStages, MinPKeepsTokensAboveFractionOfTheBest) {
    // p / p_max = e^(l - 4) = {0.0498, 0.1353, 0.3679, 1}.
    auto c = make(k_1234);
    mg::min_p_stage{0.2f}.apply(c);  // keeps 0.3679 and 1
    EXPECT_EQ(sorted_ids(c), (ids_t{2, 3}));
    auto c2 = make(k_1234);
    mg::min_p_stage{0.1f}.apply(c2);  // also 0.1353; drops 0.0498
    EXPECT_EQ(sorted_ids(c2), (ids_t{1, 2, 3}));
    auto c3 = make(k_1234);
    mg::min_p_stage{0.04f}.apply(c3);  // everything (0.0498 >= 0.04)
    EXPECT_EQ(c3.size(), 4u);
    auto c4 = make(k_1234);
    mg::min_p_stage{1.0f}.apply(c4);  // only the best has ratio 1
    EXPECT_EQ(ids(c4), (ids_t{3}));
}

TEST(SamplerStages, TypicalPRanksByDistanceFromEntropy) {
    // H = -sum p ln p = 0.110291 + 0.212653 + 0.341169 + 0.283424 = 0.947537.
    // Surprisal -ln p = {3.440244, 2.440244, 1.440244, 0.440244}; |surprisal - H| =
    // {2.492707, 1.492707, 0.492707, 0.507293}: the most typical is id 2, then id 3 (the argmax).
    auto c = make(k_1234);
    mg::typical_p_stage{0.5f}.apply(c);  // id 2: 0.2369 (not > 0.5), + id 3: 0.8808 > 0.5
    EXPECT_EQ(ids(c), (ids_t{2, 3}));
    auto c2 = make(k_1234);
    mg::typical_p_stage{0.2f}.apply(c2);  // 0.2369 > 0.2: only id 2 - typical sampling can drop the argmax
    EXPECT_EQ(ids(c2), (ids_t{2}));
    auto c3 = make(k_1234);
    mg::typical_p_stage{0.9f}.apply(c3);  // 0.8808, then + id 1 = 0.9679 > 0.9
    EXPECT_EQ(ids(c3), (ids_t{2, 3, 1}));
}

TEST(SamplerStages, TemperatureScalesLogitDifferences) {
    // T = 0.5: p ∝ e^(2(l - 4)) = {e^-6, e^-4, e^-2, 1} / 1.156130 = {0.002144, 0.015842, 0.117059, 0.864955}.
    auto c = make(k_1234);
    mg::temperature_stage{0.5f}.apply(c);
    c.softmax();
    EXPECT_NEAR(c[0].p, 0.002144, 1e-6);
    EXPECT_NEAR(c[1].p, 0.015842, 1e-6);
    EXPECT_NEAR(c[2].p, 0.117059, 1e-6);
    EXPECT_NEAR(c[3].p, 0.864955, 1e-6);
    auto g = make({2, 7, 7, 1});
    mg::temperature_stage{0.0f}.apply(g);  // t <= 0: the best only, ties to the lowest id
    EXPECT_EQ(ids(g), (ids_t{1}));
}

TEST(SamplerStages, PenaltiesFollowLlamaCppRule) {
    // Logits {2, -1, 0.5, 3}; history 0, 0, 1 (token 0 twice, token 1 once).
    // repeat 2: token 0: 2 / 2 = 1 (positive: divided); token 1: -1 * 2 = -2 (negative: multiplied).
    // frequency 0.5, presence 0.25: token 0: 1 - (2 * 0.5 + 0.25) = -0.25; token 1: -2 - (0.5 + 0.25) = -2.75.
    mg::token_history h(4, 64);
    for (int t : {0, 0, 1}) h.push(t);
    auto c = make({2, -1, 0.5f, 3});
    mg::penalties_stage{2.0f, 0.5f, 0.25f}.apply(c, h);
    EXPECT_FLOAT_EQ(c[0].logit, -0.25f);
    EXPECT_FLOAT_EQ(c[1].logit, -2.75f);
    EXPECT_FLOAT_EQ(c[2].logit, 0.5f);
    EXPECT_FLOAT_EQ(c[3].logit, 3.0f);

    // Same on a reordered (not id-ordered) set.
    auto r = make({2, -1, 0.5f, 3});
    r.sort();
    mg::penalties_stage{2.0f, 0.5f, 0.25f}.apply(r, h);
    std::map<int, float> by_id;
    for (const auto& x : r) by_id[x.id] = x.logit;
    EXPECT_FLOAT_EQ(by_id[0], -0.25f);
    EXPECT_FLOAT_EQ(by_id[1], -2.75f);
}

TEST(SamplerStages, PenaltyWindowForgetsOldTokens) {
    // Window 2 over history 0, 0, 1: only the last two (0, 1) count, once each.
    mg::token_history h(4, 2);
    for (int t : {0, 0, 1}) h.push(t);
    EXPECT_EQ(h.count(0), 1);
    EXPECT_EQ(h.count(1), 1);
    auto c = make({2, -1, 0.5f, 3});
    mg::penalties_stage{2.0f, 0.5f, 0.25f}.apply(c, h);
    EXPECT_FLOAT_EQ(c[0].logit, 2.0f / 2 - (0.5f + 0.25f));    // 0.25
    EXPECT_FLOAT_EQ(c[1].logit, -1.0f * 2 - (0.5f + 0.25f));   // -2.75
    h.push(2);
    h.push(2);  // window now (2, 2)
    EXPECT_EQ(h.count(0), 0);
    EXPECT_EQ(h.count(1), 0);
    EXPECT_EQ(h.count(2), 2);
    EXPECT_EQ(h.distinct().size(), 1u);

    mg::token_history all(4, -1);
    for (int i = 0; i < 1000; ++i) all.push(i % 3);
    EXPECT_EQ(all.count(0), 334);
    EXPECT_EQ(all.count(2), 333);
    mg::token_history none(4, 0);
    none.push(1);
    EXPECT_EQ(none.count(1), 0);
}

TEST(SamplerStages, LogitBiasAddsAndBans) {
    auto c = make(k_1234);
    mg::logit_bias_stage({{3, -k_inf}, {0, 1.5f}, {0, 0.5f}}).apply(c);  // duplicates add: +2
    EXPECT_EQ(c[3].logit, -k_inf);
    EXPECT_FLOAT_EQ(c[0].logit, 3.0f);
    EXPECT_THROW(mg::logit_bias_stage({{1, std::nanf("")}}), mg::error);
    EXPECT_THROW(mg::logit_bias_stage({{-1, 1.0f}}), mg::error);
}

// ---------------------------------------------------------------- greedy and the whole chain

TEST(Sampler, GreedyIsArgmaxWithTiesToLowestId) {
    mg::sampler s(mg::sampling_params::greedy(), 4);
    EXPECT_EQ(s.sample(std::vector<float>{1, 5, 5, 0}), 1);
    EXPECT_EQ(s.sample(k_1234), 3);
    // A large vocabulary (fast path): equal maxima at 700 and 300 -> 300.
    std::vector<float> big(50257, 0.0f);
    big[700] = big[300] = 1.0f;
    mg::sampler g(mg::sampling_params::greedy(), 50257);
    EXPECT_EQ(g.sample(big), 300);
    // -0 and +0 are equal logits: the lower id wins whichever sign it has.
    std::vector<float> zeros(50257, -1.0f);
    zeros[9] = 0.0f;
    zeros[2] = -0.0f;
    EXPECT_EQ(g.sample(zeros), 2);
    zeros[2] = -1.0f;
    zeros[20] = -0.0f;
    EXPECT_EQ(g.sample(zeros), 9);
    // All negative, the best is the least negative; -inf never wins over a finite logit.
    std::vector<float> negative(50257, -std::numeric_limits<float>::infinity());
    negative[40000] = -50.0f;
    negative[123] = -50.5f;
    EXPECT_EQ(g.sample(negative), 40000);
}

TEST(Sampler, BiasBansTheArgmax) {
    auto p = mg::sampling_params::greedy();
    p.logit_bias = {{3, -k_inf}};
    mg::sampler s(p, 4);
    EXPECT_EQ(s.sample(k_1234), 2);
    // Sampling, with top-k: the banned token is never drawn.
    auto q = mg::sampling_params{};
    q.seed = 7;
    q.logit_bias = {{3, -k_inf}};
    mg::sampler t(q, 4);
    for (int i = 0; i < 200; ++i) EXPECT_NE(t.sample(k_1234), 3);
    // Everything banned is an error, not a silent pick.
    auto all = mg::sampling_params::greedy();
    all.logit_bias = {{0, -k_inf}, {1, -k_inf}};
    mg::sampler u(all, 2);
    EXPECT_THROW(u.sample(std::vector<float>{1, 2}), mg::error);
}

TEST(Sampler, GreedyAppliesPenalties) {
    // Logits {2, -1, 0.5, 3}, repeat penalty 6, history has token 3: 3 / 6 = 0.5 < 2, so greedy picks 0.
    auto p = mg::sampling_params::greedy();
    p.repeat_penalty = 6.0f;
    mg::sampler s(p, 4);
    s.accept(3);
    EXPECT_EQ(s.sample(std::vector<float>{2, -1, 0.5f, 3}), 0);
    // Now 0 is in the history too: {2/6, -1, 0.5, 3/6} = {0.333, -1, 0.5, 0.5}: a tie, lowest id -> 2.
    EXPECT_EQ(s.sample(std::vector<float>{2, -1, 0.5f, 3}), 2);
    s.reset();
    EXPECT_EQ(s.sample(std::vector<float>{2, -1, 0.5f, 3}), 3);
}

TEST(Sampler, TopPSeesTopKRenormalised) {
    // Logits 0..5. Top-k 3 keeps {5, 4, 3}, renormalised: {0.665241, 0.244728, 0.090031};
    // top-p 0.9: 0.6652, 0.9100 >= 0.9 -> 2 tokens. Over the full softmax the prefix sums are
    // 0.6337, 0.8668, 0.9526, so without renormalisation 3 tokens would survive.
    mg::sampling_params p;
    p.top_k = 3;
    p.top_p = 0.9f;
    p.min_p = 0.0f;
    p.temperature = 1.0f;
    p.seed = 3;
    mg::sampler s(p, 6);
    s.choose(std::vector<float>{0, 1, 2, 3, 4, 5});
    EXPECT_EQ(ids(s.last_candidates()), (ids_t{5, 4}));
    EXPECT_NEAR(s.last_candidates()[0].p, 0.665241 / (0.665241 + 0.244728), 1e-6);
}

TEST(Sampler, OrderOfStagesMatters) {
    // Default order (top-p before temperature): top-p 0.8 on T=1 probabilities keeps {3, 2}
    // (0.6439 + 0.2369). Temperature 0.5 first sharpens p_3 to 0.864955 >= 0.8: only {3}.
    const std::vector<mg::sampler_stage> default_order = {mg::top_p_stage{0.8f}, mg::temperature_stage{0.5f}};
    const std::vector<mg::sampler_stage> temp_first = {mg::temperature_stage{0.5f}, mg::top_p_stage{0.8f}};
    mg::sampler a(default_order, 4, 1), b(temp_first, 4, 1);
    a.choose(k_1234);
    b.choose(k_1234);
    EXPECT_EQ(sorted_ids(a.last_candidates()), (ids_t{2, 3}));
    EXPECT_EQ(ids(b.last_candidates()), (ids_t{3}));
    // In the a case the draw uses T=0.5 on {3, 2}: e^0 : e^-2 = 1 : 0.135335 -> p_3 = 0.880797.
    EXPECT_NEAR(a.last_candidates()[0].p, 0.880797, 1e-6);
    // And the chain built from params has llama.cpp's order.
    mg::sampler d(mg::sampling_params{}, 4);
    std::vector<std::string_view> names;
    for (const auto& st : d.chain()) names.push_back(mg::stage_name(st));
    EXPECT_EQ(names, (std::vector<std::string_view>{"logit_bias", "penalties", "top_k", "typical_p", "top_p",
                                                     "min_p", "temperature"}));
}

TEST(Sampler, CustomStageRuns) {
    // A custom stage that bans even ids, then greedy: best odd id of {1,2,3,4} is 1 (logit 2).
    std::vector<mg::sampler_stage> chain = {
        mg::custom_stage{"no_even", [](mg::candidates& c, const mg::token_history&) {
                             for (auto& x : c)
                                 if (x.id % 2 == 0) x.logit = -k_inf;
                             c.logits_changed();
                         }}};
    mg::sampler s(chain, 4, 1, 64, true);
    EXPECT_EQ(s.sample(k_1234), 3);  // ids 1 and 3 remain (logits 2 and 4)
    EXPECT_EQ(s.sample(std::vector<float>{9, 2, 9, 1}), 1);
}

TEST(Sampler, BadInputThrows) {
    mg::sampler s(mg::sampling_params{}, 4);
    EXPECT_THROW(s.sample(std::vector<float>{1, 2, 3}), mg::shape_error);
    EXPECT_THROW(s.sample(std::vector<float>{1, std::nanf(""), 3, 4}), mg::error);
    EXPECT_THROW(s.sample(std::vector<float>{1, k_inf, 3, 4}), mg::error);
    EXPECT_THROW(s.accept(4), mg::lookup_error);
    EXPECT_THROW(s.accept(-1), mg::lookup_error);
    mg::sampling_params p;
    p.logit_bias = {{4, 1.0f}};
    EXPECT_THROW(mg::sampler(p, 4), mg::lookup_error);
    p = {};
    p.repeat_penalty = 0.0f;
    EXPECT_THROW(mg::sampler(p, 4), mg::error);
    p = {};
    p.penalty_last_n = -2;
    EXPECT_THROW(mg::sampler(p, 4), mg::error);
    p = {};
    p.temperature = std::nanf("");
    EXPECT_THROW(mg::sampler(p, 4), mg::error);
    EXPECT_THROW(mg::sampler(mg::sampling_params{}, 0), mg::error);
    // NaN in a large vocabulary is found by the streaming top-k too.
    std::vector<float> big(50257, 0.0f);
    big[40000] = std::nanf("");
    mg::sampler b(mg::sampling_params{}, 50257);
    EXPECT_THROW(b.sample(big), mg::error);
    big[40000] = 0.0f;
    EXPECT_NO_THROW(b.sample(big));  // and the sampler is still usable after the error
}

// ---------------------------------------------------------------- RNG and determinism

TEST(Rng, MatchesTheStandardsMt19937_64Value) {
    // [rand.predef]: the 10000th consecutive output of a default-constructed mt19937_64 (seed
    // 5489) is 9981545732273789042.
    mg::rng r(5489);
    std::uint64_t x = 0;
    for (int i = 0; i < 10000; ++i) x = r.next_u64();
    EXPECT_EQ(x, 9981545732273789042ull);
    // uniform() is the top 53 bits of the next output over 2^53.
    mg::rng a(5489), b(5489);
    for (int i = 0; i < 100; ++i) {
        const double u = a.uniform();
        EXPECT_EQ(u, static_cast<double>(b.next_u64() >> 11) / 9007199254740992.0);
        EXPECT_GE(u, 0.0);
        EXPECT_LT(u, 1.0);
    }
}

TEST(Rng, CategoricalNeverPicksZeroWeights) {
    mg::rng r(11);
    const std::vector<float> w = {0.0f, 1.0f, 0.0f, 3.0f, 0.0f};
    int n3 = 0;
    for (int i = 0; i < 4000; ++i) {
        const auto k = r.categorical(w);
        ASSERT_TRUE(k == 1 || k == 3);
        n3 += k == 3;
    }
    EXPECT_NEAR(n3 / 4000.0, 0.75, 0.03);  // binomial sd 0.0068: > 4 sd margin
    // target at the very end of the range (rounding) still lands on a positive weight
    EXPECT_EQ(mg::rng::pick(w.size(), [&](std::size_t i) { return w[i]; }, 4.0), 3u);
    EXPECT_THROW(r.categorical(std::vector<float>{0.0f, 0.0f}), mg::error);
    EXPECT_THROW(r.categorical(std::vector<float>{1.0f, -1.0f}), mg::error);
}

namespace {
std::vector<float> random_logits(mg::rng& r, std::size_t n, double scale) {
    // Box-Muller normal logits: a realistic peaked distribution
    std::vector<float> l(n);
    for (auto& x : l) {
        const double u1 = 1.0 - r.uniform(), u2 = r.uniform();
        x = static_cast<float>(scale * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
    return l;
}
}  // namespace

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
    mg::rng data(99);
    std::vector<std::vector<float>> steps;
    for (int i = 0; i < 64; ++i) steps.push_back(random_logits(data, 1000, 2.0));
    auto run = [&](std::uint64_t seed) {
        mg::sampling_params p;
        p.seed = seed;
        p.repeat_penalty = 1.1f;
        mg::sampler s(p, 1000);
        EXPECT_EQ(s.seed(), seed);
        ids_t out;
        for (const auto& l : steps) out.push_back(s.sample(l));
        // reset() restarts the same stream
        s.reset();
        for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(s.sample(steps[i]), out[i]);
        return out;
    };
    const ids_t a = run(42), b = run(42), c = run(43);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    // k_random_seed draws a seed and reports it
    mg::sampler r(mg::sampling_params{}, 10);
    mg::sampler r2(mg::sampling_params{}, 10);
    EXPECT_NE(r.seed(), r2.seed());
}

// ---------------------------------------------------------------- brute-force reference

namespace {
struct ref_result {
    std::map<std::int32_t, double> p;  // the final candidates and their draw probabilities
};

// The chain in double precision, straight from the definitions: full sort, no fast paths.
ref_result reference_chain(const std::vector<float>& raw, const mg::sampling_params& sp, const ids_t& history) {
    const std::size_t n = raw.size();
    std::vector<double> l(raw.begin(), raw.end());
    for (const auto& [id, b] : sp.logit_bias) l[static_cast<std::size_t>(id)] += b;
    std::map<std::int32_t, int> count;
    const std::size_t from = sp.penalty_last_n < 0 ? 0 : history.size() - std::min<std::size_t>(history.size(), static_cast<std::size_t>(sp.penalty_last_n));
    for (std::size_t i = from; i < history.size(); ++i) ++count[history[i]];
    for (const auto& [id, c] : count) {
        double& x = l[static_cast<std::size_t>(id)];
        x = x > 0 ? x / sp.repeat_penalty : x * sp.repeat_penalty;
        x -= c * static_cast<double>(sp.frequency_penalty) + sp.presence_penalty;
    }
    struct item { std::int32_t id; double l, p; };
    std::vector<item> v;
    for (std::size_t i = 0; i < n; ++i) v.push_back({static_cast<std::int32_t>(i), l[i], 0});
    auto sort_best = [&] { std::sort(v.begin(), v.end(), [](const item& a, const item& b) { return a.l > b.l || (a.l == b.l && a.id < b.id); }); };
    auto softmax = [&] {
        double m = -INFINITY, s = 0;
        for (auto& x : v) m = std::max(m, x.l);
        for (auto& x : v) s += (x.p = std::exp(x.l - m));
        for (auto& x : v) x.p /= s;
    };
    sort_best();
    if (sp.top_k > 0 && static_cast<std::size_t>(sp.top_k) < v.size()) v.resize(static_cast<std::size_t>(sp.top_k));
    if (sp.typical_p < 1) {
        softmax();
        double h = 0;
        for (auto& x : v) if (x.p > 0) h -= x.p * std::log(x.p);
        std::stable_sort(v.begin(), v.end(), [&](const item& a, const item& b) { return std::fabs(-std::log(a.p) - h) < std::fabs(-std::log(b.p) - h); });
        double mass = 0;
        for (std::size_t i = 0; i < v.size(); ++i)
            if ((mass += v[i].p) > sp.typical_p) { v.resize(i + 1); break; }
        sort_best();
    }
    if (sp.top_p < 1) {
        softmax();
        double mass = 0;
        for (std::size_t i = 0; i < v.size(); ++i)
            if ((mass += v[i].p) >= sp.top_p) { v.resize(i + 1); break; }
    }
    if (sp.min_p > 0) {
        softmax();
        double pmax = 0;
        for (auto& x : v) pmax = std::max(pmax, x.p);
        std::erase_if(v, [&](const item& x) { return x.p < sp.min_p * pmax; });
    }
    for (auto& x : v) x.l /= sp.temperature;
    softmax();
    ref_result r;
    for (auto& x : v) r.p[x.id] = x.p;
    return r;
}

void expect_matches_reference(const std::vector<float>& logits, const mg::sampling_params& sp, const ids_t& history) {
    mg::sampler s(sp, static_cast<std::int32_t>(logits.size()));
    for (auto t : history) s.accept(t);
    s.choose(logits);
    const auto ref = reference_chain(logits, sp, history);
    std::map<std::int32_t, double> got;
    for (const auto& c : s.last_candidates()) got[c.id] = c.p;
    ASSERT_EQ(got.size(), ref.p.size()) << "n_vocab " << logits.size() << " top_k " << sp.top_k << " top_p " << sp.top_p;
    for (const auto& [id, p] : ref.p) {
        ASSERT_TRUE(got.count(id)) << "token " << id << " missing";
        EXPECT_NEAR(got[id], p, 2e-6) << "token " << id;
    }
}
}  // namespace

TEST(Sampler, ChainMatchesBruteForceReference) {
    mg::rng data(2024);
    for (const std::size_t n : {std::size_t{100}, std::size_t{5000}, std::size_t{50257}}) {
        const auto logits = random_logits(data, n, 3.0);
        ids_t history;
        for (int i = 0; i < 100; ++i) history.push_back(static_cast<std::int32_t>(data.next_u64() % std::min<std::size_t>(n, 200)));
        struct cfg { std::int32_t k; float p, min_p, typical, temp, rep, freq, pres; std::int32_t last_n; };
        const cfg cfgs[] = {
            {40, 0.95f, 0.05f, 1.0f, 0.8f, 1.0f, 0.0f, 0.0f, 64},    // llama.cpp defaults
            {0, 0.9f, 0.0f, 1.0f, 1.0f, 1.0f, 0.0f, 0.0f, 64},       // top-p alone over the whole vocabulary
            {0, 0.5f, 0.0f, 1.0f, 0.7f, 1.3f, 0.1f, 0.2f, -1},       // penalties over all history + top-p
            {100, 1.0f, 0.02f, 0.9f, 1.2f, 1.1f, 0.0f, 0.5f, 32},    // typical after top-k, min-p
            {0, 1.0f, 0.0f, 0.6f, 1.0f, 1.0f, 0.0f, 0.0f, 64},       // typical over everything
            {1000, 0.99f, 0.0f, 1.0f, 1.5f, 1.0f, 0.3f, 0.0f, 16},
        };
        for (const auto& c : cfgs) {
            mg::sampling_params sp;
            sp.top_k = c.k; sp.top_p = c.p; sp.min_p = c.min_p; sp.typical_p = c.typical; sp.temperature = c.temp;
            sp.repeat_penalty = c.rep; sp.frequency_penalty = c.freq; sp.presence_penalty = c.pres; sp.penalty_last_n = c.last_n;
            sp.seed = 5;
            sp.logit_bias = {{static_cast<std::int32_t>(n / 2), 4.0f}, {7, -k_inf}, {3, -0.5f}};
            expect_matches_reference(logits, sp, history);
        }
    }
}

TEST(Sampler, FastPathsEqualStageByStage) {
    // A leading no-op custom stage disables the fused bias/penalties/top-k selection, so the two
    // samplers run different code on the same chain; tokens must agree exactly.
    mg::rng data(5);
    for (const bool greedy : {false, true}) {
        mg::sampling_params p;
        p.seed = 77;
        if (greedy) p.temperature = 0.0f;
        p.repeat_penalty = 1.5f;
        p.presence_penalty = 0.3f;
        p.logit_bias = {{10, 3.0f}, {11, -k_inf}};
        mg::sampler fused(p, 32000), plain(p, 32000);
        plain.chain().insert(plain.chain().begin(), mg::custom_stage{"noop", {}});
        for (int i = 0; i < 40; ++i) {
            auto l = random_logits(data, 32000, 2.5);
            l[static_cast<std::size_t>(i)] = 12.0f;  // a strong token that the penalties then hit
            ASSERT_EQ(fused.sample(l), plain.sample(l)) << "step " << i << " greedy " << greedy;
        }
    }
}

// ---------------------------------------------------------------- the draw, statistically

namespace {
double chi_square(const std::vector<long>& observed, const std::vector<double>& expected_p, long n) {
    double chi2 = 0;
    for (std::size_t i = 0; i < observed.size(); ++i) {
        const double e = expected_p[i] * static_cast<double>(n);
        chi2 += (static_cast<double>(observed[i]) - e) * (static_cast<double>(observed[i]) - e) / e;
    }
    return chi2;
}
}  // namespace

TEST(Sampler, DrawFollowsTargetDistributionChiSquare) {
    // 8 tokens, temperature 0.7, top-k 5 (top-p, min-p off). Target: q_i ∝ exp(l_i / 0.7) over the
    // five best ids {4, 6, 1, 3, 0}, zero elsewhere. 200000 draws, chi-square with 4 degrees of
    // freedom; the 99.9% critical value is 18.467. The seed is fixed, so the test is deterministic,
    // yet it can fail: a draw biased by even 1% on one token shifts the statistic by ~ 0.01^2 * n *
    // (1/q) ≈ 40-100, and the negative control below shows a plausible wrong distribution (the
    // T = 1 probabilities) scores in the thousands.
    const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.5f, 3.0f, 0.0f, 2.5f, -0.5f};
    const std::vector<int> top5 = {4, 6, 1, 3, 0};
    auto target = [&](double t) {
        std::vector<double> q;
        double s = 0;
        for (int id : top5) s += std::exp(logits[static_cast<std::size_t>(id)] / t);
        for (int id : top5) q.push_back(std::exp(logits[static_cast<std::size_t>(id)] / t) / s);
        return q;
    };
    mg::sampling_params p;
    p.temperature = 0.7f;
    p.top_k = 5;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 20240601;
    mg::sampler s(p, 8);
    const long n = 200000;
    std::vector<long> counts(8, 0);
    for (long i = 0; i < n; ++i) ++counts[static_cast<std::size_t>(s.choose(logits))];
    for (int id : {2, 5, 7}) EXPECT_EQ(counts[static_cast<std::size_t>(id)], 0) << "token outside the top-k drawn";
    std::vector<long> observed;
    for (int id : top5) observed.push_back(counts[static_cast<std::size_t>(id)]);
    const double chi2 = chi_square(observed, target(0.7), n);
    EXPECT_LT(chi2, 18.467) << "chi-square " << chi2;
    const double wrong = chi_square(observed, target(1.0), n);
    EXPECT_GT(wrong, 1000.0) << "negative control " << wrong;
}

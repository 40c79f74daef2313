// Speculative decoding: at temperature 0 the output is the target's greedy output (against
// llama2.c's greedy ids for stories260K, and against plain decoding for synthetic pairs, over
// several draft lengths and both draft sources); sampled output follows the target's
// distribution (chi-square against probabilities recomputed in double from the target's own
// logits, with drafts that disagree often and drafts that agree).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <vector>

#include "minigpt/generate/speculative.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/vocab_gguf.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

std::shared_ptr<const model> synth(dtype type, std::uint64_t seed, architecture arch = architecture::llama) {
    return synthesize_model(find_synth_preset(arch, "tiny"), type, seed);
}

const tokenizer& synth_vocab() {
    static const tokenizer t(synthetic_vocab(512));
    return t;
}

std::vector<std::int32_t> plain_greedy(const std::shared_ptr<const model>& m, const std::vector<std::int32_t>& prompt, int n) {
    context ctx(m, {.n_ctx = 256, .n_threads = 1});
    generation_params gp;
    gp.max_tokens = n;
    gp.ignore_eos = true;
    gp.sampling = sampling_params::greedy();
    sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    std::vector<std::int32_t> history;
    return generate_from_tokens(ctx, synth_vocab(), history, prompt, gp, smp).tokens;
}

speculative_output spec_greedy(const std::shared_ptr<const model>& m, draft_source& d, const std::vector<std::int32_t>& prompt,
                               int n, speculative_params sp, const tokenizer& tok = synth_vocab(), std::int64_t n_ctx = 256) {
    context ctx(m, {.n_ctx = n_ctx, .n_threads = 1});
    generation_params gp;
    gp.max_tokens = n;
    gp.ignore_eos = true;
    gp.sampling = sampling_params::greedy();
    sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    std::vector<std::int32_t> history;
    return generate_speculative(ctx, tok, history, prompt, gp, smp, d, sp);
}

}  // namespace

TEST(Speculative, GreedyMatchesLlama2cGoldenIds) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const auto golden = test::read_ids(test::shared_path("golden/stories260K/greedy-ids.txt"));
    ASSERT_EQ(golden.size(), 257u);
    auto target = model::load(test::shared_path("models/stories260K.gguf"));
    const tokenizer tok = tokenizer::from_gguf(*target->gguf());
    const std::vector<std::int32_t> prompt{golden[0]};
    const std::vector<std::int32_t> expect(golden.begin() + 1, golden.end());
    // Drafts from a random model (mostly rejected), from the target itself (all accepted) and by lookup.
    auto random_draft = synth(dtype::f32, 3);
    for (int draft_max : {1, 3, 8}) {
        for (bool adaptive : {false, draft_max == 8}) {
            SCOPED_TRACE("draft_max " + std::to_string(draft_max) + (adaptive ? " adaptive" : ""));
            const speculative_params sp{.draft_max = draft_max, .draft_min = 0, .draft_p_min = 0.0f, .adaptive = adaptive};
            draft_model bad(random_draft, sampling_params::greedy(), 512, {.n_ctx = 512, .n_threads = 1});
            auto r = spec_greedy(target, bad, prompt, 256, sp, tok, 512);
            EXPECT_EQ(r.out.tokens, expect);
            draft_model self(target, sampling_params::greedy(), 512, {.n_ctx = 512, .n_threads = 1});
            auto s = spec_greedy(target, self, prompt, 256, sp, tok, 512);
            EXPECT_EQ(s.out.tokens, expect);
            if (!adaptive) { EXPECT_EQ(s.spec.n_accepted, s.spec.n_drafted); }  // the target drafting for itself never misses
            prompt_lookup look(3);
            auto l = spec_greedy(target, look, prompt, 256, sp, tok, 512);
            EXPECT_EQ(l.out.tokens, expect);
            if (!adaptive) {
                EXPECT_GT(l.spec.n_accepted, 0);
                EXPECT_LT(l.spec.n_rounds, 256);  // the repetitive story lets lookup skip rounds
            }
        }
    }
}

TEST(Speculative, GreedyMatchesPlainDecodingOnSyntheticPairs) {
    auto target = synth(dtype::f32, 7);
    const std::vector<std::int32_t> prompt{1, 17, 250, 33, 17, 250};
    const auto expect = plain_greedy(target, prompt, 96);
    ASSERT_EQ(expect.size(), 96u);
    for (dtype dt : {dtype::q8_0, dtype::q4_0}) {
        auto draft = synth(dt, 7);  // the same random values, quantised: mostly agrees
        for (int draft_max : {2, 5, 16}) {
            SCOPED_TRACE(std::string(dtype_name(dt)) + " draft_max " + std::to_string(draft_max));
            draft_model d(draft, sampling_params::greedy(), 512, {.n_ctx = 256, .n_threads = 1});
            auto r = spec_greedy(target, d, prompt, 96, {.draft_max = draft_max, .draft_p_min = 0.0f, .adaptive = false});
            EXPECT_EQ(r.out.tokens, expect);
            EXPECT_GT(r.spec.n_accepted, 0);
            EXPECT_LE(r.spec.n_accepted, r.spec.n_drafted);
        }
    }
    // GPT-2 (learned positions) as well, with a draft whose confidence gate cuts drafts short.
    auto g_target = synth(dtype::f32, 11, architecture::gpt2);
    auto g_draft = synth(dtype::q8_0, 11, architecture::gpt2);
    const auto g_expect = plain_greedy(g_target, prompt, 64);
    draft_model d(g_draft, sampling_params::greedy(), 512, {.n_ctx = 256, .n_threads = 1});
    EXPECT_EQ(spec_greedy(g_target, d, prompt, 64, {.draft_max = 6, .draft_p_min = 0.05f}).out.tokens, g_expect);
}

TEST(Speculative, StopsLikePlainGeneration) {
    auto target = synth(dtype::f32, 7);
    const std::vector<std::int32_t> prompt{1, 5, 6};
    const auto expect = plain_greedy(target, prompt, 40);
    for (int n : {1, 2, 7, 40}) {
        prompt_lookup look(2);
        auto r = spec_greedy(target, look, prompt, n, {.draft_max = 8, .adaptive = false});
        EXPECT_EQ(r.out.tokens, std::vector<std::int32_t>(expect.begin(), expect.begin() + n));
    }
    // A full context ends generation at the same token as plain decoding.
    context ctx(target, {.n_ctx = 24, .n_threads = 1});
    generation_params gp;
    gp.max_tokens = -1;
    gp.ignore_eos = true;
    gp.sampling = sampling_params::greedy();
    sampler smp(gp.sampling, 512);
    std::vector<std::int32_t> h;
    const auto plain = generate_from_tokens(ctx, synth_vocab(), h, prompt, gp, smp);
    auto draft = synth(dtype::q8_0, 7);
    draft_model d(draft, sampling_params::greedy(), 512, {.n_ctx = 24, .n_threads = 1});
    auto r = spec_greedy(target, d, prompt, -1, {.draft_max = 5, .draft_p_min = 0.0f, .adaptive = false}, synth_vocab(), 24);
    EXPECT_EQ(plain.reason, stop_reason::context_full);
    EXPECT_EQ(r.out.reason, stop_reason::context_full);
    EXPECT_EQ(r.out.tokens, plain.tokens);
}

// After a gap of more than 8 tokens the draft model decodes only the last 8 it missed, right
// after what it holds; within 8 it catches up fully. Reference: a fresh context of the draft model
// fed exactly those tokens, continued greedily.
TEST(Speculative, DraftModelSkipsAheadAfterAGap) {
    auto m = synth(dtype::f32, 9);
    std::vector<std::int32_t> history{1};
    for (int i = 1; i < 40; ++i) history.push_back((31 * i + 7) % 512);
    auto reference = [&](std::vector<std::int32_t> seen, int n) {
        context ctx(m, {.n_ctx = 256, .n_threads = 1});
        sampler smp(sampling_params::greedy(), 512);
        std::vector<std::int32_t> out;
        ctx.decode(seen);
        for (int j = 0; j < n; ++j) {
            out.push_back(smp.choose(ctx.logits(0)));
            ctx.decode(std::span(&out.back(), 1));
        }
        return out;
    };
    auto drafted = [](const std::vector<drafted_token>& d) {
        std::vector<std::int32_t> ids;
        for (const auto& x : d) ids.push_back(x.token);
        return ids;
    };
    draft_model d(m, sampling_params::greedy(), 512, {.n_ctx = 256, .n_threads = 1});
    rng gen(1);
    std::vector<drafted_token> out;
    const std::span<const std::int32_t> h(history);
    d.prepare(h.first(10));
    d.draft(h.first(15), 3, 0.0f, true, gen, out);  // a gap of 5: caught up in full
    EXPECT_EQ(drafted(out), reference({history.begin(), history.begin() + 15}, 3));
    d.draft(h, 3, 0.0f, true, gen, out);  // a gap of 25: the last 8 follow the first 15
    std::vector<std::int32_t> seen(history.begin(), history.begin() + 15);
    seen.insert(seen.end(), history.end() - 8, history.end());
    EXPECT_EQ(drafted(out), reference(seen, 3));
    EXPECT_EQ(d.ctx().n_past(), 15 + 8 + 2);  // the two drafts it decoded follow the 23 it holds
    // prepare() with a new prompt decodes all of it.
    d.prepare(h.first(2));
    d.prepare(h);
    d.draft(h, 3, 0.0f, true, gen, out);
    EXPECT_EQ(drafted(out), reference(history, 3));
    EXPECT_EQ(d.ctx().n_past(), 40 + 2);
}

TEST(Speculative, RejectsBadParameters) {
    auto target = synth(dtype::f32, 7);
    auto other = synth(dtype::f32, 7, architecture::gpt2);
    EXPECT_THROW(prompt_lookup(0), error);
    prompt_lookup look(2);
    EXPECT_THROW(spec_greedy(target, look, {1, 2}, 4, {.draft_max = 2, .draft_min = 3}), error);
    // A draft with another vocabulary size.
    auto small = synthesize_model(find_synth_preset(architecture::llama, "tiny"), dtype::f32, 1, "small", 256);
    EXPECT_THROW(draft_model(small, sampling_params::greedy(), 512), error);
    EXPECT_NO_THROW(draft_model(other, sampling_params::greedy(), 512));
}

namespace {

// Chi-square statistic over cells with expected count >= 5 (the rest pooled into one cell),
// and its degrees of freedom.
std::pair<double, int> chi_square(const std::map<std::vector<std::int32_t>, double>& expected_p,
                                  const std::map<std::vector<std::int32_t>, int>& observed, int n) {
    double chi = 0.0, pooled_e = 0.0;
    int pooled_o = 0, cells = 0;
    for (const auto& [key, p] : expected_p) {
        const double e = p * n;
        const auto it = observed.find(key);
        const int o = it == observed.end() ? 0 : it->second;
        if (e < 5.0) { pooled_e += e; pooled_o += o; continue; }
        chi += (o - e) * (o - e) / e;
        ++cells;
    }
    int outside = 0;  // outcomes the target gives probability 0 must never appear
    for (const auto& [key, o] : observed)
        if (!expected_p.count(key)) outside += o;
    EXPECT_EQ(outside, 0);
    if (pooled_e > 0) { chi += (pooled_o - pooled_e) * (pooled_o - pooled_e) / std::max(pooled_e, 1e-9); ++cells; }
    return {chi, cells - 1};
}

// Upper 1e-4 quantile of chi-square(df), Wilson-Hilferty.
double chi_square_limit(int df) {
    const double z = 3.719, a = 2.0 / (9.0 * df);
    return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

// Target's distribution of the next token after `ctx_tokens`: softmax of the top_k logits at
// temperature t, recomputed in double from the model's logits.
std::vector<std::pair<std::int32_t, double>> reference_next(const std::shared_ptr<const model>& m, const std::vector<std::int32_t>& ctx_tokens,
                                                            int top_k, double t) {
    context ctx(m, {.n_ctx = 200, .n_threads = 1});
    ctx.decode(ctx_tokens);
    const auto l = ctx.logits(0);
    std::vector<std::int32_t> ids(l.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + top_k, ids.end(), [&](auto a, auto b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    std::vector<std::pair<std::int32_t, double>> out;
    double s = 0.0;
    for (int i = 0; i < top_k; ++i) s += std::exp((l[ids[i]] - l[ids[0]]) / t);
    for (int i = 0; i < top_k; ++i) out.push_back({ids[i], std::exp((l[ids[i]] - l[ids[0]]) / t) / s});
    return out;
}

void check_sampled_distribution(const std::shared_ptr<const model>& target, const std::shared_ptr<const model>& draft_m,
                                bool lookup) {
    constexpr int top_k = 6, n_samples = 3000;
    constexpr double temp = 1.5;
    // Distinct tokens P, the target's greedy continuation G of P, then P again: after the second
    // P the target tends to repeat G, which lookup proposes (and the draft models draft freely).
    std::vector<std::int32_t> prompt{1};
    for (int i = 0; i < 60; ++i) prompt.push_back(2 + (i * 7) % 509);
    const auto g = plain_greedy(target, prompt, 12);
    const std::vector<std::int32_t> p_copy(prompt.begin() + 1, prompt.end());
    prompt.insert(prompt.end(), g.begin(), g.end());
    prompt.insert(prompt.end(), p_copy.begin(), p_copy.end());
    // Exact joint distribution of the first two generated tokens (36 cells), and the second's
    // marginal, which comes only from verification rounds.
    std::map<std::vector<std::int32_t>, double> joint;
    for (auto [t1, p1] : reference_next(target, prompt, top_k, temp)) {
        auto ctx2 = prompt;
        ctx2.push_back(t1);
        for (auto [t2, p2] : reference_next(target, ctx2, top_k, temp)) joint[{t1, t2}] += p1 * p2;
    }
    sampling_params sp;
    sp.temperature = static_cast<float>(temp);
    sp.top_k = top_k;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    std::map<std::vector<std::int32_t>, int> seen;
    // The prompt but its last token is decoded once; each sample continues from there.
    context ctx(target, {.n_ctx = 200, .n_threads = 1});
    const std::vector<std::int32_t> prefix(prompt.begin(), prompt.end() - 1);
    ctx.decode(prefix);
    std::unique_ptr<draft_source> d;
    if (lookup) d = std::make_unique<prompt_lookup>(3);
    else d = std::make_unique<draft_model>(draft_m, sp, 512, context_params{.n_ctx = 200, .n_threads = 1});
    std::int64_t drafted = 0, accepted = 0;
    for (int s = 0; s < n_samples; ++s) {
        ctx.truncate(static_cast<std::int64_t>(prefix.size()));
        sp.seed = 1000 + static_cast<std::uint64_t>(s);
        sampler smp(sp, 512);
        generation_params gp;
        gp.max_tokens = 3;
        gp.ignore_eos = true;
        gp.sampling = sp;
        std::vector<std::int32_t> h = prefix;
        auto r = generate_speculative(ctx, synth_vocab(), h, std::span(&prompt.back(), 1), gp, smp, *d,
                                      {.draft_max = 3, .draft_min = 0, .draft_p_min = 0.0f, .adaptive = false});
        ASSERT_EQ(r.out.tokens.size(), 3u);
        ++seen[{r.out.tokens[0], r.out.tokens[1]}];
        drafted += r.spec.n_drafted;
        accepted += r.spec.n_accepted;
    }
    const auto [chi, df] = chi_square(joint, seen, n_samples);
    EXPECT_LT(chi, chi_square_limit(df)) << "df " << df;
    // Both branches of the rule ran many times.
    EXPECT_GT(accepted, n_samples / 100);
    EXPECT_GT(drafted - accepted, n_samples / 100);
}

}  // namespace

TEST(Speculative, SampledOutputHasTheTargetDistributionWithADisagreeingDraft) {
    check_sampled_distribution(synth(dtype::f32, 7), synth(dtype::f32, 8), false);
}

TEST(Speculative, SampledOutputHasTheTargetDistributionWithAnAgreeingDraft) {
    check_sampled_distribution(synth(dtype::f32, 7), synth(dtype::q4_0, 7), false);
}

TEST(Speculative, SampledOutputHasTheTargetDistributionWithLookup) {
    check_sampled_distribution(synth(dtype::f32, 7), nullptr, true);
}

// The draft-length controller against costs and acceptance fed to it (no timing involved).
TEST(Speculative, ControllerFallsBackToPlainDecodingWhenDraftsFail) {
    // Every draft rejected; a verification costs 10 ms whatever its size, a draft token 1 ms.
    draft_controller c(8, true);
    int drafting_rounds = 0, late_drafting_rounds = 0;
    for (int round = 0; round < 2000; ++round) {
        const std::int32_t k = c.next_length();
        ASSERT_GE(k, 0);
        ASSERT_LE(k, 8);
        if (k > 0) ++drafting_rounds;
        if (k > 0 && round >= 1000) ++late_drafting_rounds;
        c.record(k, 0, k * 1e-3, false, k + 1, 10e-3);
    }
    // A few drafts while the acceptance estimate (prior 1/2) falls below the break-even 0.155 of
    // a 1-token draft, then probes ever more rarely (a draft model: 16, 64, 256, 1024 rounds apart): the last 1000
    // rounds hold at most 1000 / 256 + 1 of them.
    EXPECT_GE(drafting_rounds, 2);
    EXPECT_LE(drafting_rounds, 25);
    EXPECT_LE(late_drafting_rounds, 5);
}

TEST(Speculative, ControllerDraftsLongWhenDraftsAgree) {
    // Every draft accepted; verifying n tokens costs 10 ms * (1 + 0.05 (n - 1)), a draft token 1 ms.
    // With acceptance 1, k tokens drafted yield k + 1 per round: the best k maximises
    // (k + 1) / (k * 1 + 10 * (1 + 0.05 k)), which grows with k up to draft_max.
    draft_controller c(8, true);
    std::int32_t k = 0;
    for (int round = 0; round < 200; ++round) {
        k = c.next_length();
        c.record(k, k, k * 1e-3, false, k + 1, 10e-3 * (1 + 0.05 * k));
    }
    double best = 0;
    std::int32_t best_k = 0;
    for (std::int32_t j = 0; j <= 8; ++j) {
        const double rate = (j + 1.0) / (j * 1.0 + 10.0 * (1 + 0.05 * j));
        if (rate > best) { best = rate; best_k = j; }
    }
    EXPECT_EQ(best_k, 8);
    EXPECT_EQ(k, best_k);
    // A draft only as fast as the target gains nothing: plain decoding.
    draft_controller slow(8, true);
    for (int round = 0; round < 200; ++round) {
        k = slow.next_length();
        slow.record(k, k / 2, k * 10e-3, false, k + 1, 10e-3);
    }
    EXPECT_EQ(k, 0);
}

// Prompt lookup drafts what followed the last n-gram's most recent earlier occurrence, continued
// periodically past the end of the history (hand-worked cases).
TEST(Speculative, LookupContinuesPeriodically) {
    rng gen(1);
    std::vector<drafted_token> out;
    auto tokens = [&] {
        std::vector<std::int32_t> t;
        for (const auto& d : out) t.push_back(d.token);
        return t;
    };
    prompt_lookup look(2);
    const std::vector<std::int32_t> h1{5, 6, 7, 8, 5, 6};  // (5, 6) at 0: then 7 8, then the draft repeats
    look.draft(h1, 6, 0.0f, true, gen, out);
    EXPECT_EQ(tokens(), (std::vector<std::int32_t>{7, 8, 5, 6, 7, 8}));
    const std::vector<std::int32_t> h2{1, 3, 3, 3};  // (3, 3) at 1: period 1
    look.draft(h2, 4, 0.0f, true, gen, out);
    EXPECT_EQ(tokens(), (std::vector<std::int32_t>{3, 3, 3, 3}));
    const std::vector<std::int32_t> h3{9, 4, 2, 9, 4};  // (9, 4) at 0: 2 9 4 2 ...
    look.draft(h3, 2, 0.0f, true, gen, out);
    EXPECT_EQ(tokens(), (std::vector<std::int32_t>{2, 9}));
    const std::vector<std::int32_t> h4{1, 2, 3, 4};  // no earlier occurrence of any suffix
    look.draft(h4, 4, 0.0f, true, gen, out);
    EXPECT_TRUE(out.empty());
}

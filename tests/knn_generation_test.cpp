// kNN-LM in generation (the sampler stage), adaptive retrieval and PCA-reduced keys.
//   - lambda = 0, or a threshold no step exceeds: output equals plain generation, greedy and sampled;
//   - lambda = 1, k = 1 with a store built from a text: greedy generation from a prefix of that
//     text reproduces the text (every query finds its own context);
//   - adaptive perplexity: threshold < 0 equals evaluate_perplexity's kNN-LM, +inf the LM alone,
//     and in between a per-position recomputation from the logits' entropy in double;
//   - PCA: eigenvalues of data with a known covariance, neighbours of projected queries equal a
//     brute-force search over brute-force projected keys, the store file round-trips its
//     projection and rejects a corrupted one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "minigpt/generate/generation.hpp"
#include "minigpt/knn.hpp"
#include "minigpt/knn/adaptive.hpp"
#include "minigpt/knn/pca.hpp"
#include "minigpt/knn/sampler_stage.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/vocab_gguf.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

std::shared_ptr<const model> synth_llama() {
    static const auto m = [] {
        return synthesize_model(find_synth_preset(architecture::llama, "tiny"), dtype::f32, 5);
    }();
    return m;
}

const tokenizer& vocab() {
    static const tokenizer t(synthetic_vocab(512));
    return t;
}

std::vector<std::int32_t> corpus(std::size_t n, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::vector<std::int32_t> ids{1};
    while (ids.size() < n) ids.push_back(static_cast<std::int32_t>(3 + g() % 500));
    return ids;
}

// A store of (ffn_input state at p, ids[p + 1]) from one window at positions 0...
std::shared_ptr<const knn::datastore> build_store(const std::shared_ptr<const model>& m, const std::vector<std::int32_t>& ids) {
    context ctx(m, {.n_ctx = 256, .n_batch = 256, .n_threads = 1, .tap = hidden_tap::ffn_input});
    ctx.decode(ids, logits_for::none);
    const auto tap = ctx.tap_output();
    const std::int64_t d = m->config().n_embd, n = static_cast<std::int64_t>(ids.size()) - 1;
    tensor keys = tensor::empty(dtype::f32, {n, d});
    std::copy(tap.begin(), tap.begin() + n * d, keys.data<float>());
    return knn::datastore::from_memory(std::move(keys), std::vector<std::int32_t>(ids.begin() + 1, ids.end()), "synth");
}

// Stage parameters: mixing weight, neighbours, entropy threshold (T = 1).
knn::knn_stage_params stage_params(float lambda, std::int32_t k = 32, double threshold = -1.0) {
    knn::knn_stage_params p;
    p.mix.lambda = lambda;
    p.mix.k = k;
    p.entropy_threshold = threshold;
    return p;
}

struct run_result {
    std::vector<std::int32_t> tokens;
    knn::knn_stage_stats stats;
};

run_result generate_with(const std::vector<std::int32_t>& prompt, const sampling_params& sp, int n,
                         std::shared_ptr<const knn::knn_index> index, knn::knn_stage_params kp) {
    context ctx(synth_llama(), {.n_ctx = 256, .n_threads = 1, .tap = hidden_tap::ffn_input});
    generation_params gp;
    gp.max_tokens = n;
    gp.ignore_eos = true;
    gp.sampling = sp;
    sampler smp(sp, 512);
    std::unique_ptr<knn::knn_sampler_stage> stage;
    if (index) {
        stage = std::make_unique<knn::knn_sampler_stage>(index, kp, ctx);
        stage->install(smp);
    }
    std::vector<std::int32_t> h;
    run_result r;
    r.tokens = generate_from_tokens(ctx, vocab(), h, prompt, gp, smp).tokens;
    if (stage) r.stats = stage->stats();
    return r;
}

}  // namespace

TEST(KnnGeneration, LambdaZeroAndSkippedStepsEqualPlainGeneration) {
    const auto text = corpus(200, 1);
    auto index = std::make_shared<knn::exact_index>(build_store(synth_llama(), text));
    const std::vector<std::int32_t> prompt{1, 40, 41, 42};
    sampling_params sampled;
    sampled.seed = 99;
    sampled.repeat_penalty = 1.3f;
    for (const auto& sp : {sampling_params::greedy(), sampled}) {
        const auto plain = generate_with(prompt, sp, 48, nullptr, stage_params(0.0f));
        const auto zero = generate_with(prompt, sp, 48, index, stage_params(0.0f, 8));
        EXPECT_EQ(zero.tokens, plain.tokens);
        EXPECT_EQ(zero.stats.n_steps, 48);
        EXPECT_EQ(zero.stats.n_retrieved, 0);
        // A threshold above any entropy (log 512 = 6.24 nats) never retrieves.
        const auto skip = generate_with(prompt, sp, 48, index, stage_params(0.5f, 8, 7.0));
        EXPECT_EQ(skip.tokens, plain.tokens);
        EXPECT_EQ(skip.stats.n_retrieved, 0);
        // Always retrieving with a real weight changes the output.
        const auto mixed = generate_with(prompt, sp, 48, index, stage_params(0.9f, 8));
        EXPECT_EQ(mixed.stats.n_retrieved, 48);
        EXPECT_NE(mixed.tokens, plain.tokens);
    }
}

TEST(KnnGeneration, LambdaOneRecitesTheStoredText) {
    const auto text = corpus(120, 2);
    auto index = std::make_shared<knn::exact_index>(build_store(synth_llama(), text));
    const std::vector<std::int32_t> prompt(text.begin(), text.begin() + 10);
    const auto r = generate_with(prompt, sampling_params::greedy(), 60, index, stage_params(1.0f, 1));
    EXPECT_EQ(r.tokens, std::vector<std::int32_t>(text.begin() + 10, text.begin() + 70));
}

TEST(KnnGeneration, StageRejectsMisuse) {
    auto index = std::make_shared<knn::exact_index>(build_store(synth_llama(), corpus(50, 3)));
    context no_tap(synth_llama(), {.n_ctx = 64, .n_threads = 1});
    EXPECT_THROW(knn::knn_sampler_stage(index, {}, no_tap), error);
    context ctx(synth_llama(), {.n_ctx = 64, .n_threads = 1, .tap = hidden_tap::ffn_input});
    EXPECT_THROW(knn::knn_sampler_stage(index, stage_params(2.0f), ctx), error);
    EXPECT_THROW(knn::knn_sampler_stage(index, stage_params(0.5f, 8, std::nan("")), ctx), error);
    // Not first in the chain: after top-k the candidates are no longer the whole vocabulary.
    knn::knn_sampler_stage stage(index, stage_params(0.5f), ctx);
    sampling_params sp;
    sp.seed = 1;
    sampler smp(sp, 512);
    smp.chain().push_back(stage.stage());
    const std::vector<std::int32_t> p{1, 2, 3};
    ctx.decode(p);
    EXPECT_THROW(smp.sample(ctx.logits(0)), error);
}

TEST(KnnAdaptive, ThresholdsBetweenNeverAndAlways) {
    auto m = synth_llama();
    const auto store_text = corpus(250, 4), eval_text = corpus(250, 5);
    auto index = std::make_shared<knn::exact_index>(build_store(m, store_text));
    context ctx(m, {.n_ctx = 64, .n_batch = 64, .n_threads = 1, .tap = hidden_tap::ffn_input});
    auto provider = [&](std::span<const std::int32_t> t, std::int64_t, float* keys, float* logits) {
        ctx.truncate(0);
        ctx.decode(t, logits_for::all);
        std::copy(ctx.tap_output().begin(), ctx.tap_output().end(), keys);
        std::copy(ctx.logits().begin(), ctx.logits().end(), logits);
    };
    const knn::window_params w{64, 0};
    const knn::knn_lm_params kp{.lambda = 0.3f, .k = 16, .temperature = 10.0f};
    // Position by position, in double from the logits: entropy, and the mixture where h > thr.
    struct recomputed {
        double nll = 0;
        std::int64_t n_retrieved = 0;
        std::vector<double> entropies;
    };
    auto recompute = [&](double thr) {
        recomputed r;
        for (const auto& win : knn::make_windows(250, w)) {
            const std::int64_t len = win.end - win.begin;
            std::vector<float> keys(static_cast<std::size_t>(len * 64)), logits(static_cast<std::size_t>(len * 512));
            provider(std::span(eval_text).subspan(static_cast<std::size_t>(win.begin), static_cast<std::size_t>(len)), win.begin,
                     keys.data(), logits.data());
            for (std::int64_t p = win.first_used; p < std::min<std::int64_t>(win.end, 249); ++p) {
                const float* l = logits.data() + (p - win.begin) * 512;
                double mx = -1e300, z = 0, h = 0;
                for (int i = 0; i < 512; ++i) mx = std::max(mx, static_cast<double>(l[i]));
                for (int i = 0; i < 512; ++i) z += std::exp(l[i] - mx);
                for (int i = 0; i < 512; ++i) {
                    const double pr = std::exp(l[i] - mx) / z;
                    h -= pr * std::log(pr);
                }
                r.entropies.push_back(h);
                const std::int32_t next = eval_text[static_cast<std::size_t>(p + 1)];
                double lp = l[next] - mx - std::log(z);
                if (h > thr) {
                    ++r.n_retrieved;
                    std::vector<knn::neighbour> nb;
                    index->search(keys.data() + (p - win.begin) * 64, 16, nb);
                    // p_kNN(next) = sum over neighbours with that value of exp(-d/T), normalised.
                    double num = 0, den = 0;
                    for (const auto& x : nb) {
                        const double e = std::exp(-(x.distance - nb[0].distance) / 10.0);
                        den += e;
                        if (x.value == next) num += e;
                    }
                    lp = std::log(0.3 * num / den + 0.7 * std::exp(lp));
                }
                r.nll -= lp;
            }
        }
        return r;
    };
    auto sorted = recompute(1e9).entropies;
    ASSERT_EQ(sorted.size(), 249u);
    std::sort(sorted.begin(), sorted.end());
    const double thresholds[] = {-1.0, sorted[70], sorted[180], 1e9};  // about 70% and 30% retrieve
    const auto rep = knn::evaluate_perplexity_adaptive(eval_text, 64, 512, w, provider, *index, kp, thresholds, 1);
    const auto ref = knn::evaluate_perplexity(eval_text, 64, 512, w, provider, index.get(), kp, 1);
    ASSERT_EQ(rep.by_threshold.size(), 4u);
    EXPECT_NEAR(rep.base.mean_nll(), ref.base.mean_nll(), 1e-12);
    EXPECT_NEAR(rep.by_threshold[0].mixed.mean_nll(), ref.mixed.mean_nll(), 1e-9);
    EXPECT_EQ(rep.by_threshold[0].n_retrieved, 249);
    EXPECT_NEAR(rep.by_threshold[3].mixed.mean_nll(), ref.base.mean_nll(), 1e-12);
    EXPECT_EQ(rep.by_threshold[3].n_retrieved, 0);
    for (std::size_t ti : {0u, 1u, 2u}) {
        const auto want = recompute(thresholds[ti]);
        const auto& res = rep.by_threshold[ti];
        // Entropies computed in float and double may straddle a threshold at one position.
        EXPECT_NEAR(static_cast<double>(res.n_retrieved), static_cast<double>(want.n_retrieved), 1.0) << "threshold " << thresholds[ti];
        if (res.n_retrieved == want.n_retrieved) {
            EXPECT_NEAR(res.mixed.mean_nll(), want.nll / 249.0, 1e-5);
        }
    }
    EXPECT_NEAR(static_cast<double>(rep.by_threshold[1].n_retrieved), 178.0, 2.0);
    EXPECT_NEAR(static_cast<double>(rep.by_threshold[2].n_retrieved), 68.0, 2.0);
}

namespace {

// n points in `dim` dimensions: mean + sum_i s_i z_i u_i over orthonormal u_i (i < rank), plus
// noise of deviation `noise`: the covariance has eigenvalues s_i^2 + noise^2 and noise^2.
std::vector<float> low_rank_points(std::int64_t n, std::int64_t dim, const std::vector<double>& s, double noise, std::uint32_t seed,
                                   std::vector<std::vector<double>>* basis = nullptr) {
    std::mt19937 g(seed);
    std::normal_distribution<double> z(0, 1);
    std::vector<std::vector<double>> u;
    for (std::size_t i = 0; i < s.size(); ++i) {  // Gram-Schmidt on random vectors
        std::vector<double> v(static_cast<std::size_t>(dim));
        for (auto& x : v) x = z(g);
        for (const auto& w : u) {
            double d = 0;
            for (std::int64_t j = 0; j < dim; ++j) d += v[j] * w[j];
            for (std::int64_t j = 0; j < dim; ++j) v[j] -= d * w[j];
        }
        double nn = 0;
        for (double x : v) nn += x * x;
        for (double& x : v) x /= std::sqrt(nn);
        u.push_back(v);
    }
    std::vector<float> pts(static_cast<std::size_t>(n * dim));
    for (std::int64_t p = 0; p < n; ++p) {
        std::vector<double> x(static_cast<std::size_t>(dim), 3.0);  // mean 3 everywhere
        for (std::size_t i = 0; i < s.size(); ++i) {
            const double c = s[i] * z(g);
            for (std::int64_t j = 0; j < dim; ++j) x[j] += c * u[i][j];
        }
        for (std::int64_t j = 0; j < dim; ++j) pts[static_cast<std::size_t>(p * dim + j)] = static_cast<float>(x[j] + noise * z(g));
    }
    if (basis) *basis = u;
    return pts;
}

}  // namespace

TEST(KnnPca, RecoversTheCovarianceAndKeepsNeighbours) {
    const std::int64_t n = 4000, dim = 24;
    const std::vector<double> s{5.0, 4.0, 3.0, 2.0};
    auto pts = low_rank_points(n, dim, s, 0.01, 7);
    tensor keys = tensor::empty(dtype::f32, {n, dim});
    std::copy(pts.begin(), pts.end(), keys.data<float>());
    std::vector<std::int32_t> values(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % 97);
    auto store = knn::datastore::from_memory(std::move(keys), values, "fp");
    const auto fit = knn::fit_pca(*store, 4);
    for (std::size_t i = 0; i < s.size(); ++i) EXPECT_NEAR(fit.eigenvalues[i], s[i] * s[i], 0.1 * s[i] * s[i]) << i;
    EXPECT_GT(fit.explained(), 0.999);
    // Rows orthonormal.
    const auto& c = fit.projection.components;
    for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) {
            double d = 0;
            for (std::int64_t j = 0; j < dim; ++j) d += static_cast<double>(c[a * dim + j]) * c[b * dim + j];
            EXPECT_NEAR(d, a == b ? 1.0 : 0.0, 1e-5);
        }

    const auto dir = test::temp_dir("knn-pca");
    const auto path = (dir / "pca.knn").string();
    knn::write_projected_store(*store, fit.projection, path, dtype::f32);
    auto reduced = knn::datastore::open(path, "fp");
    ASSERT_EQ(reduced->dim(), 4);
    EXPECT_EQ(reduced->state_dim(), dim);
    EXPECT_EQ(reduced->projection().components, fit.projection.components);
    EXPECT_EQ(reduced->projection().mean, fit.projection.mean);
    auto index = knn::for_states(std::make_shared<knn::exact_index>(reduced, 1), *reduced);
    ASSERT_EQ(index->dim(), dim);
    // Queries near the data: their neighbours among the projected keys equal a brute-force
    // search (double) over keys projected by hand; and mostly the full-dimension neighbours.
    auto queries = low_rank_points(20, dim, s, 0.01, 8);
    knn::exact_index full(store, 1);
    double overlap = 0;
    for (int qi = 0; qi < 20; ++qi) {
        const float* q = queries.data() + qi * dim;
        std::vector<knn::neighbour> got, want_full;
        index->search(q, 10, got);
        full.search(q, 10, want_full);
        std::vector<double> pq(4);
        for (int r = 0; r < 4; ++r)
            for (std::int64_t j = 0; j < dim; ++j) pq[r] += static_cast<double>(c[r * dim + j]) * (q[j] - fit.projection.mean[j]);
        std::vector<std::pair<double, std::int64_t>> brute;
        for (std::int64_t k = 0; k < n; ++k) {
            double dsum = 0;
            for (int r = 0; r < 4; ++r) {
                double pk = 0;
                for (std::int64_t j = 0; j < dim; ++j) pk += static_cast<double>(c[r * dim + j]) * (pts[k * dim + j] - fit.projection.mean[j]);
                dsum += (pk - pq[r]) * (pk - pq[r]);
            }
            brute.push_back({dsum, k});
        }
        std::partial_sort(brute.begin(), brute.begin() + 10, brute.end());
        ASSERT_EQ(got.size(), 10u);
        for (int i = 0; i < 10; ++i) {
            EXPECT_NEAR(got[i].distance, brute[i].first, 1e-3 + 1e-4 * brute[i].first);
            EXPECT_EQ(got[i].value, values[static_cast<std::size_t>(got[i].key_index)]);
        }
        for (const auto& a : got)
            for (const auto& b : want_full) overlap += a.key_index == b.key_index;
    }
    EXPECT_GT(overlap / 200.0, 0.9);  // recall@10 of the reduced keys against the full ones

    // The projection is validated on load: flip a byte of it.
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(64 + 8 + 16 + 4 * 5);  // fingerprint "fp" (2 bytes, block at 72): a mean value
        const char x = 0x55;
        f.write(&x, 1);
    }
    try {
        knn::datastore::open(path);
        ADD_FAILURE() << "corrupted projection not detected";
    } catch (const format_error& e) {
        EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
    }
    EXPECT_THROW(knn::fit_pca(*reduced, 2), error);  // already projected
    EXPECT_THROW(knn::fit_pca(*store, 0), error);
    EXPECT_THROW(knn::fit_pca(*store, dim + 1), error);
    std::filesystem::remove_all(dir);
}

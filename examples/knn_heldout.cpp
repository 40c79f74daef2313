// kNN-LM on held-apart text: a datastore from one stream of stories, perplexity on another, for
// exact search, IVF, PCA-reduced keys and adaptive retrieval (docs/knn-lm.md's figures).
//
//   example_knn_heldout MODEL [STORE_DOCS] [EVAL_DOCS] [SAMPLE_TEMP] [LAMBDA] [KNN_TEMP]
//
// Both streams are stories sampled from the model itself (the store's with seeds 1000.., the
// scored one's with seeds 2000..; no story is in both), at SAMPLE_TEMP (default 0.8, no other
// truncation): text of the model's domain but sharper than its own distribution, which is what
// a store can teach it. Each story is BOS plus ctx - 1 tokens, ctx = min(256, the model's
// training context), and the scoring windows are the stories: a window that starts mid-story,
// without BOS, is not what small models like stories260K were trained on, and their
// predictions there collapse (on stories260K, 255-token stories scored in 128-token windows give
// a perplexity of ~300 for text the model itself scores ~28 on with its BOS). The first line
// checks the windowed LM-alone perplexity against the log-probabilities taken while sampling.
// Keys: ffn_input; k = 32.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "minigpt/generate/generation.hpp"
#include "minigpt/knn.hpp"
#include "minigpt/knn/adaptive.hpp"
#include "minigpt/knn/pca.hpp"
#include "minigpt/knn/sampler_stage.hpp"

using namespace minigpt;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double log_softmax_at(std::span<const float> row, std::int32_t id) {
    double mx = -INFINITY, sum = 0;
    for (float v : row) mx = std::max(mx, double(v));
    for (float v : row) sum += std::exp(double(v) - mx);
    return double(row[static_cast<std::size_t>(id)]) - mx - std::log(sum);
}

struct stories {
    std::vector<std::int32_t> tokens;  // (n_docs * doc_len): each story starts at BOS
    double nll = 0;                    // -sum log p_LM of the sampled tokens, at sampling time
    std::int64_t n = 0;
};

stories sample_stories(const llm& lm, std::int64_t n_docs, std::int64_t doc_len, float temperature, std::uint64_t seed0,
                       knn::knn_sampler_stage* stage = nullptr, context* stage_ctx = nullptr) {
    context own(lm.weights, {.n_ctx = doc_len, .n_threads = 1});
    context& ctx = stage_ctx ? *stage_ctx : own;
    const std::int32_t bos = lm.vocab->bos() >= 0 ? lm.vocab->bos() : 1;
    stories s;
    for (std::int64_t doc = 0; doc < n_docs; ++doc) {
        generation_params gp;
        gp.sampling.temperature = temperature;
        gp.sampling.top_k = 0;
        gp.sampling.top_p = 1.0f;
        gp.sampling.min_p = 0.0f;
        gp.sampling.seed = seed0 + static_cast<std::uint64_t>(doc);
        gp.max_tokens = static_cast<std::int32_t>(doc_len - 1);
        gp.ignore_eos = true;
        ctx.truncate(0);
        sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
        if (stage) stage->install(smp);
        std::vector<std::int32_t> history;
        const auto out = generate_from_tokens(ctx, *lm.vocab, history, std::vector<std::int32_t>{bos}, gp, smp,
                                              [&](std::int32_t id, std::string_view) {
                                                  if (id >= 0) { s.nll -= log_softmax_at(ctx.logits(0), id); ++s.n; }
                                                  return true;
                                              });
        s.tokens.push_back(bos);
        s.tokens.insert(s.tokens.end(), out.tokens.begin(), out.tokens.end());
        s.tokens.resize(static_cast<std::size_t>((doc + 1) * doc_len), bos);  // (a story cut short: pad; not expected with ignore_eos)
    }
    return s;
}

void merge(knn::perplexity_accumulator& into, const knn::perplexity_accumulator& a) {
    into.nll_sum += a.nll_sum;
    into.nll2_sum += a.nll2_sum;
    into.n_tokens += a.n_tokens;
}

// evaluate_perplexity_adaptive story by story: each story is its own stream, so the end of one
// story is never scored as predicting the next one's BOS (which the model never saw).
knn::adaptive_report evaluate_stories(std::span<const std::int32_t> tokens, std::int64_t doc_len, std::int64_t d, std::int64_t n_vocab,
                                      const knn::lm_state_fn& provider, const knn::knn_index& index, const knn::knn_lm_params& kp,
                                      std::span<const double> thresholds) {
    knn::adaptive_report all;
    for (std::size_t begin = 0; begin < tokens.size(); begin += static_cast<std::size_t>(doc_len)) {
        const auto r = knn::evaluate_perplexity_adaptive(tokens.subspan(begin, static_cast<std::size_t>(doc_len)), d, n_vocab, {doc_len, 0},
                                                         provider, index, kp, thresholds, 1);
        if (all.by_threshold.empty()) all.by_threshold.assign(r.by_threshold.size(), {});
        merge(all.base, r.base);
        for (std::size_t i = 0; i < r.by_threshold.size(); ++i) {
            auto& to = all.by_threshold[i];
            const auto& from = r.by_threshold[i];
            to.threshold = from.threshold;
            to.n_positions += from.n_positions;
            to.n_retrieved += from.n_retrieved;
            to.search_seconds += from.search_seconds;
            merge(to.mixed, from.mixed);
        }
    }
    return all;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [STORE_DOCS] [EVAL_DOCS] [SAMPLE_TEMP] [LAMBDA] [KNN_TEMP]\n", argv[0]);
        return 1;
    }
    try {
        const llm lm = llm::load(argv[1]);
        const auto& m = lm.weights;
        const std::int64_t n_store_docs = argc > 2 ? std::strtoll(argv[2], nullptr, 10) : 256;
        const std::int64_t n_eval_docs = argc > 3 ? std::strtoll(argv[3], nullptr, 10) : 32;
        const float temp = argc > 4 ? std::strtof(argv[4], nullptr) : 0.8f;
        const knn::knn_lm_params kp{.lambda = argc > 5 ? std::strtof(argv[5], nullptr) : 0.25f, .k = 32,
                                    .temperature = argc > 6 ? std::strtof(argv[6], nullptr) : 1.0f};
        const std::int64_t d = m->config().n_embd, n_vocab = m->config().n_vocab;
        const std::int64_t doc_len = std::min<std::int64_t>(256, m->config().n_ctx_train > 0 ? m->config().n_ctx_train : 256);
        const knn::window_params windows{doc_len, 0};

        auto t0 = std::chrono::steady_clock::now();
        const auto a = sample_stories(lm, n_store_docs, doc_len, temp, 1000);
        const auto b = sample_stories(lm, n_eval_docs, doc_len, temp, 2000);
        std::printf("model %s: %lld store stories and %lld scored stories of %lld tokens, sampled at temperature %.2f (%.1f s)\n", argv[1],
                    static_cast<long long>(n_store_docs), static_cast<long long>(n_eval_docs), static_cast<long long>(doc_len), temp,
                    seconds_since(t0));

        context ctx(m, {.n_ctx = doc_len, .n_batch = doc_len, .n_threads = 1, .tap = hidden_tap::ffn_input});
        auto provider = [&](std::span<const std::int32_t> t, std::int64_t, float* keys, float* logits) {
            ctx.truncate(0);
            ctx.decode(t, logits ? logits_for::all : logits_for::none);
            std::copy(ctx.tap_output().begin(), ctx.tap_output().end(), keys);
            if (logits) std::copy(ctx.logits().begin(), ctx.logits().end(), logits);
        };
        const auto dir = std::filesystem::temp_directory_path() / ("minigpt-knn-heldout-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        const std::string store_path = (dir / "a.knn").string();
        t0 = std::chrono::steady_clock::now();
        {
            knn::datastore_writer w(store_path, d, dtype::f32, "heldout");
            for (std::size_t begin = 0; begin < a.tokens.size(); begin += static_cast<std::size_t>(doc_len))  // story by story, as scored
                knn::build_datastore(w, std::span(a.tokens).subspan(begin, static_cast<std::size_t>(doc_len)), windows,
                                     [&](auto t, auto p0, float* keys) { provider(t, p0, keys, nullptr); });
            w.finish();
        }
        auto store = knn::datastore::open(store_path);
        std::printf("store: %lld keys of dimension %lld (%.1f s)\n", static_cast<long long>(store->n_keys()), static_cast<long long>(d),
                    seconds_since(t0));
        std::printf("scored stream, LM alone at sampling time: perplexity %.4f over %lld tokens\n", std::exp(b.nll / double(b.n)),
                    static_cast<long long>(b.n));

        // Queries of the scored stream, for recall against exact search.
        std::vector<float> queries;  // (positions, d)
        for (const auto& w : knn::make_windows(static_cast<std::int64_t>(b.tokens.size()), windows)) {
            std::vector<float> keys(static_cast<std::size_t>((w.end - w.begin) * d));  // (window, d)
            provider(std::span(b.tokens).subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(w.end - w.begin)), w.begin,
                     keys.data(), nullptr);
            const std::int64_t last = w.end - 1;  // the story's last token predicts nothing
            queries.insert(queries.end(), keys.begin() + (w.first_used - w.begin) * d, keys.begin() + (last - w.begin) * d);
        }
        const std::int64_t n_q = static_cast<std::int64_t>(queries.size()) / d;
        auto exact = std::make_shared<knn::exact_index>(store, 1);
        std::vector<std::vector<knn::neighbour>> truth;
        exact->search_batch(queries.data(), n_q, kp.k, truth, 1);
        auto recall = [&](const knn::knn_index& idx) {
            std::vector<std::vector<knn::neighbour>> got;
            idx.search_batch(queries.data(), n_q, kp.k, got, 1);
            double hit = 0;
            for (std::int64_t i = 0; i < n_q; ++i)
                for (const auto& g : got[static_cast<std::size_t>(i)])
                    for (const auto& t : truth[static_cast<std::size_t>(i)]) hit += g.key_index == t.key_index;
            return hit / static_cast<double>(n_q * kp.k);
        };

        const double always[] = {-1.0};
        {  // Not held apart, as a check of the pipeline: the store's own first stories find themselves.
            const auto own = std::span(a.tokens).subspan(0, static_cast<std::size_t>(std::min(n_eval_docs, n_store_docs) * doc_len));
            const auto r = evaluate_stories(own, doc_len, d, n_vocab, provider, *exact, kp, always);
            std::printf("not held apart (the store's own first %lld stories): LM alone %.4f, kNN-LM %.4f\n",
                        static_cast<long long>(std::min(n_eval_docs, n_store_docs)), r.base.perplexity(), r.by_threshold[0].mixed.perplexity());
        }
        std::printf("\nlambda %.2f, k %d, kNN temperature %.2f, one thread\n\n| search | LM alone | kNN-LM | recall@%d | search ms | total ms |\n"
                    "|---|---|---|---|---|---|\n", kp.lambda, kp.k, kp.temperature, kp.k);
        auto score = [&](const std::string& name, const knn::knn_index& idx, double rec) {
            const auto t1 = std::chrono::steady_clock::now();
            const auto r = evaluate_stories(b.tokens, doc_len, d, n_vocab, provider, idx, kp, always);
            std::printf("| %s | %.4f | %.4f | %.3f | %.1f | %.1f |\n", name.c_str(), r.base.perplexity(), r.by_threshold[0].mixed.perplexity(),
                        rec, r.by_threshold[0].search_seconds * 1e3, seconds_since(t1) * 1e3);
        };
        score("exact", *exact, 1.0);
        for (std::int32_t nprobe : {1, 4}) {
            knn::ivf_params p;
            p.nprobe = nprobe;
            p.n_threads = 1;
            auto ivf = knn::ivf_index::build(store, p);
            score("IVF " + std::to_string(ivf->n_lists()) + " lists, nprobe " + std::to_string(nprobe), *ivf, recall(*ivf));
        }
        for (std::int64_t out_dim : {d / 2, d / 4}) {
            const auto fit = knn::fit_pca(*store, out_dim);
            const std::string path = (dir / ("pca" + std::to_string(out_dim) + ".knn")).string();
            knn::write_projected_store(*store, fit.projection, path, dtype::f32);
            auto reduced = knn::datastore::open(path);
            auto idx = knn::for_states(std::make_shared<knn::exact_index>(reduced, 1), *reduced);
            char name[64];
            std::snprintf(name, sizeof name, "PCA to %lld (%.0f%% of the variance)", static_cast<long long>(out_dim), 100.0 * fit.explained());
            score(name, *idx, recall(*idx));
        }

        // Adaptive retrieval: thresholds at quantiles of the scored stream's entropies.
        std::vector<double> entropies;
        std::vector<float> lp(static_cast<std::size_t>(n_vocab));
        t0 = std::chrono::steady_clock::now();
        for (const auto& w : knn::make_windows(static_cast<std::int64_t>(b.tokens.size()), windows)) {
            const std::int64_t len = w.end - w.begin;
            std::vector<float> keys(static_cast<std::size_t>(len * d)), logits(static_cast<std::size_t>(len * n_vocab));  // (len, d), (len, n_vocab)
            provider(std::span(b.tokens).subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(len)), w.begin, keys.data(),
                     logits.data());
            for (std::int64_t p = w.first_used; p < w.end - 1; ++p) {
                knn::log_softmax(std::span<const float>(logits.data() + (p - w.begin) * n_vocab, static_cast<std::size_t>(n_vocab)), lp);
                entropies.push_back(knn::entropy_from_log_probs(lp));
            }
        }
        const double lm_seconds = seconds_since(t0);  // the model's share of every row below
        std::sort(entropies.begin(), entropies.end());
        std::vector<double> thresholds{-1.0};
        for (double q : {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8})
            thresholds.push_back(entropies[static_cast<std::size_t>(q * static_cast<double>(entropies.size() - 1))]);
        const auto rep = evaluate_stories(b.tokens, doc_len, d, n_vocab, provider, *exact, kp, thresholds);
        const auto& all = rep.by_threshold[0];
        std::printf("\nadaptive retrieval (exact search); LM alone %.4f; the model's forward passes over the scored stream take %.1f ms\n\n"
                    "| entropy > (nats) | retrieved | perplexity | vs always | search ms | search speed-up | end-to-end speed-up |\n"
                    "|---|---|---|---|---|---|---|\n",
                    rep.base.perplexity(), lm_seconds * 1e3);
        double best_threshold = -1.0;
        for (const auto& r : rep.by_threshold) {
            const double rel = r.mixed.perplexity() / all.mixed.perplexity() - 1.0;
            if (rel <= 0.01) best_threshold = r.threshold;  // the last (highest) threshold within 1%
            std::printf("| %.3f | %.1f%% | %.4f | %+.2f%% | %.1f | %.2fx | %.2fx |\n", r.threshold, 100.0 * r.fraction_retrieved(),
                        r.mixed.perplexity(), 100.0 * rel, r.search_seconds * 1e3, all.search_seconds / std::max(r.search_seconds, 1e-9),
                        (lm_seconds + all.search_seconds) / (lm_seconds + r.search_seconds));
        }

        // Generation with the kNN sampler stage: always against the highest threshold within 1%.
        std::printf("\ngeneration (sampler stage, %lld stories of %lld tokens, temperature %.2f):\n", static_cast<long long>(n_eval_docs),
                    static_cast<long long>(doc_len), temp);
        for (double threshold : {-2.0, -1.0, best_threshold}) {
            context gctx(m, {.n_ctx = doc_len, .n_threads = 1, .tap = hidden_tap::ffn_input});
            knn::knn_stage_params sp;
            sp.mix = kp;
            sp.entropy_threshold = threshold;
            knn::knn_sampler_stage stage(exact, sp, gctx);
            const auto t1 = std::chrono::steady_clock::now();
            const auto g = sample_stories(lm, n_eval_docs, doc_len, temp, 3000, threshold < -1.5 ? nullptr : &stage, &gctx);
            const double s = seconds_since(t1);
            if (threshold < -1.5)
                std::printf("  no kNN:                %6.0f tokens/s\n", static_cast<double>(g.n) / s);
            else
                std::printf("  entropy > %6.3f:       %6.0f tokens/s, retrieved at %.1f%% of steps, search %.0f ms of %.0f ms\n", threshold,
                            static_cast<double>(g.n) / s, 100.0 * stage.stats().fraction_retrieved(), stage.stats().search_seconds * 1e3,
                            s * 1e3);
        }
        std::filesystem::remove_all(dir);
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

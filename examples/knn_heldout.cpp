// kNN-LM on held-apart text: a datastore from one token stream, perplexity on another, for
// exact search, IVF, PCA-reduced keys and adaptive retrieval (docs/knn-lm.md's figures).
//
//   example_knn_heldout MODEL [N_STORE_TOKENS] [N_EVAL_TOKENS] [TEXT_A TEXT_B]
//
// With two text files the store comes from TEXT_A and TEXT_B is scored. Without them both
// streams are sampled from the model itself (temperature 1, no truncation) with different
// seeds, documents of up to 255 tokens each starting at BOS: the store and the scored text
// share no sample, only the model's style. Keys: ffn_input; windows of 256; lambda 0.25, k 32.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/generate/generation.hpp"
#include "minigpt/knn.hpp"
#include "minigpt/knn/adaptive.hpp"
#include "minigpt/knn/pca.hpp"

using namespace minigpt;

namespace {

std::vector<std::int32_t> sample_stream(const llm& lm, std::size_t n_tokens, std::uint64_t seed) {
    context ctx(lm.weights, {.n_ctx = 256});
    std::vector<std::int32_t> out;
    generation_params gp;
    gp.sampling.temperature = 1.0f;
    gp.sampling.top_k = 0;
    gp.sampling.top_p = 1.0f;
    gp.sampling.min_p = 0.0f;
    for (std::uint64_t doc = 0; out.size() < n_tokens; ++doc) {
        gp.sampling.seed = seed * 100003 + doc;
        gp.max_tokens = 254;
        ctx.truncate(0);
        sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
        std::vector<std::int32_t> h;
        const std::int32_t bos = lm.vocab->bos() >= 0 ? lm.vocab->bos() : 1;
        const auto r = generate_from_tokens(ctx, *lm.vocab, h, std::vector<std::int32_t>{bos}, gp, smp);
        out.push_back(bos);
        out.insert(out.end(), r.tokens.begin(), r.tokens.end());
    }
    out.resize(n_tokens);
    return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [N_STORE_TOKENS] [N_EVAL_TOKENS] [TEXT_A TEXT_B]\n", argv[0]);
        return 1;
    }
    try {
        const llm lm = llm::load(argv[1]);
        const auto& m = lm.weights;
        const std::size_t n_store = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 32768;
        const std::size_t n_eval = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 4096;
        std::vector<std::int32_t> a, b;
        if (argc > 5) {
            auto read = [](const char* p) {
                std::FILE* f = std::fopen(p, "rb");
                if (!f) throw error(std::string("cannot open ") + p);
                std::string s;
                char buf[65536];
                for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
                std::fclose(f);
                return s;
            };
            a = lm.vocab->encode(read(argv[4]), lm.vocab->add_bos_default());
            b = lm.vocab->encode(read(argv[5]), lm.vocab->add_bos_default());
        } else {
            a = sample_stream(lm, n_store, 1);
            b = sample_stream(lm, n_eval, 2);
        }
        const std::int64_t d = m->config().n_embd, n_vocab = m->config().n_vocab;
        const knn::window_params windows{std::min<std::int64_t>(256, m->config().n_ctx_train), 0};
        context ctx(m, {.n_ctx = windows.ctx, .n_batch = windows.ctx, .n_threads = 2, .tap = hidden_tap::ffn_input});
        auto provider = [&](std::span<const std::int32_t> t, std::int64_t, float* keys, float* logits) {
            ctx.truncate(0);
            ctx.decode(t, logits ? logits_for::all : logits_for::none);
            std::copy(ctx.tap_output().begin(), ctx.tap_output().end(), keys);
            if (logits) std::copy(ctx.logits().begin(), ctx.logits().end(), logits);
        };
        const auto dir = std::filesystem::temp_directory_path() / ("minigpt-knn-heldout-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        const std::string store_path = (dir / "a.knn").string();
        {
            knn::datastore_writer w(store_path, d, dtype::f32, "heldout");
            knn::build_datastore(w, a, windows, [&](auto t, auto p0, float* keys) { provider(t, p0, keys, nullptr); });
            w.finish();
        }
        auto store = knn::datastore::open(store_path);
        std::printf("model %s, store %lld keys (dim %lld) from %zu tokens, scored on %zu other tokens\n", argv[1],
                    static_cast<long long>(store->n_keys()), static_cast<long long>(d), a.size(), b.size());
        const knn::knn_lm_params kp{.lambda = 0.25f, .k = 32, .temperature = 1.0f};

        // Queries of the scored stream, for recall against exact search.
        std::vector<float> queries;  // (positions, d)
        for (const auto& w : knn::make_windows(static_cast<std::int64_t>(b.size()), windows)) {
            std::vector<float> keys(static_cast<std::size_t>((w.end - w.begin) * d));
            provider(std::span(b).subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(w.end - w.begin)), w.begin,
                     keys.data(), nullptr);
            const std::int64_t last = std::min<std::int64_t>(w.end, static_cast<std::int64_t>(b.size()) - 1);
            queries.insert(queries.end(), keys.begin() + (w.first_used - w.begin) * d, keys.begin() + (last - w.begin) * d);
        }
        const std::int64_t n_q = static_cast<std::int64_t>(queries.size()) / d;
        auto exact = std::make_shared<knn::exact_index>(store, 2);
        std::vector<std::vector<knn::neighbour>> truth;
        exact->search_batch(queries.data(), n_q, kp.k, truth, 2);
        auto recall = [&](const knn::knn_index& idx) {
            std::vector<std::vector<knn::neighbour>> got;
            idx.search_batch(queries.data(), n_q, kp.k, got, 2);
            double hit = 0;
            for (std::int64_t i = 0; i < n_q; ++i)
                for (const auto& g : got[static_cast<std::size_t>(i)])
                    for (const auto& t : truth[static_cast<std::size_t>(i)]) hit += g.key_index == t.key_index;
            return hit / static_cast<double>(n_q * kp.k);
        };

        const double always[] = {-1.0};
        auto score = [&](const char* name, const knn::knn_index& idx, double rec) {
            const auto t0 = std::chrono::steady_clock::now();
            const auto r = knn::evaluate_perplexity_adaptive(b, d, n_vocab, windows, provider, idx, kp, always, 2);
            const double total = seconds_since(t0);
            std::printf("| %-22s | %10.4f | %10.4f | %6.3f | %9.1f | %8.1f |\n", name, r.base.perplexity(), r.by_threshold[0].mixed.perplexity(),
                        rec, r.by_threshold[0].search_seconds * 1e3, total * 1e3);
            return r;
        };
        std::printf("\n| search | LM alone | kNN-LM | recall@32 | search ms | total ms |\n|---|---|---|---|---|---|\n");
        const auto ref = score("exact", *exact, 1.0);
        for (std::int32_t nprobe : {1, 4}) {
            knn::ivf_params p;
            p.nprobe = nprobe;
            p.n_threads = 2;
            auto ivf = knn::ivf_index::build(store, p);
            const std::string name = "IVF " + std::to_string(ivf->n_lists()) + " lists, nprobe " + std::to_string(nprobe);
            score(name.c_str(), *ivf, recall(*ivf));
        }
        for (std::int64_t out_dim : {d / 2, d / 4}) {
            const auto fit = knn::fit_pca(*store, out_dim);
            const std::string path = (dir / ("pca" + std::to_string(out_dim) + ".knn")).string();
            knn::write_projected_store(*store, fit.projection, path, dtype::f32);
            auto reduced = knn::datastore::open(path);
            auto idx = knn::for_states(std::make_shared<knn::exact_index>(reduced, 2), *reduced);
            char name[64];
            std::snprintf(name, sizeof name, "PCA %lld (%.0f%% var.)", static_cast<long long>(out_dim), 100.0 * fit.explained());
            score(name, *idx, recall(*idx));
        }

        // Adaptive retrieval: thresholds at quantiles of the scored stream's entropies.
        std::vector<double> entropies;
        std::vector<float> lp(static_cast<std::size_t>(n_vocab));
        for (const auto& w : knn::make_windows(static_cast<std::int64_t>(b.size()), windows)) {
            const std::int64_t len = w.end - w.begin;
            std::vector<float> keys(static_cast<std::size_t>(len * d)), logits(static_cast<std::size_t>(len * n_vocab));
            provider(std::span(b).subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(len)), w.begin, keys.data(), logits.data());
            for (std::int64_t p = w.first_used; p < std::min<std::int64_t>(w.end, static_cast<std::int64_t>(b.size()) - 1); ++p) {
                knn::log_softmax(std::span<const float>(logits.data() + (p - w.begin) * n_vocab, static_cast<std::size_t>(n_vocab)), lp);
                entropies.push_back(knn::entropy_from_log_probs(lp));
            }
        }
        std::sort(entropies.begin(), entropies.end());
        std::vector<double> thresholds{-1.0};
        for (double q : {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8})
            thresholds.push_back(entropies[static_cast<std::size_t>(q * static_cast<double>(entropies.size() - 1))]);
        const auto rep = knn::evaluate_perplexity_adaptive(b, d, n_vocab, windows, provider, *exact, kp, thresholds, 2);
        const double ppl_always = rep.by_threshold[0].mixed.perplexity();
        std::printf("\nadaptive retrieval (exact search), LM alone %.4f:\n\n| entropy > | retrieved | perplexity | vs always | search ms | search speed-up |\n|---|---|---|---|---|---|\n",
                    rep.base.perplexity());
        for (const auto& r : rep.by_threshold)
            std::printf("| %8.3f | %6.1f%% | %10.4f | %+6.2f%% | %8.1f | %5.2fx |\n", r.threshold, 100.0 * r.fraction_retrieved(),
                        r.mixed.perplexity(), 100.0 * (r.mixed.perplexity() / ppl_always - 1.0), r.search_seconds * 1e3,
                        rep.by_threshold[0].search_seconds / std::max(r.search_seconds, 1e-9));
        (void)ref;
        std::filesystem::remove_all(dir);
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

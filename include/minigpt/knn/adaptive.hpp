// Adaptive retrieval for kNN-LM (He, Neubig, Berg-Kirkpatrick, "Efficient Nearest Neighbor
// Language Models", EMNLP 2021): search the datastore only where the language model is
// unsure, measured by the entropy of its next-token distribution,
//   H = -sum_w p_LM(w) log p_LM(w)  (nats),
// and use p_LM alone elsewhere. Where the model is confident the neighbours rarely change
// the answer, so most of the search cost goes with little loss of perplexity. He et al.
// learn when to retrieve with a small network over such features; an entropy threshold is
// the simplest member of that family and the one measured here.
//
// evaluate_perplexity_adaptive scores a stream like evaluate_perplexity (builder.hpp), for
// several thresholds in one pass over the model (the model's work is shared; each threshold
// searches only its own positions), and reports per threshold the fraction of positions that
// retrieved, the perplexity and the search time. A threshold below 0 retrieves everywhere,
// which is plain kNN-LM.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/knn/builder.hpp"
#include "minigpt/knn/knn_lm.hpp"

namespace minigpt::knn {

// Entropy in nats of softmax(logits), from log-probabilities (n_vocab).
inline double entropy_from_log_probs(std::span<const float> log_probs) {
    double h = 0.0;
    for (float lp : log_probs)
        if (lp > -std::numeric_limits<float>::infinity()) h -= std::exp(static_cast<double>(lp)) * lp;
    return h;
}

struct adaptive_result {
    double threshold;                 // retrieve where H > threshold
    std::int64_t n_positions = 0;
    std::int64_t n_retrieved = 0;
    double search_seconds = 0;
    perplexity_accumulator mixed;
    double fraction_retrieved() const { return n_positions > 0 ? static_cast<double>(n_retrieved) / static_cast<double>(n_positions) : 0.0; }
};

struct adaptive_report {
    perplexity_accumulator base;      // the LM alone
    std::vector<adaptive_result> by_threshold;
};

inline adaptive_report evaluate_perplexity_adaptive(std::span<const std::int32_t> tokens, std::int64_t dim, std::int64_t n_vocab,
                                                    const window_params& windows, const lm_state_fn& provider, const knn_index& index,
                                                    const knn_lm_params& params, std::span<const double> thresholds, int n_threads = 0) {
    if (!provider) throw error("evaluate_perplexity_adaptive: no provider");
    if (dim <= 0 || n_vocab <= 0) throw error("evaluate_perplexity_adaptive: dim and n_vocab must be positive");
    params.validate();
    if (index.dim() != dim)
        throw error("evaluate_perplexity_adaptive: index keys have dimension " + std::to_string(index.dim()) + ", the model's tap has " +
                    std::to_string(dim));
    for (double t : thresholds)
        if (std::isnan(t)) throw error("evaluate_perplexity_adaptive: NaN threshold");
    const auto n = static_cast<std::int64_t>(tokens.size());
    for (auto t : tokens)
        if (t < 0 || t >= n_vocab) throw error("evaluate_perplexity_adaptive: token id " + std::to_string(t) + " outside the vocabulary");
    adaptive_report r;
    for (double t : thresholds) r.by_threshold.push_back({t, 0, 0, 0.0, {}});
    std::vector<float> keys, logits, lp, queries;   // (len, dim), (len, n_vocab), (n_vocab), (selected, dim)
    std::vector<double> base_lp, entropy;            // (used positions)
    std::vector<std::int64_t> selected;              // positions (window-relative) searched for one threshold
    std::vector<std::vector<neighbour>> found;       // (selected)
    lp.resize(static_cast<std::size_t>(n_vocab));
    for (const auto& w : make_windows(n, windows)) {
        const std::int64_t len = w.end - w.begin;
        keys.assign(static_cast<std::size_t>(len * dim), 0.0f);
        logits.assign(static_cast<std::size_t>(len * n_vocab), 0.0f);
        provider(tokens.subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(len)), w.begin, keys.data(), logits.data());
        const std::int64_t last = std::min(w.end, n - 1);
        if (last <= w.first_used) continue;
        base_lp.clear();
        entropy.clear();
        for (std::int64_t p = w.first_used; p < last; ++p) {
            const std::span<const float> row(logits.data() + (p - w.begin) * n_vocab, static_cast<std::size_t>(n_vocab));
            log_softmax(row, lp);
            base_lp.push_back(lp[static_cast<std::size_t>(tokens[static_cast<std::size_t>(p + 1)])]);
            entropy.push_back(entropy_from_log_probs(lp));
            r.base.add_log_prob(base_lp.back());
        }
        for (auto& res : r.by_threshold) {
            selected.clear();
            queries.clear();
            for (std::int64_t p = w.first_used; p < last; ++p)
                if (entropy[static_cast<std::size_t>(p - w.first_used)] > res.threshold) {
                    selected.push_back(p);
                    const float* k = keys.data() + (p - w.begin) * dim;
                    queries.insert(queries.end(), k, k + dim);
                }
            const auto t0 = std::chrono::steady_clock::now();
            if (!selected.empty() && params.lambda > 0.0f)
                index.search_batch(queries.data(), static_cast<std::int64_t>(selected.size()), params.k, found, n_threads);
            res.search_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::size_t s = 0;
            for (std::int64_t p = w.first_used; p < last; ++p) {
                const double base = base_lp[static_cast<std::size_t>(p - w.first_used)];
                ++res.n_positions;
                if (s < selected.size() && selected[s] == p && params.lambda > 0.0f) {
                    const auto& nb = found[s++];
                    detail::check_mix(nb, params.lambda, static_cast<std::size_t>(n_vocab));
                    res.mixed.add_log_prob(interpolated_log_prob(base, nb, tokens[static_cast<std::size_t>(p + 1)], params.lambda,
                                                                 params.temperature));
                    ++res.n_retrieved;
                } else {
                    res.mixed.add_log_prob(base);
                }
            }
        }
    }
    return r;
}

}  // namespace minigpt::knn

// Running a model over a token stream: building a datastore from it, and scoring it
// (perplexity with and without kNN-LM), through the same windowing.
//
// The model is hidden behind callbacks, so this layer needs nothing from model/: any
// provider that, for a window of tokens fed to a fresh context, writes the tapped hidden
// state at each position (and, for scoring, the logits) will do. The stream is cut into
// windows of `ctx` tokens starting every `stride` tokens; each position p with a next
// token is used exactly once, in the first window that contains it, where it is
// scored as predicting tokens[p + 1] (its key is paired with that token in the store).
// stride < ctx gives later windows' positions more left context, at the cost of
// recomputing the overlap.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/knn/knn_lm.hpp"

namespace minigpt::knn {

struct window_params {
    std::int64_t ctx = 256;     // tokens fed per window (at most the model's context)
    std::int64_t stride = 0;    // start-to-start distance of windows, in [1, ctx]; 0: ctx (no overlap)
};

struct token_window {
    std::int64_t begin;         // first token fed (stream position)
    std::int64_t end;           // one past the last token fed
    std::int64_t first_used;    // positions [first_used, min(end, n_tokens - 1)) are used
};

inline std::vector<token_window> make_windows(std::int64_t n_tokens, const window_params& p) {
    if (p.ctx <= 0) throw error("knn windows: ctx must be positive, got " + std::to_string(p.ctx));
    const std::int64_t stride = p.stride == 0 ? p.ctx : p.stride;
    if (stride < 1 || stride > p.ctx)
        throw error("knn windows: stride " + std::to_string(stride) + " must be in [1, ctx = " + std::to_string(p.ctx) + "]");
    std::vector<token_window> out;
    std::int64_t covered = 0;  // positions below this are already used
    for (std::int64_t begin = 0; covered < n_tokens - 1; begin += stride) {
        const std::int64_t end = std::min(begin + p.ctx, n_tokens);
        if (end > covered) out.push_back({begin, end, covered});
        covered = std::max(covered, end);
    }
    return out;
}

// Writes keys (n_tokens, dim) for `tokens`, fed at stream positions pos0.. to a fresh context.
using hidden_state_fn = std::function<void(std::span<const std::int32_t> tokens, std::int64_t pos0, float* keys_out)>;

// As hidden_state_fn, plus the logits at every position: logits_out (n_tokens, n_vocab).
using lm_state_fn = std::function<void(std::span<const std::int32_t> tokens, std::int64_t pos0, float* keys_out, float* logits_out)>;

// Appends one (key at p, tokens[p + 1]) pair per position of the stream that has a next
// token. Returns the number of pairs appended; the caller finishes the writer.
inline std::int64_t build_datastore(datastore_writer& writer, std::span<const std::int32_t> tokens, const window_params& windows,
                                    const hidden_state_fn& provider) {
    if (!provider) throw error("build_datastore: no hidden-state provider");
    const auto n = static_cast<std::int64_t>(tokens.size());
    for (auto t : tokens)
        if (t < 0) throw error("build_datastore: negative token id " + std::to_string(t));
    const std::int64_t dim = writer.dim();
    std::vector<float> keys;               // (window tokens, dim)
    std::vector<std::int32_t> values;      // (used positions)
    std::int64_t appended = 0;
    for (const auto& w : make_windows(n, windows)) {
        const std::int64_t len = w.end - w.begin;
        keys.assign(static_cast<std::size_t>(len * dim), 0.0f);
        provider(tokens.subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(len)), w.begin, keys.data());
        const std::int64_t last = std::min(w.end, n - 1);  // positions < last have a next token
        if (last <= w.first_used) continue;
        values.assign(tokens.begin() + w.first_used + 1, tokens.begin() + last + 1);
        writer.append(keys.data() + (w.first_used - w.begin) * dim, values.data(), last - w.first_used);
        appended += last - w.first_used;
    }
    return appended;
}

struct perplexity_result {
    perplexity_accumulator base;   // the language model alone
    perplexity_accumulator mixed;  // with kNN-LM (equal to base when no index is given)
};

// Scores every position of the stream that has a next token, with the LM alone and mixed
// with the index's neighbours (batched per window).
// `on_window` (optional) sees the running result after each window: (windows done, windows in all, result so far).
using perplexity_progress_fn = std::function<void(std::int64_t n_done, std::int64_t n_windows, const perplexity_result&)>;

inline perplexity_result evaluate_perplexity(std::span<const std::int32_t> tokens, std::int64_t dim, std::int64_t n_vocab,
                                             const window_params& windows, const lm_state_fn& provider,
                                             const knn_index* index, const knn_lm_params& params, int n_threads = 0,
                                             const perplexity_progress_fn& on_window = {}) {
    if (!provider) throw error("evaluate_perplexity: no provider");
    if (dim <= 0 || n_vocab <= 0) throw error("evaluate_perplexity: dim and n_vocab must be positive");
    params.validate();
    if (index && index->dim() != dim)
        throw error("evaluate_perplexity: index keys have dimension " + std::to_string(index->dim()) + ", the model's tap has " + std::to_string(dim));
    const auto n = static_cast<std::int64_t>(tokens.size());
    for (auto t : tokens)
        if (t < 0 || t >= n_vocab) throw error("evaluate_perplexity: token id " + std::to_string(t) + " outside the vocabulary");
    perplexity_result r;
    std::vector<float> keys, logits, lp;            // (len, dim), (len, n_vocab), (n_vocab)
    std::vector<std::vector<neighbour>> found;      // (used positions)
    const auto all_windows = make_windows(n, windows);
    std::int64_t n_done = 0;
    for (const auto& w : all_windows) {
        if (on_window && n_done > 0) on_window(n_done, static_cast<std::int64_t>(all_windows.size()), r);
        ++n_done;
        const std::int64_t len = w.end - w.begin;
        keys.assign(static_cast<std::size_t>(len * dim), 0.0f);
        logits.assign(static_cast<std::size_t>(len * n_vocab), 0.0f);
        provider(tokens.subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(len)), w.begin, keys.data(), logits.data());
        const std::int64_t last = std::min(w.end, n - 1);
        if (last <= w.first_used) continue;
        const bool use_knn = index && params.lambda > 0.0f;
        if (use_knn) index->search_batch(keys.data() + (w.first_used - w.begin) * dim, last - w.first_used, params.k, found, n_threads);
        lp.resize(static_cast<std::size_t>(n_vocab));
        for (std::int64_t p = w.first_used; p < last; ++p) {
            const std::span<const float> row(logits.data() + (p - w.begin) * n_vocab, static_cast<std::size_t>(n_vocab));
            log_softmax(row, lp);
            const std::int32_t next = tokens[static_cast<std::size_t>(p + 1)];
            const double base = lp[static_cast<std::size_t>(next)];
            r.base.add_log_prob(base);
            if (!use_knn) {
                r.mixed.add_log_prob(base);
                continue;
            }
            const auto& nb = found[static_cast<std::size_t>(p - w.first_used)];
            detail::check_mix(nb, params.lambda, static_cast<std::size_t>(n_vocab));
            r.mixed.add_log_prob(interpolated_log_prob(base, nb, next, params.lambda, params.temperature));
        }
    }
    if (on_window) on_window(n_done, static_cast<std::int64_t>(all_windows.size()), r);
    return r;
}

}  // namespace minigpt::knn

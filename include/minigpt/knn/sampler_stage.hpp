// kNN-LM as a stage of the sampler chain, for generation (`minigpt generate --knn STORE`).
//
// The stage reads the query — the tapped hidden state of the position being predicted — from
// the generating context (the last row of context::tap_output(), which belongs to the same
// position as context::logits(0)), and replaces the candidates' logits by
// log p_mixed = log(lambda p_kNN + (1 - lambda) p_LM). The stages after it (top-k, top-p,
// temperature, the draw) then work on the mixture: softmax(log p) = p.
//
// It must be the chain's first stage (it needs every token's logit, in id order). With
// lambda = 0, and at steps where adaptive retrieval skips the search (the LM's entropy at or
// below entropy_threshold, He et al. 2021), the logits pass through untouched, so generation
// is exactly plain generation there. The context must have been created with the tap the
// store was built with (context_params::tap).
#pragma once

#include <chrono>
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/sampler.hpp"
#include "minigpt/knn/adaptive.hpp"
#include "minigpt/knn/knn_lm.hpp"
#include "minigpt/model/context.hpp"

namespace minigpt::knn {

struct knn_stage_params {
    knn_lm_params mix;
    double entropy_threshold = -1.0;   // retrieve only when H(p_LM) > this (nats); < 0: always
};

struct knn_stage_stats {
    std::int64_t n_steps = 0;
    std::int64_t n_retrieved = 0;
    double search_seconds = 0;
    double fraction_retrieved() const { return n_steps > 0 ? static_cast<double>(n_retrieved) / static_cast<double>(n_steps) : 0.0; }
};

class knn_sampler_stage {
public:
    knn_sampler_stage(std::shared_ptr<const knn_index> index, knn_stage_params p, const context& ctx)
        : index_(std::move(index)), params_(p), ctx_(&ctx) {
        if (!index_) throw error("knn stage: null index");
        params_.mix.validate();
        if (std::isnan(params_.entropy_threshold)) throw error("knn stage: NaN entropy threshold");
        if (ctx.params().tap == hidden_tap::none) throw error("knn stage: the context has no hidden-state tap (context_params::tap)");
        if (index_->dim() != ctx.get_model().config().n_embd)
            throw error("knn stage: the store's keys have dimension " + std::to_string(index_->dim()) + " but the model's states " +
                        std::to_string(ctx.get_model().config().n_embd));
    }

    // A chain stage sharing this object's state (keep the object alive while the sampler runs).
    custom_stage stage() {
        return custom_stage{"knn", [this](candidates& c, const token_history&) { apply(c); }};
    }

    // Puts the stage at the front of `s`'s chain.
    void install(sampler& s) {
        if (s.n_vocab() != ctx_->n_vocab()) throw error("knn stage: sampler and model vocabularies differ");
        s.chain().insert(s.chain().begin(), stage());
    }

    const knn_stage_stats& stats() const noexcept { return stats_; }
    const knn_stage_params& params() const noexcept { return params_; }

    void apply(candidates& c) {
        const auto n_vocab = static_cast<std::size_t>(ctx_->n_vocab());
        if (c.size() != n_vocab || !c.id_ordered())
            throw error("knn stage: must be the first stage of the chain (it needs every token's logit in id order)");
        ++stats_.n_steps;
        if (params_.mix.lambda == 0.0f) return;
        logits_.resize(n_vocab);  // (n_vocab)
        for (std::size_t i = 0; i < n_vocab; ++i) logits_[i] = c[i].logit;
        log_softmax(logits_, logits_);
        if (params_.entropy_threshold >= 0.0 && entropy_from_log_probs(logits_) <= params_.entropy_threshold) return;
        const auto tap = ctx_->tap_output();  // (tokens of the last decode, n_embd)
        const auto dim = static_cast<std::size_t>(index_->dim());
        if (tap.size() < dim) throw error("knn stage: the context holds no hidden state for this position");
        const auto t0 = std::chrono::steady_clock::now();
        index_->search(tap.data() + tap.size() - dim, params_.mix.k, neighbours_);
        stats_.search_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ++stats_.n_retrieved;
        interpolate_log_probs(logits_, neighbours_, params_.mix.lambda, params_.mix.temperature, logits_);
        for (std::size_t i = 0; i < n_vocab; ++i) c[i].logit = logits_[i];
        c.logits_changed();
    }

private:
    std::shared_ptr<const knn_index> index_;
    knn_stage_params params_;
    const context* ctx_;
    knn_stage_stats stats_;
    std::vector<float> logits_;          // (n_vocab) log p_LM, then log p_mixed
    std::vector<neighbour> neighbours_;  // (k)
};

}  // namespace minigpt::knn

// kNN-LM interpolation (Khandelwal et al., ICLR 2020): the next-token distribution of a
// language model mixed with one read off the nearest stored contexts,
//   p_kNN(w) = sum_{i: v_i = w} exp(-d_i / T) / sum_i exp(-d_i / T)
//   p(w)     = lambda * p_kNN(w) + (1 - lambda) * p_LM(w).
// Distances of real hidden states are in the hundreds, so exp(-d/T) underflows float and
// double alike; everything is computed in log space, shifted by the nearest neighbour's
// -d/T (which then contributes exactly exp(0) = 1). Mixing uses
// log(a + b) = max + log1p(exp(min - max)), exact at lambda = 0 and lambda = 1.
//
// The knn_lm class is the generation-time stage: given the model's logits and hidden
// state at one position it replaces the logits by log p(w), which any sampler can then
// treat as logits (softmax(log p) = p).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/knn/index.hpp"

namespace minigpt::knn {

struct knn_lm_params {
    float lambda = 0.25f;        // weight of p_kNN, in [0, 1]
    std::int32_t k = 32;         // neighbours retrieved
    float temperature = 1.0f;    // T in exp(-d / T); > 0

    void validate() const {
        if (!(lambda >= 0.0f && lambda <= 1.0f)) throw error("knn-lm: lambda must be in [0, 1], got " + std::to_string(lambda));
        if (k <= 0) throw error("knn-lm: k must be positive, got " + std::to_string(k));
        if (!(temperature > 0.0f) || !std::isfinite(temperature))
            throw error("knn-lm: temperature must be positive and finite, got " + std::to_string(temperature));
    }
};

struct token_log_prob {
    std::int32_t token;
    double log_prob;
};

inline constexpr double k_neg_inf = -std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)) without overflow; either may be -inf.
inline double log_add_exp(double a, double b) noexcept {
    if (a < b) std::swap(a, b);
    if (b == k_neg_inf) return a;
    return a + std::log1p(std::exp(b - a));
}

// log p_kNN as a sparse distribution: one entry per distinct neighbour token, ascending
// token order. Empty when there are no neighbours.
inline std::vector<token_log_prob> knn_log_distribution(std::span<const neighbour> nb, float temperature) {
    if (!(temperature > 0.0f) || !std::isfinite(temperature)) throw error("knn-lm: temperature must be positive and finite");
    std::vector<token_log_prob> out;
    if (nb.empty()) return out;
    const double inv_t = 1.0 / static_cast<double>(temperature);
    double best = k_neg_inf;
    for (const auto& n : nb) best = std::max(best, -static_cast<double>(n.distance) * inv_t);
    // Sum exp(-d/T - best) per token; sorting by token groups equal tokens.
    std::vector<std::pair<std::int32_t, double>> terms;
    terms.reserve(nb.size());
    for (const auto& n : nb) {
        if (n.value < 0) throw error("knn-lm: negative neighbour token id " + std::to_string(n.value));
        terms.emplace_back(n.value, std::exp(-static_cast<double>(n.distance) * inv_t - best));
    }
    std::sort(terms.begin(), terms.end());
    double total = 0.0;
    for (const auto& t : terms) total += t.second;
    const double log_total = std::log(total);
    for (std::size_t i = 0; i < terms.size();) {
        double s = 0.0;
        std::size_t j = i;
        for (; j < terms.size() && terms[j].first == terms[i].first; ++j) s += terms[j].second;
        out.push_back({terms[i].first, std::log(s) - log_total});
        i = j;
    }
    return out;
}

// out = log_softmax(logits); in place allowed.
inline void log_softmax(std::span<const float> logits, std::span<float> out) {
    if (out.size() != logits.size()) throw shape_error("log_softmax: output size differs from input size");
    if (logits.empty()) throw shape_error("log_softmax: empty logits");
    float mx = -std::numeric_limits<float>::infinity();
    for (float v : logits) mx = std::max(mx, v);
    if (!std::isfinite(mx)) throw error("log_softmax: logits have no finite maximum");
    double s = 0.0;
    for (float v : logits) s += std::exp(static_cast<double>(v) - mx);
    const double shift = mx + std::log(s);
    for (std::size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(static_cast<double>(logits[i]) - shift);
}

namespace detail {
inline void check_mix(std::span<const neighbour> nb, float lambda, std::size_t n_vocab) {
    if (!(lambda >= 0.0f && lambda <= 1.0f)) throw error("knn-lm: lambda must be in [0, 1], got " + std::to_string(lambda));
    if (lambda > 0.0f && nb.empty()) throw error("knn-lm: no neighbours to interpolate with (lambda > 0)");
    for (const auto& n : nb)
        if (n.value < 0 || static_cast<std::size_t>(n.value) >= n_vocab)
            throw error("knn-lm: neighbour token id " + std::to_string(n.value) + " outside the vocabulary of " + std::to_string(n_vocab) +
                        " (was the datastore built with another model?)");
}
}  // namespace detail

// out[w] = log(lambda p_kNN(w) + (1 - lambda) p_LM(w)) from lm_log_probs (n_vocab); in place allowed.
inline void interpolate_log_probs(std::span<const float> lm_log_probs, std::span<const neighbour> nb, float lambda,
                                  float temperature, std::span<float> out) {
    if (out.size() != lm_log_probs.size()) throw shape_error("interpolate_log_probs: output size differs from input size");
    detail::check_mix(nb, lambda, lm_log_probs.size());
    if (lambda == 0.0f) {
        std::copy(lm_log_probs.begin(), lm_log_probs.end(), out.begin());
        return;
    }
    const auto knn = knn_log_distribution(nb, temperature);
    const double log_l = std::log(static_cast<double>(lambda));
    if (lambda == 1.0f) {
        std::fill(out.begin(), out.end(), -std::numeric_limits<float>::infinity());
        for (const auto& t : knn) out[static_cast<std::size_t>(t.token)] = static_cast<float>(t.log_prob);
        return;
    }
    const double log_1ml = std::log1p(-static_cast<double>(lambda));
    for (std::size_t w = 0; w < lm_log_probs.size(); ++w) out[w] = static_cast<float>(log_1ml + lm_log_probs[w]);
    // out[w] already holds log((1 - lambda) p_LM(w)); read it back rather than lm_log_probs,
    // which may be the same array.
    for (const auto& t : knn) {
        const auto w = static_cast<std::size_t>(t.token);
        out[w] = static_cast<float>(log_add_exp(log_l + t.log_prob, static_cast<double>(out[w])));
    }
}

// The mixed distribution from probabilities p_lm (n_vocab).
inline std::vector<float> interpolate(std::span<const float> p_lm, std::span<const neighbour> nb, float lambda, float temperature) {
    detail::check_mix(nb, lambda, p_lm.size());
    std::vector<float> out(p_lm.size());
    for (std::size_t w = 0; w < p_lm.size(); ++w) out[w] = static_cast<float>((1.0 - lambda) * static_cast<double>(p_lm[w]));
    if (lambda > 0.0f)
        for (const auto& t : knn_log_distribution(nb, temperature))
            out[static_cast<std::size_t>(t.token)] += static_cast<float>(lambda * std::exp(t.log_prob));
    return out;
}

// log p(token) under the mixture, given only log p_LM(token): what perplexity needs.
inline double interpolated_log_prob(double lm_log_prob, std::span<const neighbour> nb, std::int32_t token, float lambda,
                                    float temperature) {
    if (!(lambda >= 0.0f && lambda <= 1.0f)) throw error("knn-lm: lambda must be in [0, 1], got " + std::to_string(lambda));
    if (lambda == 0.0f) return lm_log_prob;
    if (nb.empty()) throw error("knn-lm: no neighbours to interpolate with (lambda > 0)");
    double knn = k_neg_inf;
    for (const auto& t : knn_log_distribution(nb, temperature))
        if (t.token == token) knn = t.log_prob;
    if (lambda == 1.0f) return knn;
    return log_add_exp(std::log(static_cast<double>(lambda)) + knn, std::log1p(-static_cast<double>(lambda)) + lm_log_prob);
}

// Sum of -log p over scored tokens; perplexity = exp(mean).
struct perplexity_accumulator {
    double nll_sum = 0.0;
    double nll2_sum = 0.0;  // sum of (-log p)^2, for the uncertainty
    std::int64_t n_tokens = 0;

    void add_log_prob(double log_prob) {
        nll_sum -= log_prob;
        nll2_sum += log_prob * log_prob;
        ++n_tokens;
    }
    double mean_nll() const { return n_tokens == 0 ? 0.0 : nll_sum / static_cast<double>(n_tokens); }
    double perplexity() const { return std::exp(mean_nll()); }
    // The standard error of the perplexity, as llama-perplexity's "PPL = x +/- e": the standard error of
    // the mean NLL (sample variance over n - 1) carried through exp by its derivative. 0 when undefined.
    double perplexity_error() const {
        if (n_tokens < 2) return 0.0;
        const double n = static_cast<double>(n_tokens), mean = nll_sum / n;
        const double var = nll2_sum / n - mean * mean;
        return var > 0.0 ? std::sqrt(var / (n - 1.0)) * perplexity() : 0.0;
    }
};

// The generation-time stage: logits -> log p_mixed at one position.
class knn_lm {
public:
    knn_lm(std::shared_ptr<const knn_index> index, knn_lm_params p) : index_(std::move(index)), params_(p) {
        if (!index_) throw error("knn_lm: null index");
        params_.validate();
    }

    const knn_lm_params& params() const noexcept { return params_; }
    void set_params(const knn_lm_params& p) {
        p.validate();
        params_ = p;
    }
    const knn_index& index() const noexcept { return *index_; }

    // logits (n_vocab) in, log p_mixed out; `hidden` (index().dim()) is the tapped state at
    // the same position. The neighbours found are left in last_neighbours().
    void apply(std::span<float> logits, const float* hidden) {
        log_softmax(logits, logits);
        if (params_.lambda == 0.0f) return;
        index_->search(hidden, params_.k, neighbours_);
        interpolate_log_probs(logits, neighbours_, params_.lambda, params_.temperature, logits);
    }

    // log p_mixed(token) for scoring, without rewriting the logits.
    double log_prob(std::span<const float> logits, const float* hidden, std::int32_t token) {
        if (token < 0 || static_cast<std::size_t>(token) >= logits.size())
            throw error("knn_lm::log_prob: token " + std::to_string(token) + " outside the vocabulary");
        lm_scratch_.resize(logits.size());
        log_softmax(logits, lm_scratch_);
        const double lm = lm_scratch_[static_cast<std::size_t>(token)];
        if (params_.lambda == 0.0f) return lm;
        index_->search(hidden, params_.k, neighbours_);
        detail::check_mix(neighbours_, params_.lambda, logits.size());
        return interpolated_log_prob(lm, neighbours_, token, params_.lambda, params_.temperature);
    }

    const std::vector<neighbour>& last_neighbours() const noexcept { return neighbours_; }

private:
    std::shared_ptr<const knn_index> index_;
    knn_lm_params params_;
    std::vector<neighbour> neighbours_;
    std::vector<float> lm_scratch_;  // (n_vocab)
};

}  // namespace minigpt::knn

// Log-probabilities of generated tokens: what a scorer, a confidence-based router or an
// OpenAI-style `logprobs` field needs.
//
// The distribution is the model's own: log_softmax(logits) over the whole vocabulary, taken
// from the raw logits BEFORE the sampler chain (no logit bias, penalties, top-k/p, min-p or
// temperature). That is what OpenAI's API reports and what llama.cpp's server reports by
// default (its `post_sampling_probs: false`), so a token the sampler picked at a high
// temperature can carry a low log-probability. log_softmax is computed as
// l_i - (max + log(sum_j exp(l_j - max))) with the sum in double, so it is exact to float
// rounding even for 150k-token vocabularies.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt {

struct token_logprob {
    std::int32_t id = -1;
    float logprob = 0.0f;  // natural log of the probability, <= 0
};

// One generated token: its own log-probability and the n most likely tokens at that step
// (best first, ties to the lower id; the chosen token appears among them when it ranks there).
struct token_logprobs {
    std::int32_t id = -1;
    float logprob = 0.0f;
    std::vector<token_logprob> top;
};

// The log-sum-exp of a logits row. NaN or +inf logits are an error naming the token.
inline double log_sum_exp(std::span<const float> logits) {
    if (logits.empty()) throw error("logprobs: empty logits");
    float max = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const float l = logits[i];
        if (std::isnan(l) || l == std::numeric_limits<float>::infinity())
            throw error("logprobs: logit of token " + std::to_string(i) + " is " + std::to_string(l));
        max = std::max(max, l);
    }
    if (max == -std::numeric_limits<float>::infinity()) throw error("logprobs: every logit is -inf");
    double sum = 0.0;
    for (const float l : logits) sum += std::exp(static_cast<double>(l) - max);
    return max + std::log(sum);
}

// Log-probability of `chosen` and the `n_top` best tokens under softmax(logits).
inline token_logprobs logprobs_of(std::span<const float> logits, std::int32_t chosen, std::int32_t n_top) {
    const auto n_vocab = static_cast<std::int64_t>(logits.size());
    if (chosen < 0 || chosen >= n_vocab)
        throw error("logprobs: token id " + std::to_string(chosen) + " out of range [0, " + std::to_string(n_vocab) + ")");
    if (n_top < 0) throw error("logprobs: negative number of alternatives " + std::to_string(n_top));
    const double lse = log_sum_exp(logits);
    token_logprobs r;
    r.id = chosen;
    r.logprob = static_cast<float>(logits[static_cast<std::size_t>(chosen)] - lse);
    const auto k = static_cast<std::size_t>(std::min<std::int64_t>(n_top, n_vocab));
    if (k == 0) return r;
    // Keep the k best (logit, id) pairs in a small sorted buffer: one comparison per token for
    // most of the vocabulary, no copy of the whole row.
    std::vector<token_logprob> best;  // (<= k) best first
    best.reserve(k + 1);
    auto better = [](const token_logprob& a, const token_logprob& b) {
        return a.logprob > b.logprob || (a.logprob == b.logprob && a.id < b.id);
    };
    for (std::int64_t i = 0; i < n_vocab; ++i) {
        const token_logprob c{static_cast<std::int32_t>(i), logits[static_cast<std::size_t>(i)]};
        if (best.size() == k && !better(c, best.back())) continue;
        best.insert(std::upper_bound(best.begin(), best.end(), c, better), c);
        if (best.size() > k) best.pop_back();
    }
    for (auto& b : best) b.logprob = static_cast<float>(b.logprob - lse);
    r.top = std::move(best);
    return r;
}

}  // namespace minigpt

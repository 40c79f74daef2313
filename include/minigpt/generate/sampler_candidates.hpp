// The working set of the sampler chain: candidate tokens (id, logit, p), and the token history
// the penalties look at.
//
// A chain starts from every token of the vocabulary in id order; each stage rewrites logits,
// reorders or drops candidates. `candidates` remembers three facts so stages can skip work:
// whether the items are sorted (best first), whether item i is token i (so a token is found by
// indexing), and whether p holds the softmax of the current logits over the current set. The
// buffers are kept between tokens, so a sampler that is reused does not allocate per token.
//
// "Best first" is one total order used by every stage: higher logit first, equal logits by lower
// token id. It makes every tie (greedy argmax, top-k boundary, sort order) deterministic.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt {

// A NaN or +inf logit reached the sampler (generation turns it into a located model-file error).
class non_finite_logit_error : public error {
public:
    using error::error;
};

struct candidate {
    std::int32_t id;
    float logit;
    float p;  // probability; meaningful only while the set is normalized()
};

// The chain's total order: a ranks before b. A function object rather than a function, so
// std::sort and nth_element inline it instead of calling through a pointer.
struct rank_order {
    bool operator()(const candidate& a, const candidate& b) const noexcept {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    }
};
inline constexpr rank_order ranks_before{};

class candidates {
public:
    candidates() = default;

    // Every token 0..n-1 with its logit, in id order. NaN and +inf logits are rejected (a NaN
    // would break the ordering; +inf has no probability).
    void assign(std::span<const float> logits) {
        items_.resize(logits.size());
        for (std::size_t i = 0; i < logits.size(); ++i) {
            const float l = logits[i];
            if (!(l < std::numeric_limits<float>::infinity())) throw_bad_logit(static_cast<std::int32_t>(i), l);
            items_[i] = {static_cast<std::int32_t>(i), l, 0.0f};
        }
        sorted_ = false;
        normalized_ = false;
        id_ordered_ = true;
    }

    // An arbitrary set, in the given order (not assumed sorted).
    void assign(std::span<const candidate> items) {
        items_.assign(items.begin(), items.end());
        for (const auto& c : items_)
            if (!(c.logit < std::numeric_limits<float>::infinity())) throw_bad_logit(c.id, c.logit);
        sorted_ = false;
        normalized_ = false;
        id_ordered_ = false;
    }

    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    candidate& operator[](std::size_t i) noexcept { return items_[i]; }
    const candidate& operator[](std::size_t i) const noexcept { return items_[i]; }
    candidate* begin() noexcept { return items_.data(); }
    candidate* end() noexcept { return items_.data() + items_.size(); }
    const candidate* begin() const noexcept { return items_.data(); }
    const candidate* end() const noexcept { return items_.data() + items_.size(); }
    std::span<const candidate> items() const noexcept { return items_; }

    bool sorted() const noexcept { return sorted_; }
    bool id_ordered() const noexcept { return id_ordered_; }
    bool normalized() const noexcept { return normalized_; }

    // A stage changed some logits in place (order and membership unchanged).
    void logits_changed() noexcept {
        sorted_ = false;
        normalized_ = false;
    }
    // A stage scaled every logit by the same positive factor: ranks survive, probabilities do not.
    void logits_scaled() noexcept { normalized_ = false; }
    // A stage reordered or filtered the items itself; it states whether they are now sorted.
    void reordered(bool now_sorted) noexcept {
        sorted_ = now_sorted;
        normalized_ = false;
        id_ordered_ = false;
    }

    // The candidate of a token, or nullptr if it is not in the set.
    candidate* find(std::int32_t id) noexcept {
        if (id_ordered_) return id >= 0 && static_cast<std::size_t>(id) < items_.size() ? &items_[static_cast<std::size_t>(id)] : nullptr;
        for (auto& c : items_)
            if (c.id == id) return &c;
        return nullptr;
    }

    // Keeps the first n items (a prefix of a sorted set stays sorted). p keeps its old values
    // but no longer sums to one over the set.
    void truncate(std::size_t n) {
        if (n >= items_.size()) return;
        items_.resize(n);
        normalized_ = false;
        id_ordered_ = false;
    }

    void sort() {
        if (sorted_) return;
        std::sort(items_.begin(), items_.end(), ranks_before);
        sorted_ = true;
        id_ordered_ = false;
    }

    // Keeps the k best, sorted; selection then a sort of k items instead of sorting them all.
    void keep_top(std::size_t k) {
        if (k >= items_.size() || sorted_) {
            sort();
            truncate(k);
            return;
        }
        std::nth_element(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(k), items_.end(), ranks_before);
        items_.resize(k);
        std::sort(items_.begin(), items_.end(), ranks_before);
        sorted_ = true;
        normalized_ = false;
        id_ordered_ = false;
    }

    // Drops the items for which keep(item) is false, keeping the order of the rest.
    template <class Keep>
    void keep_if(Keep&& keep) {
        std::size_t w = 0;
        for (std::size_t r = 0; r < items_.size(); ++r)
            if (keep(items_[r])) items_[w++] = items_[r];
        if (w == items_.size()) return;
        items_.resize(w);
        normalized_ = false;
        id_ordered_ = false;
    }

    // Position of the best item (ties to the lowest id).
    std::size_t best_index() const {
        if (items_.empty()) throw error("sampler: no candidate tokens left");
        if (sorted_) return 0;
        std::size_t best = 0;
        for (std::size_t i = 1; i < items_.size(); ++i)
            if (ranks_before(items_[i], items_[best])) best = i;
        return best;
    }

    // The largest logit (-inf for an empty set).
    float max_logit() const noexcept {
        if (sorted_ && !items_.empty()) return items_[0].logit;
        float m = -std::numeric_limits<float>::infinity();
        for (const auto& c : items_) m = c.logit > m ? c.logit : m;
        return m;
    }

    // p = softmax(logit) over the current set: p_i = exp(l_i - max) / sum_j exp(l_j - max), the sum
    // accumulated in double, exp in float (std::exp). Throws if the set is empty or every logit is -inf (all banned).
    void softmax() {
        if (normalized_) return;
        if (items_.empty()) throw error("sampler: no candidate tokens left");
        const float top = max_logit();
        if (!std::isfinite(top))
            throw error("sampler: every candidate token has logit " + std::to_string(top) +
                        " (all tokens banned, or a bias overflowed)");
        // Four partial sums in a fixed pattern: the same result on every run, without one long
        // chain of dependent double additions.
        double part[4] = {0.0, 0.0, 0.0, 0.0};
        const std::size_t n = items_.size();
        for (std::size_t i = 0; i < n; ++i) {
            items_[i].p = std::exp(items_[i].logit - top);
            part[i & 3] += items_[i].p;
        }
        const double sum = (part[0] + part[1]) + (part[2] + part[3]);
        const double inv = 1.0 / sum;
        for (auto& c : items_) c.p = static_cast<float>(c.p * inv);
        normalized_ = true;
    }

    // Scratch buffers for stages, reused from token to token.
    std::vector<candidate>& scratch() noexcept { return scratch_; }
    std::vector<float>& scratch_floats() noexcept { return scratch_floats_; }
    std::vector<std::uint32_t>& scratch_indices() noexcept { return scratch_indices_; }
    std::vector<double>& scratch_doubles() noexcept { return scratch_doubles_; }

    // Replaces the items by the scratch items (swap, so neither buffer is freed).
    void take_scratch(bool now_sorted) {
        items_.swap(scratch_);
        reordered(now_sorted);
    }

    // For stages that build the set themselves (the sampler's fused top-k): the raw item buffer.
    std::vector<candidate>& raw_items() noexcept { return items_; }

    [[noreturn]] static void throw_bad_logit(std::int32_t id, float l) {
        throw non_finite_logit_error("sampler: logit of token " + std::to_string(id) + " is " + std::to_string(l) +
                    " (logits must be finite or -inf)");
    }

private:
    std::vector<candidate> items_;
    std::vector<candidate> scratch_;
    std::vector<float> scratch_floats_;
    std::vector<std::uint32_t> scratch_indices_;
    std::vector<double> scratch_doubles_;
    bool sorted_ = false;
    bool normalized_ = false;
    bool id_ordered_ = false;
};

// How often each token occurs among the last `window` accepted tokens (-1: all of them, 0: none).
// Counts live in a dense per-token array and the distinct tokens in a list, so the penalties
// touch only the tokens that occur, and accept() is O(1).
class token_history {
public:
    token_history() = default;
    token_history(std::int32_t n_vocab, std::int32_t window) : n_vocab_(n_vocab), window_(window) {
        if (n_vocab <= 0) throw error("token_history: n_vocab must be positive, got " + std::to_string(n_vocab));
        if (window < -1) throw error("token_history: penalty_last_n must be -1 (all), 0 (off) or positive, got " + std::to_string(window));
        counts_.assign(static_cast<std::size_t>(n_vocab), 0);
        slot_.assign(static_cast<std::size_t>(n_vocab), -1);
        if (window > 0) {
            ring_.assign(static_cast<std::size_t>(window), 0);
            distinct_.reserve(static_cast<std::size_t>(std::min(window, n_vocab)));
        }
    }

    std::int32_t n_vocab() const noexcept { return n_vocab_; }
    std::int32_t window() const noexcept { return window_; }
    std::uint64_t n_accepted() const noexcept { return n_accepted_; }

    void push(std::int32_t token) {
        if (token < 0 || token >= n_vocab_)
            throw lookup_error("sampler: token id " + std::to_string(token) + " out of range for a vocabulary of " + std::to_string(n_vocab_));
        ++n_accepted_;
        if (window_ == 0) return;
        if (window_ > 0) {
            const auto w = static_cast<std::size_t>(window_);
            if (n_in_ring_ == w) decrement(ring_[head_]);
            else ++n_in_ring_;
            ring_[head_] = token;
            head_ = (head_ + 1) % w;
        }
        increment(token);
    }

    void clear() {
        for (auto t : distinct_) {
            counts_[static_cast<std::size_t>(t)] = 0;
            slot_[static_cast<std::size_t>(t)] = -1;
        }
        distinct_.clear();
        head_ = n_in_ring_ = 0;
        n_accepted_ = 0;
    }

    std::int32_t count(std::int32_t token) const noexcept {
        return token >= 0 && token < n_vocab_ ? counts_[static_cast<std::size_t>(token)] : 0;
    }
    // Tokens with a count above zero, in no particular order.
    std::span<const std::int32_t> distinct() const noexcept { return distinct_; }

private:
    void increment(std::int32_t t) {
        const auto i = static_cast<std::size_t>(t);
        if (counts_[i]++ == 0) {
            slot_[i] = static_cast<std::int32_t>(distinct_.size());
            distinct_.push_back(t);
        }
    }
    void decrement(std::int32_t t) {
        const auto i = static_cast<std::size_t>(t);
        if (--counts_[i] == 0) {
            // swap-remove from the distinct list, fixing the moved token's slot
            const auto s = static_cast<std::size_t>(slot_[i]);
            const std::int32_t moved = distinct_.back();
            distinct_[s] = moved;
            slot_[static_cast<std::size_t>(moved)] = static_cast<std::int32_t>(s);
            distinct_.pop_back();
            slot_[i] = -1;
        }
    }

    std::int32_t n_vocab_ = 0;
    std::int32_t window_ = 0;
    std::uint64_t n_accepted_ = 0;
    std::vector<std::int32_t> counts_;    // (n_vocab)
    std::vector<std::int32_t> slot_;      // (n_vocab) position in distinct_, or -1
    std::vector<std::int32_t> distinct_;  // (tokens with count > 0)
    std::vector<std::int32_t> ring_;      // (window) the last tokens, oldest at head_ once full
    std::size_t head_ = 0;
    std::size_t n_in_ring_ = 0;
};

}  // namespace minigpt

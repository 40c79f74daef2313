// minigpt::sampler: turns a logits vector into the next token through a configurable chain.
//
// Built from sampling_params, the chain is llama.cpp's default order: logit bias, penalties,
// top-k, typical-p, top-p, min-p, temperature, then a seeded draw from the softmax of what is
// left (see sampler_stages.hpp for each formula, rng.hpp for the draw). With temperature <= 0 the
// sampler is greedy: the best token after bias and penalties (ties to the lowest id). The chain
// is a plain vector of stages that callers may reorder, edit or extend with custom stages.
//
// Speed: the vocabulary can be 150k tokens while top-k keeps 40. When the chain starts with
// bias/penalty stages followed by top-k (the default), or is bias/penalties only and greedy, the
// sampler never copies the whole vocabulary: it applies those stages to just the tokens they
// touch and selects the k best in one streaming pass over the raw logits. The result is the same
// as running the stages one by one (the tests check this). Buffers are reused between tokens.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/rng.hpp"
#include "minigpt/generate/sampler_candidates.hpp"
#include "minigpt/generate/sampler_stages.hpp"
#include "minigpt/generate/sampling_params.hpp"

namespace minigpt {

class sampler {
public:
    explicit sampler(const sampling_params& p, std::int32_t n_vocab)
        : sampler(default_chain(validated(p, n_vocab)), n_vocab,
                  p.seed == k_random_seed ? rng::random_seed() : p.seed, p.penalty_last_n, !(p.temperature > 0.0f)) {}

    // An explicit chain. greedy: take the best candidate left by the chain instead of drawing.
    sampler(std::vector<sampler_stage> chain, std::int32_t n_vocab, std::uint64_t seed,
            std::int32_t penalty_last_n = 64, bool greedy = false)
        : n_vocab_(check_vocab(n_vocab)), chain_(std::move(chain)), history_(n_vocab, penalty_last_n),
          rng_(seed), greedy_(greedy), touched_(static_cast<std::size_t>(n_vocab), 0) {
        check_chain();
    }

    // llama.cpp's default order for these parameters. A greedy configuration stops after the
    // penalties, since the truncations that follow never remove the best token (except typical-p,
    // which greedy decoding does not use).
    static std::vector<sampler_stage> default_chain(const sampling_params& p) {
        std::vector<sampler_stage> chain;
        chain.emplace_back(logit_bias_stage(p.logit_bias));
        chain.emplace_back(penalties_stage{p.repeat_penalty, p.frequency_penalty, p.presence_penalty});
        if (p.temperature > 0.0f) {
            chain.emplace_back(top_k_stage{p.top_k});
            chain.emplace_back(typical_p_stage{p.typical_p});
            chain.emplace_back(top_p_stage{p.top_p});
            chain.emplace_back(min_p_stage{p.min_p});
            chain.emplace_back(temperature_stage{p.temperature});
        }
        return chain;
    }

    // Runs the chain over `logits` (n_vocab values), picks a token, records it in the history and
    // returns it.
    std::int32_t sample(std::span<const float> logits) {
        const std::int32_t token = choose(logits);
        accept(token);
        return token;
    }

    // Same as sample() but leaves the history alone (for look-ahead or scoring); a draw still
    // advances the random stream.
    std::int32_t choose(std::span<const float> logits) {
        if (logits.size() != static_cast<std::size_t>(n_vocab_))
            throw shape_error("sampler: got " + std::to_string(logits.size()) + " logits for a vocabulary of " +
                              std::to_string(n_vocab_));
        check_chain();
        std::size_t n_sparse = 0;  // leading stages that only change the logits of known tokens
        while (n_sparse < chain_.size() && (std::holds_alternative<logit_bias_stage>(chain_[n_sparse]) ||
                                            std::holds_alternative<penalties_stage>(chain_[n_sparse])))
            ++n_sparse;
        std::size_t next = 0;
        if (greedy_ && n_sparse == chain_.size()) {
            select_top(logits, n_sparse, 1);
            next = chain_.size();
        } else if (const auto* k = n_sparse < chain_.size() ? std::get_if<top_k_stage>(&chain_[n_sparse]) : nullptr;
                   k && k->k > 0) {
            select_top(logits, n_sparse, std::min(static_cast<std::size_t>(k->k), logits.size()));
            next = n_sparse + 1;
        } else {
            cands_.assign(logits);
        }
        for (; next < chain_.size(); ++next) apply_stage(chain_[next], cands_, history_);
        if (cands_.empty()) throw error("sampler: the chain left no candidate tokens");
        if (greedy_) {
            const candidate& best = cands_[cands_.best_index()];
            if (best.logit == -std::numeric_limits<float>::infinity())
                throw error("sampler: every candidate token has logit -inf (all tokens banned)");
            return best.id;
        }
        cands_.softmax();
        const double target = rng_.uniform();  // p sums to 1 up to rounding; pick() absorbs the rest
        double total = 0.0;
        for (const auto& c : cands_) total += c.p;
        const std::size_t i = rng::pick(cands_.size(), [&](std::size_t j) { return cands_[j].p; }, target * total);
        return cands_[i].id;
    }

    // Records a token (prompt tokens too) for the penalties.
    void accept(std::int32_t token) { history_.push(token); }

    // Forgets the history and restarts the random stream from the seed.
    void reset() {
        history_.clear();
        rng_.reseed(rng_.seed());
    }

    // The seed in use (drawn from the OS when sampling_params::seed was k_random_seed).
    std::uint64_t seed() const noexcept { return rng_.seed(); }

    // The chain; edits take effect at the next sample().
    std::vector<sampler_stage>& chain() noexcept { return chain_; }
    const std::vector<sampler_stage>& chain() const noexcept { return chain_; }
    bool greedy() const noexcept { return greedy_; }
    void set_greedy(bool greedy) noexcept { greedy_ = greedy; }
    const token_history& history() const noexcept { return history_; }
    std::int32_t n_vocab() const noexcept { return n_vocab_; }
    // The set the last token was picked from, with p normalized when the pick was a draw.
    const candidates& last_candidates() const noexcept { return cands_; }

private:
    static std::int32_t check_vocab(std::int32_t n_vocab) {
        if (n_vocab <= 0) throw error("sampler: n_vocab must be positive, got " + std::to_string(n_vocab));
        return n_vocab;
    }

    static const sampling_params& validated(const sampling_params& p, std::int32_t n_vocab) {
        check_vocab(n_vocab);
        auto bad = [](const char* what, float v) {
            throw error(std::string("sampling_params: ") + what + " is " + std::to_string(v));
        };
        if (std::isnan(p.temperature)) bad("temperature", p.temperature);
        if (std::isnan(p.top_p)) bad("top_p", p.top_p);
        if (std::isnan(p.min_p) || p.min_p > 1.0f) bad("min_p (must be <= 1)", p.min_p);
        if (std::isnan(p.typical_p)) bad("typical_p", p.typical_p);
        if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty)) bad("repeat_penalty (must be > 0)", p.repeat_penalty);
        if (!std::isfinite(p.frequency_penalty)) bad("frequency_penalty", p.frequency_penalty);
        if (!std::isfinite(p.presence_penalty)) bad("presence_penalty", p.presence_penalty);
        if (p.penalty_last_n < -1)
            throw error("sampling_params: penalty_last_n is " + std::to_string(p.penalty_last_n) + " (must be -1, 0 or positive)");
        for (const auto& [id, b] : p.logit_bias)
            if (id < 0 || id >= n_vocab)
                throw lookup_error("sampling_params: logit_bias token id " + std::to_string(id) +
                                   " out of range for a vocabulary of " + std::to_string(n_vocab));
        return p;
    }

    void check_chain() const {
        for (const auto& s : chain_)
            if (const auto* b = std::get_if<logit_bias_stage>(&s); b && !b->entries().empty() && b->entries().back().first >= n_vocab_)
                throw lookup_error("sampler: logit_bias token id " + std::to_string(b->entries().back().first) +
                                   " out of range for a vocabulary of " + std::to_string(n_vocab_));
    }

    // Fills cands_ with the k best tokens, best first, after the first n_sparse stages (all
    // logit_bias / penalties). Those stages run on just the tokens they touch; every other token
    // keeps its raw logit and competes in a streaming selection: a buffer of at most `cap` items
    // is cut back to the k best whenever it fills, and from then on a logit below the k-th best
    // cannot enter the top k, so most of the vocabulary costs one comparison.
    void select_top(std::span<const float> logits, std::size_t n_sparse, std::size_t k) {
        touched_items_.clear();
        auto touch = [&](std::int32_t id) {
            auto& mark = touched_[static_cast<std::size_t>(id)];
            if (mark) return;
            mark = 1;
            touched_items_.push_back({id, logits[static_cast<std::size_t>(id)], 0.0f});
        };
        struct untouch_guard {  // the marks must be cleared even if a NaN logit throws
            std::vector<std::uint8_t>& marks;
            const std::vector<candidate>& items;
            ~untouch_guard() {
                for (const auto& c : items) marks[static_cast<std::size_t>(c.id)] = 0;
            }
        } guard{touched_, touched_items_};
        for (std::size_t s = 0; s < n_sparse; ++s) {
            if (const auto* b = std::get_if<logit_bias_stage>(&chain_[s]))
                for (const auto& e : b->entries()) touch(e.first);
            else if (const auto* pen = std::get_if<penalties_stage>(&chain_[s]); pen && !pen->neutral())
                for (const std::int32_t t : history_.distinct()) touch(t);
        }
        sparse_.assign(touched_items_);  // validates the touched raw logits
        for (std::size_t s = 0; s < n_sparse; ++s) apply_stage(chain_[s], sparse_, history_);

        // The buffer holds 64-bit rank keys instead of candidates: one integer comparison per
        // step makes nth_element several times faster than comparing (logit, id) pairs.
        auto& keys = keys_;  // (at most cap) rank keys of the tokens still in the running
        const std::size_t cap = 2 * k + 64;
        keys.clear();
        keys.reserve(cap + 1);
        for (const auto& c : sparse_) keys.push_back(rank_key(c.logit, c.id));
        float threshold = -std::numeric_limits<float>::infinity();
        auto shrink = [&] {
            std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k - 1), keys.end(), std::greater<>());
            keys.resize(k);
            threshold = from_key(keys[k - 1]).logit;
        };
        if (keys.size() >= cap) shrink();
        const float* l = logits.data();
        const std::size_t n = logits.size();
        auto consider = [&](std::size_t i) {
            const float v = l[i];
            if (v < threshold) return;
            if (!(v < std::numeric_limits<float>::infinity())) candidates::throw_bad_logit(static_cast<std::int32_t>(i), v);
            if (touched_[i]) return;
            keys.push_back(rank_key(v, static_cast<std::int32_t>(i)));
            if (keys.size() >= cap) shrink();
        };
        constexpr std::size_t block = 32;
        std::size_t i = 0;
        for (; i + block <= n; i += block) {
            // Branch-free test of a whole block; NaN and +inf also pass, to be reported. Counting
            // (not OR-ing bools) is the form GCC 12 turns into one vector compare per 16 floats.
            const float t = threshold;
            unsigned n_pass = 0;
            for (std::size_t j = 0; j < block; ++j) n_pass += !(l[i + j] < t);
            if (n_pass == 0) continue;
            for (std::size_t j = 0; j < block; ++j) consider(i + j);
        }
        for (; i < n; ++i) consider(i);
        if (keys.size() > k) shrink();
        std::sort(keys.begin(), keys.end(), std::greater<>());
        auto& buf = cands_.raw_items();
        buf.resize(keys.size());
        for (std::size_t j = 0; j < keys.size(); ++j) buf[j] = from_key(keys[j]);
        cands_.reordered(true);
    }

    // A 64-bit key whose unsigned order is ranks_before: the high half is the logit's bit pattern
    // mapped so that unsigned order is numeric order (-0 counted as +0, which compares equal), the
    // low half is ~id so that the lower id wins a tie.
    static std::uint64_t rank_key(float logit, std::int32_t id) noexcept {
        std::uint32_t b = std::bit_cast<std::uint32_t>(logit + 0.0f);  // -0 + 0 = +0
        b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
        return (static_cast<std::uint64_t>(b) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(id));
    }
    static candidate from_key(std::uint64_t key) noexcept {
        std::uint32_t b = static_cast<std::uint32_t>(key >> 32);
        b = (b & 0x80000000u) ? (b & 0x7FFFFFFFu) : ~b;
        return {static_cast<std::int32_t>(0xFFFFFFFFu - static_cast<std::uint32_t>(key)), std::bit_cast<float>(b), 0.0f};
    }

    std::int32_t n_vocab_;
    std::vector<sampler_stage> chain_;
    token_history history_;
    rng rng_;
    bool greedy_;
    candidates cands_;                    // (up to n_vocab) the working set
    candidates sparse_;                   // (tokens touched by bias/penalties)
    std::vector<candidate> touched_items_;
    std::vector<std::uint8_t> touched_;   // (n_vocab) 1 while a token is in touched_items_
    std::vector<std::uint64_t> keys_;     // (up to 2k + 64) the streaming selection's buffer
};

}  // namespace minigpt

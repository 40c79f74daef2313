// The stages of the sampler chain, each usable on its own over a `candidates` set.
//
// Semantics follow llama.cpp's samplers (same parameter meanings, same boundary rules):
//   logit_bias     l_i += b_i; a bias of -inf bans the token.
//   penalties      for each token seen c_i > 0 times in the window:
//                  l_i = l_i > 0 ? l_i / repeat : l_i * repeat, then l_i -= c_i * frequency + presence.
//   top_k          keep the k best (k <= 0: off).
//   typical_p      locally typical sampling (Meister et al. 2022): with H = -sum p log p, rank tokens
//                  by |-log p_i - H| and keep the smallest such prefix whose mass exceeds p (>= 1: off).
//   top_p          nucleus: the smallest best-first prefix whose mass reaches p (>= 1: off).
//   min_p          keep tokens with p_i >= min_p * p_max, i.e. l_i >= l_max + ln(min_p) (<= 0: off).
//   temperature    l_i = (l_i - l_max) / t; t <= 0 keeps only the best token.
// Probabilities are always the softmax of the current logits over the current set, so a top-p
// after a top-k sees the top-k renormalised, as in llama.cpp. Stages that truncate keep at least
// `min_keep` (default 1) tokens. A `custom_stage` wraps any callable for user stages.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/sampler_candidates.hpp"

namespace minigpt {

class logit_bias_stage {
public:
    logit_bias_stage() = default;
    // Entries for the same token add up. Biases must not be NaN or +inf; -inf bans.
    explicit logit_bias_stage(std::vector<std::pair<std::int32_t, float>> bias) : entries_(std::move(bias)) {
        for (const auto& [id, b] : entries_) {
            if (id < 0) throw error("logit_bias: negative token id " + std::to_string(id));
            if (std::isnan(b) || b == std::numeric_limits<float>::infinity())
                throw error("logit_bias: bias of token " + std::to_string(id) + " is " + std::to_string(b) + " (must be finite or -inf)");
        }
        std::sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        std::size_t w = 0;
        for (std::size_t r = 0; r < entries_.size(); ++r) {
            if (w > 0 && entries_[w - 1].first == entries_[r].first) entries_[w - 1].second += entries_[r].second;
            else entries_[w++] = entries_[r];
        }
        entries_.resize(w);
    }

    static constexpr std::string_view name() { return "logit_bias"; }
    // (token id, bias), sorted by id, one entry per token.
    const std::vector<std::pair<std::int32_t, float>>& entries() const noexcept { return entries_; }

    void apply(candidates& c) const {
        if (entries_.empty() || c.empty()) return;
        if (c.id_ordered()) {
            for (const auto& [id, b] : entries_)
                if (candidate* x = c.find(id)) x->logit += b;
        } else {
            // sorted entries: one binary search per candidate, O(n log n_bias) instead of O(n * n_bias)
            for (auto& x : c) {
                auto it = std::lower_bound(entries_.begin(), entries_.end(), x.id,
                                           [](const auto& e, std::int32_t id) { return e.first < id; });
                if (it != entries_.end() && it->first == x.id) x.logit += it->second;
            }
        }
        c.logits_changed();
    }

private:
    std::vector<std::pair<std::int32_t, float>> entries_;
};

struct penalties_stage {
    float repeat = 1.0f;     // > 0; 1 = off
    float frequency = 0.0f;  // times the count
    float presence = 0.0f;   // once per token present

    static constexpr std::string_view name() { return "penalties"; }
    bool neutral() const noexcept { return repeat == 1.0f && frequency == 0.0f && presence == 0.0f; }

    float penalize(float logit, std::int32_t count) const noexcept {
        // Dividing a negative logit would raise it, so negatives are multiplied instead (llama.cpp's rule).
        logit = logit > 0.0f ? logit / repeat : logit * repeat;
        return logit - (static_cast<float>(count) * frequency + presence);
    }

    void apply(candidates& c, const token_history& history) const {
        if (neutral() || c.empty() || history.distinct().empty()) return;
        if (c.id_ordered()) {
            for (const std::int32_t t : history.distinct())
                if (candidate* x = c.find(t)) x->logit = penalize(x->logit, history.count(t));
        } else {
            for (auto& x : c) {
                const std::int32_t n = history.count(x.id);
                if (n > 0) x.logit = penalize(x.logit, n);
            }
        }
        c.logits_changed();
    }
};

struct top_k_stage {
    std::int32_t k = 40;  // <= 0: off

    static constexpr std::string_view name() { return "top_k"; }
    void apply(candidates& c) const {
        if (k <= 0 || c.empty()) return;
        c.keep_top(static_cast<std::size_t>(k));
    }
};

struct typical_p_stage {
    float p = 1.0f;  // >= 1: off
    std::size_t min_keep = 1;

    static constexpr std::string_view name() { return "typical_p"; }
    void apply(candidates& c) const {
        if (!(p < 1.0f) || c.size() <= 1) return;
        c.softmax();
        const std::size_t n = c.size();
        double entropy = 0.0;
        for (const auto& x : c)
            if (x.p > 0.0f) entropy -= static_cast<double>(x.p) * std::log(static_cast<double>(x.p));
        // |surprisal - entropy|; a zero-probability token is infinitely atypical
        auto& shifted = c.scratch_doubles();  // (n)
        shifted.resize(n);
        for (std::size_t i = 0; i < n; ++i)
            shifted[i] = c[i].p > 0.0f ? std::fabs(-std::log(static_cast<double>(c[i].p)) - entropy)
                                       : std::numeric_limits<double>::infinity();
        auto& order = c.scratch_indices();  // (n)
        order.resize(n);
        for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<std::uint32_t>(i);
        std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
            return shifted[a] < shifted[b] || (shifted[a] == shifted[b] && ranks_before(c[a], c[b]));
        });
        std::size_t keep = n;
        double mass = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            mass += c[order[i]].p;
            if (mass > static_cast<double>(p) && i + 1 >= min_keep) {
                keep = i + 1;
                break;
            }
        }
        auto& out = c.scratch();
        out.clear();
        for (std::size_t i = 0; i < keep; ++i) out.push_back(c[order[i]]);
        c.take_scratch(false);
    }
};

struct top_p_stage {
    float p = 0.95f;  // >= 1: off
    std::size_t min_keep = 1;

    static constexpr std::string_view name() { return "top_p"; }
    // Below this size a full sort is cheaper than bucketing.
    static constexpr std::size_t k_bucket_threshold = 2048;
    static constexpr std::size_t k_n_buckets = 512;

    void apply(candidates& c) const {
        if (!(p < 1.0f) || c.size() <= 1) return;
        c.softmax();
        if (c.sorted() || c.size() < k_bucket_threshold || !apply_bucketed(c)) {
            c.sort();
            c.truncate(cut(c.items()));
        }
    }

    // Length of the kept prefix of a best-first list with normalized p.
    std::size_t cut(std::span<const candidate> best_first) const {
        double mass = 0.0;
        for (std::size_t i = 0; i < best_first.size(); ++i) {
            mass += best_first[i].p;
            if (mass >= static_cast<double>(p) && i + 1 >= min_keep) return i + 1;
        }
        return best_first.size();
    }

private:
    // Avoids sorting the whole vocabulary: bucket by logit (the bucket index never increases as the
    // logit grows, so every token of a better bucket ranks before every token of a worse one), find
    // from the bucket masses how many buckets hold p, and sort only those. The cut is then taken on
    // an exact best-first prefix, so the result equals that of a full sort. If rounding leaves the
    // gathered prefix just short of p, one more bucket is taken. Returns false to ask for a full sort.
    bool apply_bucketed(candidates& c) const {
        constexpr float neg_inf = -std::numeric_limits<float>::infinity();
        const float hi = c.max_logit();
        float lo = hi;
        for (const auto& x : c) lo = x.logit < lo && x.logit > neg_inf ? x.logit : lo;
        if (!(hi > lo)) return false;
        const float scale = static_cast<float>(k_n_buckets) / (hi - lo);
        const std::size_t n = c.size();
        auto& bucket = c.scratch_indices();  // (n) bucket of each item; k_n_buckets for -inf (p = 0)
        auto& mass = c.scratch_doubles();    // (n_buckets + 1)
        bucket.resize(n);
        mass.assign(k_n_buckets + 1, 0.0);
        for (std::size_t i = 0; i < n; ++i) {
            const float l = c[i].logit;
            const float f = std::min((hi - l) * scale, static_cast<float>(k_n_buckets - 1));
            const auto b = l > neg_inf ? static_cast<std::uint32_t>(f) : static_cast<std::uint32_t>(k_n_buckets);
            bucket[i] = b;
            mass[b] += c[i].p;
        }
        std::uint32_t end_bucket = 0;  // buckets [0, end_bucket) are gathered
        double running = 0.0;
        while (end_bucket < k_n_buckets && running < static_cast<double>(p)) running += mass[end_bucket++];
        auto& gathered = c.scratch();
        for (;;) {
            gathered.clear();
            for (std::size_t i = 0; i < n; ++i)
                if (bucket[i] < end_bucket) gathered.push_back(c[i]);
            std::sort(gathered.begin(), gathered.end(), ranks_before);
            const std::size_t keep = cut(gathered);
            if (keep < gathered.size() || (keep == gathered.size() && reached(gathered))) {
                gathered.resize(keep);
                c.take_scratch(true);
                return true;
            }
            if (end_bucket >= k_n_buckets) return false;  // p not reached even over all tokens: keep all
            ++end_bucket;
        }
    }

    bool reached(std::span<const candidate> best_first) const {
        double mass = 0.0;
        for (const auto& x : best_first) mass += x.p;
        return mass >= static_cast<double>(p) && best_first.size() >= min_keep;
    }
};

struct min_p_stage {
    float p = 0.05f;  // <= 0: off
    std::size_t min_keep = 1;

    static constexpr std::string_view name() { return "min_p"; }
    void apply(candidates& c) const {
        if (!(p > 0.0f) || c.size() <= 1) return;
        // In logit space no softmax (and no sort) is needed: p_i / p_max = exp(l_i - l_max).
        const float threshold = c.max_logit() + std::log(p);
        std::size_t n_kept = 0;
        for (const auto& x : c) n_kept += x.logit >= threshold;
        if (n_kept >= min_keep) c.keep_if([&](const candidate& x) { return x.logit >= threshold; });
        else c.keep_top(min_keep);
    }
};

struct temperature_stage {
    float t = 0.8f;  // <= 0: keep only the best token

    static constexpr std::string_view name() { return "temperature"; }
    void apply(candidates& c) const {
        if (c.empty()) return;
        if (!(t > 0.0f)) {
            const candidate best = c[c.best_index()];
            auto& out = c.scratch();
            out.assign(1, best);
            c.take_scratch(true);
            return;
        }
        if (t == 1.0f) return;
        // Shifting by the maximum first leaves the softmax unchanged and keeps a tiny t from
        // overflowing the best logits to +inf.
        const float top = c.max_logit();
        if (!std::isfinite(top)) return;
        for (auto& x : c) x.logit = (x.logit - top) / t;
        c.logits_scaled();
    }
};

// A user stage: any callable over the candidates (and the token history, for stages that need it).
struct custom_stage {
    std::string label;
    std::function<void(candidates&, const token_history&)> fn;

    std::string_view name() const noexcept { return label; }
    void apply(candidates& c, const token_history& h) const {
        if (fn) fn(c, h);
    }
};

using sampler_stage = std::variant<logit_bias_stage, penalties_stage, top_k_stage, typical_p_stage, top_p_stage,
                                   min_p_stage, temperature_stage, custom_stage>;

inline void apply_stage(const sampler_stage& stage, candidates& c, const token_history& history) {
    std::visit([&](const auto& s) {
        if constexpr (requires { s.apply(c, history); }) s.apply(c, history);
        else s.apply(c);
    }, stage);
}

inline std::string_view stage_name(const sampler_stage& stage) {
    return std::visit([](const auto& s) -> std::string_view { return s.name(); }, stage);
}

}  // namespace minigpt

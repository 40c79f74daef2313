// Draft sources for speculative decoding, and the controller that picks the draft length.
//
// A draft source proposes tokens that continue the committed history, and for each the
// distribution q it was drawn from (the target later accepts token x with probability
// min(1, p(x)/q(x))). Two sources:
//   - draft_model: a smaller model of the same vocabulary with its own context and a copy of
//     the target's sampler chain; q is that chain's final distribution on the draft's logits,
//     and the token is drawn from q with the speculative decoder's own random stream (never
//     the chain's, so draws stay independent from round to round).
//   - prompt_lookup: the tokens that followed the most recent earlier occurrence of the last
//     n-gram of the history (n = lookup_ngram down to 1), continued periodically past the end of
//     the history (a loop of period 2 drafts as many tokens as asked); q is a point mass on each.
// A draft stops early when the draft is unsure (its best token's probability below p_min),
// as llama.cpp's common_speculative_gen_draft does.
//
// draft_controller chooses how many tokens to draft from measured costs: with acceptance
// rate a, a draft of k tokens yields (1 - a^(k+1)) / (1 - a) tokens per verification, at a
// cost of k draft steps plus one verification batch of k + 1 tokens. k = 0 is plain decoding,
// so when drafts keep failing the decoder falls back to it (drafting needs a predicted gain of
// 5%), probing with a short draft ever more rarely (16 rounds, doubling up to 256; x4 up to 1024
// for a draft model, whose probes cost model steps) to notice when the draft starts agreeing
// again. After such a gap a draft model decodes only the last few tokens it missed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/rng.hpp"
#include "minigpt/generate/sampler.hpp"
#include "minigpt/model/context.hpp"

namespace minigpt {

// One drafted token and the distribution it was drawn from (sparse: ids not listed have q = 0).
// `q` is empty for a deterministic draft (a point mass on `token`).
struct drafted_token {
    std::int32_t token;
    std::vector<candidate> q;
};

class draft_source {
public:
    virtual ~draft_source() = default;
    // Appends up to n_max tokens continuing `history` to `out` (cleared first). greedy: the
    // target decodes greedily, so only the tokens matter (q is left empty).
    virtual void draft(std::span<const std::int32_t> history, std::int32_t n_max, float p_min, bool greedy, rng& gen,
                       std::vector<drafted_token>& out) = 0;
    // Brings the source up to date with `history` ahead of time (the draft model's prefill),
    // so that cost is not counted as drafting.
    virtual void prepare(std::span<const std::int32_t> history) { (void)history; }
    // True when drafting costs next to nothing (no model runs), so the controller ignores its time.
    virtual bool free() const noexcept { return false; }
};

// Highest probability of softmax(logits): the draft's confidence in its best token.
inline double top_probability(std::span<const float> logits) {
    float mx = -std::numeric_limits<float>::infinity();
    for (float v : logits) mx = std::max(mx, v);
    double s = 0.0;
    for (float v : logits) s += std::exp(static_cast<double>(v - mx));
    return s > 0.0 ? 1.0 / s : 0.0;
}

class draft_model : public draft_source {
public:
    // The draft model must share the target's vocabulary (same n_vocab; same token ids is the
    // caller's promise). cp.n_ctx should match the target's context.
    draft_model(std::shared_ptr<const model> m, const sampling_params& sp, std::int64_t target_n_vocab, context_params cp = {})
        : ctx_(std::move(m), cp), smp_(sp, static_cast<std::int32_t>(target_n_vocab)), base_(smp_) {
        if (ctx_.n_vocab() != target_n_vocab)
            throw error("speculative: the draft model's vocabulary has " + std::to_string(ctx_.n_vocab()) +
                        " tokens but the target's " + std::to_string(target_n_vocab));
        penalties_ = !(sp.repeat_penalty == 1.0f && sp.frequency_penalty == 0.0f && sp.presence_penalty == 0.0f);
    }

    void prepare(std::span<const std::int32_t> history) override {
        if (!history.empty() && static_cast<std::int64_t>(history.size()) <= ctx_.n_ctx()) sync(history, false);
    }

    void draft(std::span<const std::int32_t> history, std::int32_t n_max, float p_min, bool greedy, rng& gen,
               std::vector<drafted_token>& out) override {
        out.clear();
        const std::int64_t room = ctx_.n_ctx() - static_cast<std::int64_t>(history.size());
        n_max = static_cast<std::int32_t>(std::min<std::int64_t>(n_max, room));
        if (history.empty() || n_max <= 0) return;
        sync(history, true);
        // The penalties see the committed history: bring the base sampler's history up to date
        // and draft with a copy, so rejected drafts leave no trace.
        if (penalties_) {
            for (std::size_t i = n_base_; i < history.size(); ++i) base_.accept(history[i]);
            n_base_ = history.size();
            smp_ = base_;
        }
        for (std::int32_t j = 0; j < n_max; ++j) {
            const auto logits = ctx_.logits(0);
            drafted_token d;
            const std::int32_t best = smp_.choose(logits);
            double top;
            if (greedy) {
                d.token = best;
                top = p_min > 0.0f ? top_probability(logits) : 1.0;
            } else {
                const auto& c = smp_.last_candidates();
                d.q.assign(c.begin(), c.end());
                double total = 0.0;
                top = 0.0;
                for (const auto& x : d.q) { total += x.p; top = std::max<double>(top, x.p); }
                const std::size_t i = rng::pick(d.q.size(), [&](std::size_t k) { return d.q[k].p; }, gen.uniform() * total);
                d.token = d.q[i].id;
            }
            if (top < p_min) break;
            if (penalties_) smp_.accept(d.token);
            out.push_back(std::move(d));
            if (j + 1 < n_max) {
                ctx_.decode(std::span(&out.back().token, 1));
                in_ctx_.push_back(out.back().token);
                at_.push_back(at_.back() + 1);
            }
        }
    }

    context& ctx() noexcept { return ctx_; }

private:
    // After a gap (plain rounds while the controller did not draft) a draft decodes only the last
    // k_catch_up tokens it missed, placed right after what it holds: a draft needs the recent
    // text, and catching up on hundreds of tokens before a probe cost more than the probe (a
    // prefill of 80 tokens was ~13% of plain decoding's time for a Q4_0 draft of a Q8_0 target).
    // prepare(), which sees a new prompt, decodes all of it.
    static constexpr std::size_t k_catch_up = 8;

    // Makes the draft context end with the history's last tokens, with the logits of the last one.
    // in_ctx_[i] is the token at the draft's position i and at_[i] the history index it stands
    // for (increasing; a gap after a skip-ahead).
    void sync(std::span<const std::int32_t> history, bool skip_ahead) {
        // Keep the longest prefix of the draft context that is still in the history.
        std::size_t common = 0;
        while (common < in_ctx_.size() && at_[common] < history.size() && in_ctx_[common] == history[at_[common]]) ++common;
        std::size_t next = common == 0 ? 0 : at_[common - 1] + 1;  // first history token not represented
        if (next == history.size() && common == in_ctx_.size() && ctx_.n_logits_rows() > 0) return;
        if (next == history.size()) { --common; --next; }  // the last token's logits are needed: decode it again
        if (skip_ahead && history.size() - next > k_catch_up && common > 0) next = history.size() - k_catch_up;
        ctx_.truncate(static_cast<std::int64_t>(common));
        in_ctx_.resize(common);
        at_.resize(common);
        ctx_.decode(history.subspan(next));
        for (std::size_t i = next; i < history.size(); ++i) {
            in_ctx_.push_back(history[i]);
            at_.push_back(i);
        }
    }

    context ctx_;
    sampler smp_;                        // the chain used for drafting (a copy of base_ when penalties apply)
    sampler base_;                       // the chain with the committed history
    std::size_t n_base_ = 0;             // history tokens base_ has accepted
    bool penalties_ = false;
    std::vector<std::int32_t> in_ctx_;   // (n_ctx_used) tokens in the draft's KV cache, in order
    std::vector<std::size_t> at_;        // (n_ctx_used) the history index each of them stands for
};

class prompt_lookup : public draft_source {
public:
    explicit prompt_lookup(std::int32_t n_gram) : n_gram_(n_gram) {
        if (n_gram <= 0) throw error("speculative: --lookup-ngram must be positive, got " + std::to_string(n_gram));
    }

    void draft(std::span<const std::int32_t> history, std::int32_t n_max, float, bool, rng&,
               std::vector<drafted_token>& out) override {
        out.clear();
        const auto n = static_cast<std::int64_t>(history.size());
        if (n_max <= 0) return;
        for (std::int64_t g = std::min<std::int64_t>(n_gram_, n - 1); g >= 1; --g) {
            // Most recent start s < n - g with history[s, s+g) == the last g tokens.
            for (std::int64_t s = n - g - 1; s >= 0; --s) {
                if (!std::equal(history.begin() + s, history.begin() + s + g, history.end() - g)) continue;
                // Past the end of the history the continuation is the draft itself (the text after
                // s + g repeated with period n - s - g), so a loop of any period drafts n_max tokens.
                for (std::int64_t i = s + g; static_cast<std::int32_t>(out.size()) < n_max; ++i)
                    out.push_back({i < n ? history[static_cast<std::size_t>(i)] : out[static_cast<std::size_t>(i - n)].token, {}});
                return;
            }
        }
    }
    bool free() const noexcept override { return true; }

private:
    std::int32_t n_gram_;
};

// Picks the draft length from the measured acceptance rate and costs.
class draft_controller {
public:
    draft_controller(std::int32_t draft_max, bool adaptive) : draft_max_(std::max(0, draft_max)), adaptive_(adaptive) {
        verify_.assign(static_cast<std::size_t>(draft_max_) + 2, -1.0);
    }

    std::int32_t next_length() {
        if (!adaptive_ || draft_max_ == 0) return draft_max_;
        if (verify_[1] <= 0.0) return 0;  // measure plain decoding first
        // Then one draft to measure the draft's cost and acceptance (a draft of 4 also measures a
        // verification batch of 5).
        if (draft_seconds_ < 0.0) return std::min(draft_max_, 4);
        const double a = std::clamp((hits_ + 1.0) / (trials_ + 2.0), 0.0, 0.999);
        std::int32_t best_k = 0;
        const double plain_rate = 1.0 / verify_cost(1);
        double best_rate = plain_rate;
        double e = 1.0, ak = 1.0;  // expected tokens for k: sum_{i<=k} a^i
        for (std::int32_t k = 1; k <= draft_max_; ++k) {
            ak *= a;
            e += ak;
            const double rate = e / (k * draft_seconds_ + verify_cost(k + 1));
            if (rate > best_rate) { best_rate = rate; best_k = k; }
        }
        // Drafting must promise a clear gain: the costs are measured on a machine whose speed varies,
        // and a draft that only breaks even loses to plain decoding once its misses are counted.
        if (best_rate < k_min_gain * plain_rate) best_k = 0;
        if (best_k > 0) {
            since_probe_ = 0;
            probe_interval_ = k_probe_min;
            return best_k;
        }
        // Plain decoding, probing now and then in case the draft starts agreeing. Probes that keep
        // failing come ever more rarely (each costs the draft's catch-up over the last tokens it
        // missed, its steps and a verification batch), so failing drafts cost next to nothing.
        // A draft model's probes cost model steps, so they thin out faster (16, 64, 256, 1024
        // rounds) than free drafts' (doubling up to 256).
        if (++since_probe_ >= probe_interval_) {
            since_probe_ = 0;
            probe_interval_ = draft_free_ ? std::min(probe_interval_ * 2, k_probe_max) : std::min(probe_interval_ * 4, k_probe_max_costly);
            return std::min(draft_max_, 2);
        }
        return 0;
    }

    // After a round: n_drafted tokens proposed, n_accepted of them taken, the draft took
    // draft_s seconds in all and verifying n_verified tokens took verify_s.
    void record(std::int32_t n_drafted, std::int32_t n_accepted, double draft_s, bool draft_free, std::int32_t n_verified,
                double verify_s) {
        constexpr double decay = 0.97;
        if (n_drafted > 0) {
            draft_free_ = draft_free;
            hits_ = hits_ * decay + n_accepted;
            trials_ = trials_ * decay + n_accepted + (n_accepted < n_drafted ? 1 : 0);
            const double per = draft_free ? 0.0 : draft_s / n_drafted;
            draft_seconds_ = draft_seconds_ < 0 ? per : 0.8 * draft_seconds_ + 0.2 * per;
        }
        auto& v = verify_[static_cast<std::size_t>(std::min<std::int32_t>(n_verified, draft_max_ + 1))];
        v = v < 0 ? verify_s : 0.8 * v + 0.2 * verify_s;
    }

    double acceptance_estimate() const { return (hits_ + 1.0) / (trials_ + 2.0); }

private:
    // Measured when seen; otherwise interpolated between measured sizes, or (beyond them) a
    // guess that a batch costs a little more per token than one token, so larger drafts get tried.
    double verify_cost(std::int32_t n) const {
        const auto i = static_cast<std::size_t>(n);
        if (verify_[i] > 0) return verify_[i];
        std::size_t lo = i, hi = i;
        while (lo > 1 && verify_[lo] <= 0) --lo;
        while (hi + 1 < verify_.size() && verify_[hi] <= 0) ++hi;
        if (verify_[hi] > 0 && verify_[lo] > 0)
            return verify_[lo] + (verify_[hi] - verify_[lo]) * static_cast<double>(i - lo) / static_cast<double>(hi - lo);
        return verify_[lo] * (1.0 + 0.08 * static_cast<double>(i - lo));
    }

    static constexpr double k_min_gain = 1.05;        // predicted speed-up drafting must promise
    static constexpr std::int32_t k_probe_min = 16;   // plain rounds before the first probe
    static constexpr std::int32_t k_probe_max = 256;  // ... and at most between probes of a free draft
    static constexpr std::int32_t k_probe_max_costly = 1024;  // ... of a draft model
    std::int32_t draft_max_;
    bool adaptive_;
    double hits_ = 0.0, trials_ = 0.0;   // exponentially decayed counts of accepted drafts and of draft attempts
    double draft_seconds_ = -1.0;        // per drafted token
    std::vector<double> verify_;         // (draft_max + 2) seconds to verify n tokens; -1 unmeasured
    std::int32_t since_probe_ = 0;
    std::int32_t probe_interval_ = k_probe_min;
    bool draft_free_ = false;            // the last draft came from a free source (prompt lookup)
};

}  // namespace minigpt

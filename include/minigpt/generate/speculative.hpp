// Speculative decoding: a cheap draft proposes several tokens, the target model checks them
// all in one batch, and an acceptance rule keeps the output distributed exactly as the
// target's own sampling (Leviathan, Kalman, Matias 2023; Chen et al. 2023).
//
// Each round: the target's context holds every committed token but the last; the draft
// (speculative_draft.hpp) proposes d_1..d_k; the target decodes [last, d_1..d_k] with logits
// at every position and p_i, the final distribution of the caller's sampler chain at row i
// (bias, penalties over the committed history plus d_1..d_{i-1}, top-k, ..., temperature).
//   - Greedy (temperature <= 0): d_i is accepted while it equals the chain's greedy choice at
//     row i; the first mismatch is replaced by that choice. The output is the target's greedy
//     output token for token.
//   - Sampled: d_i ~ q_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)); on the
//     first rejection a token is drawn from norm(max(0, p_i - q_i)) and the round ends; when all
//     k are accepted, one more token is drawn from p_{k+1}. Each emitted token is then
//     distributed as p (Leviathan et al., Theorem 1), whatever q is.
// The target's KV cache is cut back (context::truncate) past the last accepted draft. With no
// draft (the controller chose k = 0), a round is one plain decoding step.
//
// Generation controls (max tokens, end of generation, stop strings, callback, full context)
// behave as in generate_from_tokens; context shifting is not offered here.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation.hpp"
#include "minigpt/generate/speculative_draft.hpp"

namespace minigpt {

struct speculative_params {
    std::int32_t draft_max = 16;     // most tokens drafted per round (llama.cpp's --draft-max)
    std::int32_t draft_min = 0;      // a shorter draft is dropped (--draft-min)
    float draft_p_min = 0.75f;       // drafting stops when the draft's best token is less likely (--draft-p-min, llama.cpp common.h default)
    bool adaptive = true;            // choose the draft length from measured acceptance and costs
};

struct speculative_stats {
    std::int64_t n_rounds = 0;       // target forward passes after the prompt
    std::int64_t n_drafted = 0;      // draft tokens verified
    std::int64_t n_accepted = 0;     // of those, accepted
    double draft_seconds = 0;
    double verify_seconds = 0;
    double acceptance_rate() const { return n_drafted > 0 ? static_cast<double>(n_accepted) / static_cast<double>(n_drafted) : 0.0; }
};

struct speculative_output {
    generation_output out;
    speculative_stats spec;
};

namespace detail {

// Index of `id` in a sparse distribution, or -1.
inline std::ptrdiff_t find_id(std::span<const candidate> d, std::int32_t id) {
    for (std::size_t i = 0; i < d.size(); ++i)
        if (d[i].id == id) return static_cast<std::ptrdiff_t>(i);
    return -1;
}

// Draws from norm(max(0, p - q)) with q sparse (empty: a point mass on `point`).
inline std::int32_t sample_residual(std::span<const candidate> p, std::span<const candidate> q, std::int32_t point, rng& gen,
                                    std::vector<double>& scratch) {
    scratch.resize(p.size());  // (|p|) residual weights
    double total = 0.0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        double qi = 0.0;
        if (q.empty()) qi = p[i].id == point ? 1.0 : 0.0;
        else if (const auto j = find_id(q, p[i].id); j >= 0) qi = q[static_cast<std::size_t>(j)].p;
        scratch[i] = std::max(0.0, static_cast<double>(p[i].p) - qi);
        total += scratch[i];
    }
    // total = 0 only when p <= q everywhere, i.e. p == q up to rounding, where rejection has
    // probability ~0: fall back to p itself.
    if (!(total > 0.0)) {
        for (std::size_t i = 0; i < p.size(); ++i) scratch[i] = p[i].p;
        total = 0.0;
        for (double w : scratch) total += w;
    }
    const std::size_t i = rng::pick(p.size(), [&](std::size_t k) { return scratch[k]; }, gen.uniform() * total);
    return p[i].id;
}

}  // namespace detail

// Continues `ctx` with `prompt_tokens` and generates with speculative decoding. `smp` is the
// target's sampler (its chain defines p; its history is kept as in generate_from_tokens);
// `seed` seeds the draws of the acceptance test and of the draft.
inline speculative_output generate_speculative(context& ctx, const tokenizer& tok, std::vector<std::int32_t>& history,
                                               std::span<const std::int32_t> prompt_tokens, const generation_params& params,
                                               sampler& smp, draft_source& drafter, const speculative_params& sp,
                                               const token_callback& on_token = {}) {
    if (sp.draft_max < 0 || sp.draft_min < 0 || sp.draft_min > sp.draft_max)
        throw error("speculative: need 0 <= draft_min <= draft_max (got " + std::to_string(sp.draft_min) + ", " +
                    std::to_string(sp.draft_max) + ")");
    if (prompt_tokens.empty()) throw error("speculative: empty prompt");
    speculative_output res;
    generation_output& out = res.out;
    auto& st = res.spec;
    const auto t0 = std::chrono::steady_clock::now();
    if (ctx.n_past() + static_cast<std::int64_t>(prompt_tokens.size()) >= ctx.n_ctx())
        throw error("prompt of " + std::to_string(prompt_tokens.size()) + " tokens does not fit the context (" +
                    std::to_string(ctx.n_past()) + " of " + std::to_string(ctx.n_ctx()) + " positions used)");
    ctx.decode(prompt_tokens);
    history.insert(history.end(), prompt_tokens.begin(), prompt_tokens.end());
    for (auto id : prompt_tokens) smp.accept(id);
    out.stats.n_prompt_tokens = static_cast<std::int64_t>(prompt_tokens.size());
    out.stats.prompt_seconds = detail::seconds_since(t0);

    const bool greedy = smp.greedy();
    rng gen(smp.seed() ^ 0x9E3779B97F4A7C15ull);
    draft_controller control(sp.draft_max, sp.adaptive);
    stop_matcher stops(params.stop);
    stream_decoder decoder(tok, tok.decode(history).empty());
    std::chrono::steady_clock::time_point t_first;
    bool done = false;
    std::int64_t n_in_ctx = static_cast<std::int64_t>(history.size());  // history[0..n_in_ctx) is in the KV cache

    // Emits one committed token; false when generation ends with it.
    auto commit = [&](std::int32_t id) -> bool {
        smp.accept(id);
        history.push_back(id);
        out.tokens.push_back(id);
        if (++out.stats.n_generated == 1) {
            t_first = std::chrono::steady_clock::now();
            out.stats.time_to_first_token = detail::seconds_since(t0);
        }
        if (!params.ignore_eos && tok.is_eog(id)) { out.reason = stop_reason::end_of_generation; return false; }
        const auto m = stops.push(decoder.push(id));
        out.text += m.emit;
        const bool keep_going = !on_token || on_token(id, m.emit);
        if (m.stopped) {
            out.reason = stop_reason::stop_string;
            out.stop_string = m.matched;
            return false;
        }
        if (!keep_going) { out.reason = stop_reason::callback; return false; }
        if (params.max_tokens >= 0 && out.stats.n_generated >= params.max_tokens) return false;
        if (static_cast<std::int64_t>(history.size()) > ctx.n_ctx()) { out.reason = stop_reason::context_full; return false; }
        return true;
    };

    if (params.max_tokens == 0) done = true;
    else done = !commit(smp.choose(ctx.logits(0)));
    drafter.prepare(history);

    std::vector<drafted_token> drafts;
    std::vector<std::int32_t> batch;  // (1 + k) tokens verified this round
    std::vector<double> residual;
    while (!done) {
        std::int32_t k = control.next_length();
        if (params.max_tokens >= 0) k = std::min<std::int64_t>(k, params.max_tokens - out.stats.n_generated - 1);
        k = static_cast<std::int32_t>(std::min<std::int64_t>(k, ctx.n_ctx() - static_cast<std::int64_t>(history.size())));
        const auto td = std::chrono::steady_clock::now();
        drafts.clear();
        if (k > 0) drafter.draft(history, k, sp.draft_p_min, greedy, gen, drafts);
        if (static_cast<std::int32_t>(drafts.size()) < sp.draft_min) drafts.clear();
        const double draft_s = detail::seconds_since(td);

        batch.assign(history.begin() + n_in_ctx, history.end());
        for (const auto& d : drafts) batch.push_back(d.token);
        const auto tv = std::chrono::steady_clock::now();
        ctx.decode(batch, drafts.empty() ? logits_for::last : logits_for::all);
        const double verify_s = detail::seconds_since(tv);
        const auto n_old = static_cast<std::int64_t>(history.size());
        const std::int64_t row0 = drafts.empty() ? 0 : static_cast<std::int64_t>(batch.size() - drafts.size() - 1);

        std::int32_t n_acc = 0;
        for (std::size_t i = 0; i <= drafts.size() && !done; ++i) {
            const auto row = ctx.logits(row0 + static_cast<std::int64_t>(i));
            const std::int32_t pick = smp.choose(row);
            if (i == drafts.size()) { done = !commit(pick); break; }
            const auto& d = drafts[i];
            bool accept;
            if (greedy) {
                accept = pick == d.token;
            } else {
                const auto p = smp.last_candidates().items();
                const auto pi = detail::find_id(p, d.token);
                const double px = pi >= 0 ? p[static_cast<std::size_t>(pi)].p : 0.0;
                double qx = 1.0;
                if (!d.q.empty()) {
                    const auto qi = detail::find_id(d.q, d.token);
                    qx = qi >= 0 ? d.q[static_cast<std::size_t>(qi)].p : 0.0;
                }
                accept = px > 0.0 && gen.uniform() * qx < px;
                if (!accept) {
                    done = !commit(detail::sample_residual(p, d.q, d.token, gen, residual));
                    break;
                }
            }
            if (!accept) { done = !commit(pick); break; }
            ++n_acc;
            done = !commit(d.token);
        }
        // In the KV cache: everything up to the last accepted draft; the token committed after it is not.
        n_in_ctx = n_old + n_acc;
        ctx.truncate(n_in_ctx);
        ++st.n_rounds;
        st.n_drafted += static_cast<std::int64_t>(drafts.size());
        st.n_accepted += n_acc;
        st.draft_seconds += draft_s;
        st.verify_seconds += verify_s;
        control.record(static_cast<std::int32_t>(drafts.size()), n_acc, draft_s, drafter.free(),
                       static_cast<std::int32_t>(batch.size()), verify_s);
    }
    // Like generate_from_tokens, leave the last generated token in the context (unless the
    // context is full), so a caller can continue from it.
    if (n_in_ctx < static_cast<std::int64_t>(history.size()) && static_cast<std::int64_t>(history.size()) <= ctx.n_ctx() &&
        out.reason != stop_reason::end_of_generation && out.reason != stop_reason::context_full && !out.tokens.empty()) {
        ctx.decode(std::span(history).subspan(static_cast<std::size_t>(n_in_ctx)));
    }
    detail::finish_output(stops, decoder, out, on_token, t_first);
    return res;
}

}  // namespace minigpt

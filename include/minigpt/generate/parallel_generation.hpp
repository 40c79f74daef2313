// N continuations of one prompt decoded together: sampling N answers, self-consistency's paths,
// N critiques of one draft. The prompt sits once in sequence 0 of a batch_context; paths 1..N-1
// fork it (seq_cp: its KV blocks are shared copy-on-write, nothing is copied until a path writes
// into the prompt's partly filled last block), and every step decodes one token of every live
// path in ONE forward pass, so the weights are read once per step for all paths.
//
// Each path is exactly minigpt::generate_from_tokens' loop (its own sampler seeded from its params
// and fed the prompt for the penalties, stop strings across token boundaries, end-of-generation,
// max tokens, log-probabilities, the same UTF-8 stream decoder), so its output equals generating
// it alone from a context holding the same prompt: the tokens fed are the same, and the logits
// differ only by float rounding (a batched step computes them with the matrix-matrix kernels).
// Differences: a full sequence always stops (context_full_policy::shift is not applied), and
// there is no per-token callback.
// generate_paths is the general form: each path starts from its own sequence (its own history and
// logits), e.g. several sessions' contexts imported side by side, or forks of one prompt that
// each had a different text appended (prefill_sequences decodes those appends in one batch).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation.hpp"
#include "minigpt/model/batch_context.hpp"

namespace minigpt {

// Where path i of generate_paths starts: sequence i of the batch_context holds the tokens of
// `history` (the samplers' penalties and the text decoder read them), `logits` are the logits
// after its last token, and the sequence may hold up to n_ctx positions (history included).
struct path_start {
    std::span<const std::int32_t> history;
    std::span<const float> logits;  // (n_vocab)
    std::int64_t n_ctx = 0;
};

// Generates one continuation per path, path i in sequence i of `ctx`, every step one decode over
// one token of each live path. On return sequence i holds its history and the tokens path i fed
// (its generated tokens but an end-of-generation one or one that found it full).
inline std::vector<generation_output> generate_paths(batch_context& ctx, const tokenizer& tok, std::span<const path_start> starts,
                                                     std::span<const generation_params> params) {
    if (starts.size() != params.size())
        throw error("generate_paths: " + std::to_string(starts.size()) + " starts for " + std::to_string(params.size()) + " paths");
    const auto n = static_cast<std::int32_t>(params.size());
    if (n == 0) return {};
    if (n > ctx.n_seq_max())
        throw error("generate_paths: " + std::to_string(n) + " paths but the context holds " + std::to_string(ctx.n_seq_max()) +
                    " sequences");
    for (std::int32_t i = 0; i < n; ++i) {
        const auto& st = starts[static_cast<std::size_t>(i)];
        if (ctx.n_pos(i) != static_cast<std::int64_t>(st.history.size()) || st.history.empty())
            throw error("generate_paths: sequence " + std::to_string(i) + " holds " + std::to_string(ctx.n_pos(i)) +
                        " positions, its history " + std::to_string(st.history.size()) + " tokens");
        if (static_cast<std::int64_t>(st.logits.size()) != ctx.n_vocab())
            throw error("generate_paths: path " + std::to_string(i) + " starts from " + std::to_string(st.logits.size()) +
                        " logits for a vocabulary of " + std::to_string(ctx.n_vocab()));
    }
    const auto t0 = std::chrono::steady_clock::now();
    struct path {
        std::optional<sampler> smp;
        std::optional<stop_matcher> stops;
        std::optional<stream_decoder> decoder;
        generation_output out;
        bool live = true;
        std::int64_t row = -1;  // batch index of its logits; -1: its start's
        std::chrono::steady_clock::time_point t_first;
    };
    std::vector<path> paths(static_cast<std::size_t>(n));
    for (std::int32_t i = 0; i < n; ++i) {
        auto& p = paths[static_cast<std::size_t>(i)];
        const auto& gp = params[static_cast<std::size_t>(i)];
        const auto& st = starts[static_cast<std::size_t>(i)];
        p.smp.emplace(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
        for (auto id : st.history) p.smp->accept(id);
        p.stops.emplace(gp.stop);
        p.decoder.emplace(tok, tok.decode(st.history).empty());
        p.out.stats.n_prompt_tokens = 0;  // the history was computed before
        p.live = gp.max_tokens != 0;
    }
    batch b;
    for (std::int32_t step = 0;; ++step) {
        b.clear();
        for (std::int32_t i = 0; i < n; ++i) {
            auto& p = paths[static_cast<std::size_t>(i)];
            if (!p.live) continue;
            const auto& gp = params[static_cast<std::size_t>(i)];
            const std::int64_t n_ctx_path = starts[static_cast<std::size_t>(i)].n_ctx;
            const auto logits = p.row < 0 ? starts[static_cast<std::size_t>(i)].logits : ctx.logits_ith(p.row);
            const std::int32_t id = p.smp->sample(logits);
            p.out.tokens.push_back(id);
            if (gp.n_logprobs >= 0) p.out.logprobs.push_back(logprobs_of(logits, id, gp.n_logprobs));
            ++p.out.stats.n_generated;
            if (step == 0) {
                p.t_first = std::chrono::steady_clock::now();
                p.out.stats.time_to_first_token = detail::seconds_since(t0);
            }
            p.live = false;
            if (!gp.ignore_eos && tok.is_eog(id)) { p.out.reason = stop_reason::end_of_generation; continue; }
            const auto m = p.stops->push(p.decoder->push(id));
            p.out.text += m.emit;
            const std::int64_t pos = ctx.n_pos(i);
            if (m.stopped) {
                p.out.reason = stop_reason::stop_string;
                p.out.stop_string = m.matched;
                if (pos < n_ctx_path) b.add(id, pos, i, false);  // the stop string's last token stays in the context
                continue;
            }
            if (gp.max_tokens >= 0 && static_cast<std::int32_t>(p.out.tokens.size()) >= gp.max_tokens) {
                p.out.reason = stop_reason::max_tokens;
                b.add(id, pos, i, false);
                continue;
            }
            if (pos >= n_ctx_path) { p.out.reason = stop_reason::context_full; continue; }
            b.add(id, pos, i, true);
            p.live = true;
            p.row = b.size() - 1;
        }
        if (b.size() == 0) break;
        ctx.decode(b);
    }
    std::vector<generation_output> outs;
    for (auto& p : paths) {
        detail::finish_output(*p.stops, *p.decoder, p.out, {}, p.t_first);
        outs.push_back(std::move(p.out));
    }
    return outs;
}

// Generates params.size() continuations (<= ctx.n_seq_max()) of the prompt held by sequence 0 of
// `ctx`: `history` are its tokens and `prompt_logits` the logits after its last token. Path i runs
// in sequence i (a copy-on-write fork of sequence 0) and may hold up to `n_ctx_path` positions
// (prompt included); on return sequence i holds the prompt and the tokens path i fed.
inline std::vector<generation_output> generate_parallel(batch_context& ctx, const tokenizer& tok, std::span<const std::int32_t> history,
                                                        std::span<const float> prompt_logits, std::span<const generation_params> params,
                                                        std::int64_t n_ctx_path) {
    const auto n = static_cast<std::int32_t>(params.size());
    if (n == 0) return {};
    if (n > ctx.n_seq_max())
        throw error("generate_parallel: " + std::to_string(n) + " paths but the context holds " + std::to_string(ctx.n_seq_max()) +
                    " sequences");
    if (ctx.n_pos(0) != static_cast<std::int64_t>(history.size()) || history.empty())
        throw error("generate_parallel: sequence 0 holds " + std::to_string(ctx.n_pos(0)) + " positions, the history " +
                    std::to_string(history.size()) + " tokens");
    for (std::int32_t i = 1; i < n; ++i) ctx.seq_cp(0, i);
    const std::vector<path_start> starts(params.size(), path_start{history, prompt_logits, n_ctx_path});
    return generate_paths(ctx, tok, starts, params);
}

// Decodes tokens[i] after what sequence i holds, for every i, all sequences in one decode() (one
// forward pass per n_batch tokens); returns the logits after each sequence's last new token
// ((n_vocab) each; empty for a sequence given no tokens).
inline std::vector<std::vector<float>> prefill_sequences(batch_context& ctx, std::span<const std::vector<std::int32_t>> tokens) {
    if (static_cast<std::int64_t>(tokens.size()) > ctx.n_seq_max())
        throw error("prefill_sequences: " + std::to_string(tokens.size()) + " sequences but the context holds " +
                    std::to_string(ctx.n_seq_max()));
    batch b;
    std::vector<std::int64_t> last(tokens.size(), -1);  // (n_seq) batch index of each sequence's last token
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        const auto seq = static_cast<std::int32_t>(i);
        const std::int64_t p0 = ctx.n_pos(seq);
        for (std::size_t t = 0; t < tokens[i].size(); ++t) b.add(tokens[i][t], p0 + static_cast<std::int64_t>(t), seq, t + 1 == tokens[i].size());
        if (!tokens[i].empty()) last[i] = b.size() - 1;
    }
    std::vector<std::vector<float>> out(tokens.size());
    if (b.size() == 0) return out;
    ctx.decode(b);
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (last[i] >= 0) {
            const auto l = ctx.logits_ith(last[i]);
            out[i].assign(l.begin(), l.end());
        }
    return out;
}

}  // namespace minigpt

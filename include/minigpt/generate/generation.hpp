// The generation loop: prompt in, streamed text out, with the controls of llama.cpp.
//
// generate() tokenises the prompt, prefills it in one batch, then samples one token
// at a time through the sampler chain until max_tokens, an end-of-generation token,
// a stop string (matched across token boundaries, never emitted), the callback's
// request, or a full context. Text reaches the callback only once it is complete
// UTF-8 and cannot be the start of a stop string. Stats follow llama.cpp's timings:
// prompt tokens/s, generation tokens/s and time to first token.
//
// Context full: with context_full_policy::stop (default) generation ends with
// stop_reason::context_full. With ::shift, the first n_keep tokens are kept, the
// oldest half of the rest is dropped, and the remainder is re-evaluated (one batched
// prefill) so any architecture — learned positions included — stays exact.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/api.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation_decl.hpp"
#include "minigpt/generate/logprobs.hpp"
#include "minigpt/generate/non_finite.hpp"
#include "minigpt/generate/sampler.hpp"
#include "minigpt/generate/sampling_params.hpp"
#include "minigpt/generate/stop_matcher.hpp"
#include "minigpt/generate/text_session.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "minigpt/text/tokenizer_loader.hpp"

namespace minigpt {

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Drops the oldest half of the tokens after n_keep and re-evaluates the rest.
inline void shift_context(context& ctx, std::vector<std::int32_t>& history, std::int64_t n_keep) {
    n_keep = std::clamp<std::int64_t>(n_keep, 0, static_cast<std::int64_t>(history.size()));
    const std::int64_t n_discard = (static_cast<std::int64_t>(history.size()) - n_keep) / 2;
    if (n_discard <= 0) throw error("context full and nothing can be discarded (n_keep covers the context)");
    history.erase(history.begin() + n_keep, history.begin() + n_keep + n_discard);
    ctx.truncate(0);
    ctx.decode(history);
}

// The end of a generation: bytes the decoder still holds (an unfinished UTF-8 character) may
// complete a stop string; what is left of the text is emitted, and the generation time recorded.
inline void finish_output(stop_matcher& stops, stream_decoder& decoder, generation_output& out, const token_callback& on_token,
                          std::chrono::steady_clock::time_point t_first) {
    if (out.reason != stop_reason::stop_string) {
        const auto tail = stops.push(decoder.flush());
        std::string rest = tail.emit;
        if (tail.stopped) {
            out.reason = stop_reason::stop_string;
            out.stop_string = tail.matched;
        } else {
            rest += stops.flush();
        }
        out.text += rest;
        if (!rest.empty() && on_token) on_token(-1, rest);
    }
    if (out.stats.n_generated > 0) out.stats.generation_seconds = seconds_since(t_first);
}

}  // namespace detail

// Continues `ctx` (which may already hold a conversation) with `prompt_tokens`, then generates.
// `history` holds every token in the context (used by the repetition penalties and shifts).
inline generation_output generate_from_tokens(context& ctx, const tokenizer& tok, std::vector<std::int32_t>& history,
                                              std::span<const std::int32_t> prompt_tokens, const generation_params& params,
                                              sampler& smp, const token_callback& on_token = {}) {
    generation_output out;
    const auto t0 = std::chrono::steady_clock::now();
    if (static_cast<std::int64_t>(prompt_tokens.size()) + ctx.n_past() >= ctx.n_ctx()) {
        if (params.on_full == context_full_policy::stop || static_cast<std::int64_t>(prompt_tokens.size()) >= ctx.n_ctx())
            throw error("prompt of " + std::to_string(prompt_tokens.size()) + " tokens does not fit the context (" +
                        std::to_string(ctx.n_past()) + " of " + std::to_string(ctx.n_ctx()) + " positions used)");
    }
    if (!prompt_tokens.empty()) {
        if (ctx.n_past() + static_cast<std::int64_t>(prompt_tokens.size()) >= ctx.n_ctx()) {
            history.insert(history.end(), prompt_tokens.begin(), prompt_tokens.end());
            detail::shift_context(ctx, history, params.n_keep < 0 ? 0 : params.n_keep);
        } else {
            ctx.decode(prompt_tokens);
            history.insert(history.end(), prompt_tokens.begin(), prompt_tokens.end());
        }
        for (auto id : prompt_tokens) smp.accept(id);
    } else if (ctx.n_logits_rows() == 0) {
        throw error("generate: empty prompt and no logits in the context");
    }
    out.stats.n_prompt_tokens = static_cast<std::int64_t>(prompt_tokens.size());
    out.stats.prompt_seconds = detail::seconds_since(t0);
    const std::int64_t n_keep = params.n_keep >= 0 ? params.n_keep : static_cast<std::int64_t>(history.size());

    stop_matcher stops(params.stop);
    // Text that follows visible prompt text keeps its leading space; text that starts the document
    // (after BOS alone) drops the SentencePiece space, as decode() of the whole sequence would.
    stream_decoder decoder(tok, tok.decode(history).empty());
    std::chrono::steady_clock::time_point t_first;
    for (std::int32_t i = 0; params.max_tokens < 0 || i < params.max_tokens; ++i) {
        std::int32_t id = 0;
        try {
            id = smp.sample(ctx.logits(0));  // also records id for the penalties
        } catch (const non_finite_logit_error& e) {
            // The tokens now in the context are history's last n_past (history may hold more after a shift).
            const auto n = std::min<std::size_t>(history.size(), static_cast<std::size_t>(ctx.n_past()));
            throw_non_finite(ctx, std::span(history).subspan(history.size() - n), e.what());
        }
        out.tokens.push_back(id);
        if (params.n_logprobs >= 0) out.logprobs.push_back(logprobs_of(ctx.logits(0), id, params.n_logprobs));
        ++out.stats.n_generated;
        if (i == 0) {
            t_first = std::chrono::steady_clock::now();
            out.stats.time_to_first_token = detail::seconds_since(t0);
        }
        if (!params.ignore_eos && tok.is_eog(id)) { out.reason = stop_reason::end_of_generation; break; }
        const auto m = stops.push(decoder.push(id));
        out.text += m.emit;
        const bool keep_going = !on_token || on_token(id, m.emit);
        history.push_back(id);
        if (m.stopped) {
            out.reason = stop_reason::stop_string;
            out.stop_string = m.matched;
            // The stop string's tokens stay in the context; feed the last one so the context is consistent.
            if (ctx.n_past() < ctx.n_ctx()) ctx.decode(std::span(&id, 1));
            break;
        }
        if (!keep_going) { out.reason = stop_reason::callback; ctx.decode(std::span(&id, 1)); break; }
        if (params.max_tokens >= 0 && i + 1 >= params.max_tokens) { ctx.decode(std::span(&id, 1)); break; }
        if (ctx.n_past() >= ctx.n_ctx()) {
            if (params.on_full == context_full_policy::stop) { out.reason = stop_reason::context_full; break; }
            detail::shift_context(ctx, history, n_keep);  // re-evaluates history, which already ends with id
            continue;
        }
        ctx.decode(std::span(&id, 1));
    }
    detail::finish_output(stops, decoder, out, on_token, t_first);
    return out;
}

#if MINIGPT_API_DEFINITIONS

MINIGPT_API llm llm::load(const std::string& path, const std::string& tokenizer_path) {
    llm r;
    r.weights = model::load(path);
    r.vocab = std::make_shared<const tokenizer>(r.weights->gguf() && tokenizer_path.empty()
                                                    ? tokenizer::from_gguf(*r.weights->gguf())  // already mapped
                                                    : load_tokenizer(path, tokenizer_path));
    // As llama.cpp: the vocabulary and the embedding rows must match. Fewer tokens would let the
    // model sample ids the tokenizer cannot decode; more, ids the model cannot embed.
    if (r.vocab->n_vocab() != r.weights->config().n_vocab)
        throw error(path + ": tokenizer has " + std::to_string(r.vocab->n_vocab()) + " tokens but the model " +
                    std::to_string(r.weights->config().n_vocab) + " (token_embd.weight rows)");
    return r;
}

MINIGPT_API generation_output generate(const llm& lm, context& ctx, std::string_view prompt, const generation_params& params,
                                       const token_callback& on_token) {
    std::vector<std::int32_t> history;
    const bool bos = params.add_bos && ctx.n_past() == 0 && lm.vocab->add_bos_default();
    const auto ids = lm.vocab->encode(prompt, bos);
    sampler smp(params.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    return generate_from_tokens(ctx, *lm.vocab, history, ids, params, smp, on_token);
}

#endif  // MINIGPT_API_DEFINITIONS

}  // namespace minigpt

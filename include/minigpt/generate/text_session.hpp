// text_session: the text-in, text-out interface that prompt builders and loops drive.
//
// A session is a growing context (a prompt and everything generated so far) held by
// some language model. Chain-of-thought, self-consistency, self-critique and tool
// use are written against this interface only, so they run unchanged on a real model
// (model + KV cache + tokenizer + sampler) or on a scripted stand-in in tests.
// Appending text continues the context without recomputing what is already there;
// fork() copies the context state (e.g. the KV cache after one shared prefill).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/sampling_params.hpp"

namespace minigpt {

struct generation_options {
    std::int32_t max_tokens = 256;      // new tokens at most; <0: until EOS, a stop string or a full context
    std::vector<std::string> stop;      // stop strings, matched across token boundaries
    sampling_params sampling;
};

enum class stop_reason { max_tokens, end_of_generation, stop_string, callback, context_full };

struct generation_result {
    std::string text;                   // generated text, without the matched stop string
    std::int32_t n_tokens = 0;          // tokens generated
    stop_reason reason = stop_reason::max_tokens;
    std::string stop_string;            // which stop string matched (reason == stop_string)
};

// Called with each piece of text as soon as it is complete UTF-8 and cannot be part of a
// stop string; return false to stop generating.
using text_callback = std::function<bool(std::string_view piece)>;

class text_session;

// One continuation generated in its own fork (text_session::fork_generate).
struct forked_generation {
    std::unique_ptr<text_session> session;  // the fork, the generated text now in its context
    generation_result result;
    std::size_t n_appended_tokens = 0;      // tokens its appended text added (fork_append_generate)
};

class text_session {
public:
    virtual ~text_session() = default;

    // Feeds text into the context after what is already there.
    virtual void append(std::string_view text) = 0;

    // Samples a continuation of the current context. The generated tokens, including a matched
    // stop string, become part of the context; the returned text excludes the stop string.
    virtual generation_result generate(const generation_options& options, const text_callback& on_text = {}) = 0;

    // An independent session with the same context, sharing no mutable state with this one.
    virtual std::unique_ptr<text_session> fork() const = 0;

    // options.size() continuations of this context, each in its own fork: result i is what
    // fork()->generate(options[i]) returns and session i is that fork afterwards. This default runs
    // them one after another; a model-backed session decodes them together, one batch per step
    // over the shared prompt (model_session, generate/parallel_generation.hpp).
    virtual std::vector<forked_generation> fork_generate(std::span<const generation_options> options) const {
        std::vector<forked_generation> out;
        for (const auto& o : options) {
            auto s = fork();
            auto r = s->generate(o);
            out.push_back({std::move(s), std::move(r)});
        }
        return out;
    }

    // Path i: a fork of this context, appends[i] appended to it, then options[i] generated there,
    // i.e. what fork(), append(appends[i]) and generate(options[i]) return. Several prompts
    // that share this context's prefix (N questions after one set of instructions), answered
    // together: a model-backed session prefills the appends in one batch and decodes the paths
    // together. This default runs them one after another.
    virtual std::vector<forked_generation> fork_append_generate(std::span<const std::string> appends,
                                                                std::span<const generation_options> options) const {
        check_path_counts(appends.size(), options.size(), "fork_append_generate");
        std::vector<forked_generation> out;
        for (std::size_t i = 0; i < options.size(); ++i) {
            auto s = fork();
            const std::size_t before = s->n_tokens();
            s->append(appends[i]);
            const std::size_t n_appended = s->n_tokens() - before;
            auto r = s->generate(options[i]);
            out.push_back({std::move(s), std::move(r), n_appended});
        }
        return out;
    }

    // For every i: sessions[i]->append(appends[i]), then sessions[i]->generate(options[i]), with
    // `this` being sessions[0] (called through minigpt::append_generate_each). The default runs
    // them one after another; model_session decodes them together when every session is a
    // model_session of the same model.
    virtual std::vector<generation_result> append_generate_together(std::span<text_session* const> sessions,
                                                                    std::span<const std::string> appends,
                                                                    std::span<const generation_options> options) {
        check_path_counts(appends.size(), options.size(), "append_generate_each");
        check_path_counts(sessions.size(), options.size(), "append_generate_each");
        std::vector<generation_result> out;
        for (std::size_t i = 0; i < sessions.size(); ++i) {
            sessions[i]->append(appends[i]);
            out.push_back(sessions[i]->generate(options[i]));
        }
        return out;
    }

    // Tokens in the context now, the context's capacity, and the token count of a text.
    virtual std::size_t n_tokens() const = 0;
    virtual std::size_t n_ctx() const = 0;
    virtual std::size_t count_tokens(std::string_view text) const = 0;

    // Everything appended or generated so far, as text.
    virtual std::string transcript() const = 0;

protected:
    static void check_path_counts(std::size_t n_a, std::size_t n_b, const char* fn) {
        if (n_a != n_b) throw error(std::string(fn) + ": " + std::to_string(n_a) + " texts or sessions for " + std::to_string(n_b) + " generations");
    }
};

// Continues several sessions at once: sessions[i] gets appends[i] and then generates options[i]
// (e.g. the forks of self-consistency each asked for its answer). The sessions must be distinct;
// model_sessions of one model decode together, one batch per step.
inline std::vector<generation_result> append_generate_each(std::span<text_session* const> sessions, std::span<const std::string> appends,
                                                           std::span<const generation_options> options) {
    if (sessions.empty()) {
        if (!appends.empty() || !options.empty()) throw error("append_generate_each: texts or generations but no sessions");
        return {};
    }
    for (std::size_t i = 0; i < sessions.size(); ++i) {
        if (!sessions[i]) throw error("append_generate_each: session " + std::to_string(i) + " is null");
        for (std::size_t j = 0; j < i; ++j)
            if (sessions[j] == sessions[i]) throw error("append_generate_each: sessions " + std::to_string(j) + " and " + std::to_string(i) + " are the same");
    }
    return sessions[0]->append_generate_together(sessions, appends, options);
}

}  // namespace minigpt

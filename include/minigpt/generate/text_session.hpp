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

    // Tokens in the context now, the context's capacity, and the token count of a text.
    virtual std::size_t n_tokens() const = 0;
    virtual std::size_t n_ctx() const = 0;
    virtual std::size_t count_tokens(std::string_view text) const = 0;

    // Everything appended or generated so far, as text.
    virtual std::string transcript() const = 0;
};

}  // namespace minigpt

// What a program needs to call generate(): a model with its tokenizer (llm), the generation
// controls and what comes back. The loop itself is in generate/generation.hpp.
//
// Light on purpose: with MINIGPT_SEPARATE_COMPILATION (core/api.hpp) a program's translation units
// see only these declarations and the context's (model/context_decl.hpp), and <minigpt/src.hpp>
// compiles the definitions once. Header-only programs get the definitions from the same include.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/api.hpp"
#include "minigpt/generate/logprobs.hpp"
#include "minigpt/generate/sampling_params.hpp"
#include "minigpt/generate/text_session.hpp"
#include "minigpt/model/context_decl.hpp"

namespace minigpt {

class model;
class tokenizer;

// A model with its tokenizer: what a program loads to generate text.
struct llm {
    std::shared_ptr<const model> weights;
    std::shared_ptr<const tokenizer> vocab;

    // The tokenizer is found as text/tokenizer_loader.hpp describes: the GGUF's own vocabulary, or for a
    // llama2.c .bin `tokenizer_path`, else tokenizer.bin beside it, else a synthetic byte-level vocabulary.
    MINIGPT_API static llm load(const std::string& path, const std::string& tokenizer_path = {});
};

enum class context_full_policy { stop, shift };

struct generation_params {
    std::int32_t max_tokens = 128;          // < 0: until EOS / stop / full context
    std::vector<std::string> stop;          // stop strings
    sampling_params sampling;
    bool add_bos = true;                    // add BOS when the context is empty and the vocabulary wants it
    bool ignore_eos = false;                // keep going past end-of-generation tokens
    context_full_policy on_full = context_full_policy::stop;
    std::int32_t n_keep = -1;               // tokens kept at a shift; -1: the whole prompt
    // Log-probabilities (generate/logprobs.hpp: the model's distribution, before the sampler chain):
    // < 0 none; 0 the chosen token's only; N also the N most likely tokens at each step.
    std::int32_t n_logprobs = -1;
};

struct generation_stats {
    std::int64_t n_prompt_tokens = 0;
    std::int64_t n_generated = 0;
    double prompt_seconds = 0;              // prefill time
    double generation_seconds = 0;          // time spent producing the generated tokens after the first
    double time_to_first_token = 0;         // from the call to the first sampled token
    double prompt_tokens_per_second() const { return prompt_seconds > 0 ? n_prompt_tokens / prompt_seconds : 0; }
    double generation_tokens_per_second() const {
        return generation_seconds > 0 && n_generated > 1 ? (n_generated - 1) / generation_seconds : 0;
    }
};

struct generation_output {
    std::string text;                       // generated text (stop string excluded)
    std::vector<std::int32_t> tokens;       // generated tokens (including those of a matched stop string)
    stop_reason reason = stop_reason::max_tokens;
    std::string stop_string;
    generation_stats stats;
    std::vector<token_logprobs> logprobs;   // one per generated token when generation_params::n_logprobs >= 0
};

// Receives each token id with the text it completes (may be empty while a UTF-8 character or a
// possible stop string is pending); return false to stop.
using token_callback = std::function<bool(std::int32_t token, std::string_view text)>;

// Tokenises `prompt` (BOS added when the context is empty and the vocabulary asks for it) and generates.
MINIGPT_API generation_output generate(const llm& lm, context& ctx, std::string_view prompt, const generation_params& params,
                                       const token_callback& on_token = {});

}  // namespace minigpt

// A header-only program gets the definitions with the declarations.
#if !defined(MINIGPT_SEPARATE_COMPILATION)
#include "minigpt/generate/generation.hpp"
#endif

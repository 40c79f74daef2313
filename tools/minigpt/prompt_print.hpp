// --verbose-prompt: prints a prompt's token ids and pieces on stderr in llama.cpp's format
// ("%6d -> '%s'" per token, after the prompt and its token count).
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string_view>

#include "minigpt/text/tokenizer.hpp"

namespace minigpt::tool {

inline void print_prompt_tokens(const tokenizer& tok, std::string_view prompt, std::span<const std::int32_t> ids) {
    std::fprintf(stderr, "\nprompt: '%.*s'\n", static_cast<int>(prompt.size()), prompt.data());
    std::fprintf(stderr, "number of tokens in prompt = %zu\n", ids.size());
    for (const std::int32_t id : ids) {
        const std::string& piece = tok.token_to_piece(id);
        std::fprintf(stderr, "%6d -> '%.*s'\n", id, static_cast<int>(piece.size()), piece.data());
    }
    std::fprintf(stderr, "\n");
}

}  // namespace minigpt::tool

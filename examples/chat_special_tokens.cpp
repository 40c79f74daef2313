// Chat prompts with control tokens: the template's markers become special tokens, but a user who
// types a marker gets plain text (minigpt::tokenizer::encode_with_literals). Prints both ways.
//
//   example_chat_special_tokens MODEL.gguf chatml "hi<|im_end|>"
#include <cstdio>
#include <exception>

#include "minigpt/text.hpp"
#include "minigpt/text/chat_template.hpp"

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL.gguf TEMPLATE-NAME USER-MESSAGE\n", argv[0]);
        return 2;
    }
    try {
        const auto tok = minigpt::tokenizer::from_gguf(minigpt::io::gguf_file::open(argv[1]));
        const auto tmpl = minigpt::chat_template::from_name(argv[2]);
        const minigpt::chat_prompt prompt = tmpl.render({{"user", argv[3]}});
        const auto safe = tok.encode_with_literals(prompt.text, tok.add_bos_default(), true, prompt.content);
        const auto naive = tok.encode(prompt.text, tok.add_bos_default(), true);
        std::printf("prompt: %s\n", prompt.text.c_str());
        std::printf("content parsed as text (%zu tokens):\n", safe.size());
        for (const auto id : safe) std::printf("%6d -> '%s'\n", id, tok.token_to_piece(id).c_str());
        std::printf("whole prompt parsed, as llama.cpp does (%zu tokens):\n", naive.size());
        for (const auto id : naive) std::printf("%6d -> '%s'\n", id, tok.token_to_piece(id).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

// The words a byte-level BPE pre-tokenizer cuts a text into, for any tokenizer.ggml.pre name
// llama.cpp knows (llama-bpe, qwen2, deepseek-llm, starcoder, tekken, ...).
//
//   example_pretokenize llama-bpe "Hello world's 12345 日本語"
#include <cstdio>
#include <exception>

#include "minigpt/text/pretokenizer.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s PRE-TOKENIZER-NAME TEXT\n", argv[0]);
        return 2;
    }
    try {
        const minigpt::unicode::pretokenizer pre(minigpt::unicode::pre_spec_for(argv[1]));
        pre.split(argv[2], [](std::string_view word) { std::printf("'%.*s'\n", static_cast<int>(word.size()), word.data()); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

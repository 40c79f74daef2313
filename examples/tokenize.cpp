// Smallest use of minigpt's tokenizer: encode a text with a GGUF file's vocabulary, show each
// token, and decode the ids back.
//
//   example_tokenize ../shared/vocab/ggml-vocab-gpt-2.gguf "Hello, world! 你好"
#include <cstdio>
#include <exception>

#include "minigpt/text.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL.gguf TEXT\n", argv[0]);
        return 2;
    }
    try {
        const auto tok = minigpt::tokenizer::from_gguf(minigpt::io::gguf_file::open(argv[1]));
        const auto ids = tok.encode(argv[2], tok.add_bos_default());
        for (const auto id : ids) std::printf("%6d  '%s'\n", id, tok.token_to_piece(id).c_str());
        std::printf("%zu tokens; decoded: %s\n", ids.size(), tok.decode(ids).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

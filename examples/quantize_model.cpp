// Quantise a GGUF model as llama-quantize does, then report the type of each tensor.
// Usage: example_quantize_model IN.gguf OUT.gguf [TYPE (default Q4_K_M)]
#include <cstdio>
#include <exception>
#include <map>
#include <string>

#include "minigpt/io/gguf_quantize.hpp"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s IN.gguf OUT.gguf [TYPE]\n", argv[0]);
        return 2;
    }
    try {
        const auto& ftype = minigpt::io::parse_ftype(argc > 3 ? argv[3] : "Q4_K_M");
        minigpt::io::quantize_gguf(argv[1], argv[2], ftype, {.verbose = false});
        std::map<std::string, int> per_type;
        const auto out = minigpt::io::gguf_file::open(argv[2]);  // named: a range-for over a temporary's member dangles
        for (const auto& t : out.tensors()) ++per_type[std::string(minigpt::dtype_name(t.type))];
        std::printf("%s (%s):", argv[2], std::string(ftype.name).c_str());
        for (const auto& [type, n] : per_type) std::printf(" %d x %s", n, type.c_str());
        std::printf("\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

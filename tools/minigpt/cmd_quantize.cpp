// `minigpt quantize IN.gguf OUT.gguf TYPE`: llama-quantize's file types and per-tensor choices
// (io/gguf_quantize.hpp), printing one line per tensor as llama-quantize does.
#include <cstdio>
#include <iostream>

#include "command.hpp"
#include "minigpt/io/gguf_quantize.hpp"

namespace minigpt::tool {
namespace {

int run_quantize(const std::vector<std::string>& args) {
    flags f("usage: minigpt quantize [--allow-requantize] [-t N] [--quiet] IN.gguf OUT.gguf TYPE\n"
            "  TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS F16 BF16 F32");
    f.boolean({"--allow-requantize"}, "allow quantising tensors that are already quantised (quality suffers)")
        .boolean({"--quiet"}, "no per-tensor lines (a progress bar on a terminal instead)")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .allow_positional("IN.gguf OUT.gguf TYPE      the model to read, the file to write, the llama-quantize type name");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    const auto& pos = f.positional();
    if (pos.size() != 3) throw usage_error("expected IN.gguf OUT.gguf TYPE");
    const auto& ftype = io::parse_ftype(pos[2]);
    io::quantize_gguf(pos[0], pos[1], ftype,
                      {.n_threads = static_cast<int>(f.integer("--threads")), .allow_requantize = f.has("--allow-requantize"), .verbose = !f.has("--quiet")});
    std::fprintf(stderr, "wrote %s (%s)\n", pos[1].c_str(), std::string(ftype.name).c_str());
    return 0;
}

const register_command reg_quantize("quantize", "convert a GGUF model to a llama-quantize type (Q4_K_M, Q5_K_M, Q8_0, IQ4_XS, ...)", run_quantize);

}  // namespace
}  // namespace minigpt::tool

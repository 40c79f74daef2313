// `minigpt synth`: write a random-weight model with the standard GGUF keys and tensor
// names (presets shaped like real models), for tests and benchmarks.
#include <cstdio>
#include <iostream>

#include "command.hpp"
#include "sampling_flags.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_gguf.hpp"

namespace minigpt::tool {
namespace {

int run_synth(const std::vector<std::string>& args) {
    flags f("usage: minigpt synth --arch ARCH --preset NAME --type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k -o OUT.gguf [--vocab VOCAB.gguf] [--seed N]");
    f.value({"--arch"}, "architecture: " + architecture_names(), "llama")
        .value({"--preset"}, "shape preset: tiny (every architecture), small (llama), gpt2-124m (gpt2), llama-360m (llama)", "tiny")
        .value({"--type"}, "element type of the 2-D weights", "f32")
        .value({"-o", "--output"}, "output GGUF file")
        .value({"--vocab"}, "copy tokenizer.* metadata from this GGUF (e.g. a vocab-only file)")
        .value({"--seed"}, "random seed", "1")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    const std::string arch = f.str("--arch");
    if (!find_architecture(arch)) throw usage_error("--arch must be one of: " + architecture_names());
    const auto preset = find_synth_preset(arch, f.str("--preset"));
    const dtype type = parse_dtype(f.str("--type"));
    const std::string out = f.require("--output");

    io::gguf_writer w(out);
    std::int64_t n_vocab = 0;
    if (f.has("--vocab")) {
        const auto vocab = io::gguf_file::open(f.str("--vocab"));
        w.copy_metadata_from(vocab, "tokenizer.");
        n_vocab = static_cast<std::int64_t>(vocab.get<std::vector<std::string>>("tokenizer.ggml.tokens").size());
    } else {
        write_vocab(w, synthetic_vocab(static_cast<std::int32_t>(preset.n_vocab)));
    }
    const auto c = synthesize(w, preset, type, static_cast<std::uint64_t>(f.integer("--seed")), n_vocab,
                              read_threads(f));
    w.finish();
    std::fprintf(stderr, "wrote %s: %s, %s weights\n", out.c_str(), c.summary().c_str(), std::string(dtype_name(type)).c_str());
    return 0;
}

const register_command reg_synth("synth", "write a random-weight model (presets: tiny, gpt2-124m, llama-360m, ...)", run_synth);

}  // namespace
}  // namespace minigpt::tool

// `minigpt logits`: teacher-forced logits of a token sequence, for comparison with
// reference implementations. Writes n_ids x n_vocab little-endian float32.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <vector>

#include "command.hpp"
#include "sampling_flags.hpp"
#include "minigpt/model/context.hpp"
#include "lora_flags.hpp"
#include "tool_io.hpp"

namespace minigpt::tool {
namespace {

int run_logits(const std::vector<std::string>& args) {
    flags f(std::string("usage: minigpt logits -m MODEL --ids FILE -o OUT.f32 [-t THREADS]") + lora_usage);
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"--ids"}, "whitespace-separated token ids")
        .value({"-o", "--output"}, "output file: n_ids x n_vocab float32")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .value({"-b", "--batch-size"}, "tokens per forward chunk", "512");
    lora_args lora;
    f.parse(lora.take(args));
    if (f.help()) { std::cout << f.usage(); return 0; }
    const auto ids = parse_ids(read_file(f.require("--ids")), f.str("--ids"));
    if (ids.empty()) throw error("no token ids in " + f.str("--ids"));
    auto m = model::load(f.require("--model"));
    // Exactly the positions fed: the model's whole training context could be 2^24 positions of KV cache.
    context ctx(m, {.n_ctx = static_cast<std::int64_t>(ids.size()), .n_batch = read_batch(f), .n_threads = read_threads(f)});
    if (!lora.empty()) ctx.set_adapters(lora.load());
    ctx.decode(ids, logits_for::all);
    const std::string out = f.require("--output");
    std::ofstream os(out, std::ios::binary);
    if (!os) throw error("cannot write " + out);
    os.write(reinterpret_cast<const char*>(ctx.logits().data()), static_cast<std::streamsize>(ctx.logits().size() * sizeof(float)));
    if (!os) throw error("error writing " + out);
    std::fprintf(stderr, "wrote %zu x %lld logits to %s\n", ids.size(), static_cast<long long>(m->config().n_vocab), out.c_str());
    return 0;
}

const register_command reg_logits("logits", "teacher-forced logits of token ids, written as float32", run_logits);

}  // namespace
}  // namespace minigpt::tool

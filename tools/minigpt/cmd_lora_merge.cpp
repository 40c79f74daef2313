// `minigpt lora-merge`: a base GGUF with LoRA adapters merged into its weights (llama.cpp's
// export-lora): -m BASE --lora A.gguf [--lora-scaled B.gguf 0.5] -o MERGED.gguf [--type q8_0].
#include <cstdio>
#include <iostream>

#include "command.hpp"
#include "lora_flags.hpp"
#include "minigpt/model/lora_merge.hpp"

namespace minigpt::tool {
namespace {

int run_lora_merge(const std::vector<std::string>& args) {
    flags f(std::string("usage: minigpt lora-merge -m BASE.gguf -o MERGED.gguf [--type TYPE]") + lora_usage);
    f.value({"-m", "--model"}, "base model (GGUF)")
        .value({"-o", "--output"}, "merged model to write")
        .value({"--type"}, "element type of the merged matrices (f32, f16, bf16, q8_0, ...); default: each keeps its type");
    lora_args lora;
    f.parse(lora.take(args));
    if (f.help()) { std::cout << f.usage(); return 0; }
    if (lora.empty()) throw usage_error("lora-merge needs at least one --lora or --lora-scaled adapter");
    const std::string out = f.require("--output");
    lora_merge_options options;
    if (f.has("--type")) options.out_type = parse_dtype(f.str("--type"));
    auto m = model::load(f.require("--model"));
    merge_lora(*m, lora.load(), out, options);
    std::fprintf(stderr, "minigpt lora-merge: wrote %s (%zu adapter%s merged)\n", out.c_str(), lora.files.size(),
                 lora.files.size() == 1 ? "" : "s");
    return 0;
}

const register_command reg_lora_merge("lora-merge", "merge LoRA adapters into a base model's weights (export-lora)", run_lora_merge);

}  // namespace
}  // namespace minigpt::tool

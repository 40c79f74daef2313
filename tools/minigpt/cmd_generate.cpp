// `minigpt generate`: stream a continuation of a prompt, with llama-cli's flags.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cache_flags.hpp"
#include "command.hpp"
#include "minigpt/generate/generation.hpp"
#include "sampling_flags.hpp"
#include "tool_io.hpp"

namespace minigpt::tool {
namespace {

int run_generate(const std::vector<std::string>& args) {
    flags f("usage: minigpt generate -m MODEL (-p TEXT | -f FILE | --ids FILE) [-n N] [--temp T] [--top-k K] [--top-p P]\n"
            "                        [--min-p P] [--repeat-penalty R] [--seed S] [-t THREADS] [-c N_CTX] [-r STOP]...");
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"-p", "--prompt"}, "prompt text")
        .value({"-f", "--file"}, "read the prompt from a file")
        .value({"--ids"}, "read the prompt as whitespace-separated token ids; print generated ids")
        .value({"-n", "--n-predict"}, "tokens to generate (-1: until end of generation or a full context)", "128")
        .value({"-c", "--ctx-size"}, "context size (0: the model's)", "0")
        .value({"-b", "--batch-size"}, "prompt tokens per forward chunk", "512")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .value({"-r", "--reverse-prompt"}, "stop string (a string that ends generation)")
        .value({"--tokenizer"}, "tokenizer for a llama2.c model (tokenizer.bin or a GGUF)")
        .value({"--cache-type"}, "KV cache type: f32 or f16", "f32")
        .boolean({"--ignore-eos"}, "keep generating past end-of-generation tokens")
        .boolean({"--no-bos"}, "do not add BOS to the prompt")
        .boolean({"--context-shift"}, "when the context fills, drop the oldest half (after the prompt) and go on")
        .boolean({"--print-ids"}, "print generated token ids instead of text")
        .boolean({"--no-stats"}, "do not print timings on stderr");
    declare_sampling_flags(f);
    declare_cache_flags(f);
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }

    const llm lm = llm::load(f.require("--model"), f.str("--tokenizer"));
    context ctx(lm.weights, {.n_ctx = f.integer("--ctx-size"),
                             .n_batch = f.integer("--batch-size"),
                             .kv_type = parse_dtype(f.str("--cache-type")),
                             .n_threads = static_cast<int>(f.integer("--threads"))});
    generation_params gp;
    gp.max_tokens = static_cast<std::int32_t>(f.integer("--n-predict"));
    gp.sampling = read_sampling_flags(f);
    gp.ignore_eos = f.on("--ignore-eos");
    gp.add_bos = !f.on("--no-bos");
    gp.on_full = f.on("--context-shift") ? context_full_policy::shift : context_full_policy::stop;
    if (f.has("--reverse-prompt")) gp.stop.push_back(f.str("--reverse-prompt"));

    const bool ids_mode = f.has("--ids") || f.on("--print-ids");
    std::vector<std::int32_t> prompt_ids;
    if (f.has("--ids")) {
        prompt_ids = parse_ids(read_file(f.str("--ids")), f.str("--ids"));
    } else {
        std::string prompt = f.has("--file") ? read_file(f.str("--file")) : f.str("--prompt");
        prompt_ids = lm.vocab->encode(prompt, gp.add_bos && lm.vocab->add_bos_default());
        std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    }
    if (prompt_ids.empty()) throw usage_error("empty prompt: give -p TEXT, -f FILE or --ids FILE (BOS alone needs a vocabulary with BOS)");

    std::vector<std::int32_t> history;
    sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    bool first_id = true;
    cache_state caches;
    auto out = generate_cached(f, caches, lm, ctx, history, prompt_ids, gp, smp, [&](std::int32_t id, std::string_view text) {
        if (ids_mode) {
            if (id >= 0) std::printf(first_id ? "%d" : " %d", id);
            first_id = false;
        } else {
            std::fwrite(text.data(), 1, text.size(), stdout);
        }
        std::fflush(stdout);
        return true;
    });
    std::printf("\n");
    if (!f.on("--no-stats")) {
        const auto& s = out.stats;
        std::fprintf(stderr, "\nprompt eval: %lld tokens, %.2f ms, %.2f tokens/s\n", static_cast<long long>(s.n_prompt_tokens),
                     s.prompt_seconds * 1e3, s.prompt_tokens_per_second());
        std::fprintf(stderr, "generation:  %lld tokens, %.2f ms, %.2f tokens/s; time to first token %.2f ms\n",
                     static_cast<long long>(s.n_generated), (s.generation_seconds) * 1e3, s.generation_tokens_per_second(),
                     s.time_to_first_token * 1e3);
        const char* why[] = {"max tokens", "end of generation", "stop string", "callback", "context full"};
        std::fprintf(stderr, "stopped by: %s; seed %llu\n", why[static_cast<int>(out.reason)], static_cast<unsigned long long>(smp.seed()));
        print_cache_stats(caches);
    }
    return 0;
}

const register_command reg("generate", "generate text from a prompt (streams to stdout)", run_generate);

}  // namespace
}  // namespace minigpt::tool

// `minigpt generate`: stream a continuation of a prompt, with llama-cli's flags.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cache_flags.hpp"
#include "command.hpp"
#include "lora_flags.hpp"
#include "minigpt/generate/generation.hpp"
#include "prompt_print.hpp"
#include "sampling_flags.hpp"
#include "knn_flags.hpp"
#include "speculative_flags.hpp"
#include "tool_io.hpp"

namespace minigpt::tool {
namespace {

// A token's text as a quoted, escaped string (pieces can hold newlines or control bytes).
std::string quoted_piece(const tokenizer& tok, std::int32_t id) {
    std::string q = "'";
    for (const unsigned char c : tok.decode(std::span(&id, 1))) {
        if (c == '\'' || c == '\\') { q += '\\'; q += static_cast<char>(c); }
        else if (c == '\n') q += "\\n";
        else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\x%02x", c); q += b; }
        else q += static_cast<char>(c);
    }
    return q + "'";
}

// One line per generated token on stderr: id, text, log-probability, then the alternatives.
void print_logprobs(const tokenizer& tok, const std::vector<token_logprobs>& lps) {
    std::fprintf(stderr, "\nlogprobs (the model's distribution before sampling; natural log):\n");
    for (std::size_t i = 0; i < lps.size(); ++i) {
        const auto& t = lps[i];
        std::fprintf(stderr, "%4zu %6d %-16s %10.6f", i, t.id, quoted_piece(tok, t.id).c_str(), t.logprob);
        if (!t.top.empty()) std::fprintf(stderr, " | top:");
        for (const auto& a : t.top) std::fprintf(stderr, " %d %s %.6f", a.id, quoted_piece(tok, a.id).c_str(), a.logprob);
        std::fprintf(stderr, "\n");
    }
}

volatile std::sig_atomic_t g_generate_interrupted = 0;

// First Ctrl-C: stop generating (the timings are still printed); a second one ends the program.
void on_generate_sigint(int) {
    if (g_generate_interrupted) {
        std::signal(SIGINT, SIG_DFL);
        std::raise(SIGINT);
    }
    g_generate_interrupted = 1;
}

int run_generate(const std::vector<std::string>& args) {
    flags f("usage: minigpt generate -m MODEL (-p TEXT | -f FILE | --ids FILE | TEXT) [-n N] [--temp T] [--top-k K] [--top-p P]\n"
            "                        [--min-p P] [--repeat-penalty R] [--seed S] [-t THREADS] [-c N_CTX] [-r STOP]...\n"
            "Ctrl-C stops generating and prints the timings.");
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"-p", "--prompt"}, "prompt text")
        .value({"-f", "--file"}, "read the prompt from a file")
        .value({"--ids"}, "read the prompt as whitespace-separated token ids; print generated ids")
        .value({"-n", "--n-predict"}, "tokens to generate (-1: until end of generation or a full context)", "128")
        .value({"-c", "--ctx-size"}, "context size (0: the model's, at most 4096)", "0")
        .value({"-b", "--batch-size"}, "prompt tokens per forward chunk", "512")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .value({"-r", "--reverse-prompt"}, "stop string (a string that ends generation); repeat for several")
        .value({"--tokenizer"}, "tokenizer for a llama2.c model (tokenizer.bin or a GGUF)")
        .value({"--cache-type"}, "KV cache type: f32 or f16", "f32")
        .value({"--logprobs"}, "print each generated token's log-probability and the N most likely tokens (stderr)")
        .boolean({"--ignore-eos"}, "keep generating past end-of-generation tokens")
        .boolean({"--no-bos"}, "do not add BOS to the prompt")
        .boolean({"--context-shift"}, "when the context fills, drop the oldest half (after the prompt) and go on")
        .boolean({"--print-ids"}, "print generated token ids instead of text")
        .boolean({"--parse-special"}, "turn special-token text in the prompt (e.g. <|im_start|>) into the special tokens")
        .boolean({"--verbose-prompt"}, "print the prompt's token ids and pieces on stderr")
        .boolean({"--no-stats"}, "do not print timings on stderr")
        .allow_positional("TEXT                        the prompt, as -p TEXT (several words are joined by spaces)");
    declare_sampling_flags(f);
    declare_speculative_flags(f);
    declare_knn_flags(f);
    declare_cache_flags(f);
    lora_args lora;
    f.parse(lora.take(args));
    if (f.help()) { std::cout << f.usage(); return 0; }

    // Everything the command line decides is checked before the model is loaded or anything printed.
    const int n_prompt_sources = (f.has("--prompt") ? 1 : 0) + (f.has("--file") ? 1 : 0) + (f.has("--ids") ? 1 : 0) +
                                 (f.positional().empty() ? 0 : 1);
    if (n_prompt_sources > 1) throw usage_error("give one prompt: -p TEXT, -f FILE, --ids FILE or a positional TEXT");
    const std::string model_path = f.require("--model");
    const std::int64_t n_ctx = read_ctx(f);
    const std::int64_t n_batch = read_batch(f);
    const int n_threads = read_threads(f);
    const dtype kv_type = parse_dtype(f.str("--cache-type"));
    if (kv_type != dtype::f32 && kv_type != dtype::f16) throw usage_error("--cache-type must be f32 or f16");
    generation_params gp;
    gp.max_tokens = read_n_predict(f);
    gp.sampling = read_sampling_flags(f);
    gp.ignore_eos = f.on("--ignore-eos");
    gp.add_bos = !f.on("--no-bos");
    gp.on_full = f.on("--context-shift") ? context_full_policy::shift : context_full_policy::stop;
    for (const auto& r : f.all("--reverse-prompt")) {
        if (r.empty()) throw usage_error("-r: a stop string cannot be empty");
        gp.stop.push_back(r);
    }
    if (f.has("--logprobs")) {
        gp.n_logprobs = static_cast<std::int32_t>(f.integer("--logprobs"));
        if (gp.n_logprobs < 0 || gp.n_logprobs > 100) throw usage_error("--logprobs: N must be in [0, 100]");
    }
    std::string prompt;
    if (f.has("--file")) prompt = read_file(f.str("--file"));
    else if (f.has("--prompt")) prompt = f.str("--prompt");
    else
        for (const auto& word : f.positional()) prompt += (prompt.empty() ? "" : " ") + word;
    const std::string ids_text = f.has("--ids") ? read_file(f.str("--ids")) : std::string();

    const llm lm = llm::load(model_path, f.str("--tokenizer"));
    context ctx(lm.weights, {.n_ctx = n_ctx, .n_batch = n_batch, .kv_type = kv_type, .n_threads = n_threads});
    if (!lora.empty()) ctx.set_adapters(lora.load());

    const bool ids_mode = f.has("--ids") || f.on("--print-ids");
    std::vector<std::int32_t> prompt_ids;
    if (f.has("--ids")) {
        prompt_ids = parse_ids(ids_text, f.str("--ids"));
    } else {
        prompt_ids = lm.vocab->encode(prompt, gp.add_bos && lm.vocab->add_bos_default(), f.on("--parse-special"));
        if (f.on("--verbose-prompt")) print_prompt_tokens(*lm.vocab, prompt, prompt_ids);
    }
    if (prompt_ids.empty()) throw usage_error("empty prompt: give -p TEXT, -f FILE or --ids FILE (BOS alone needs a vocabulary with BOS)");

    // The prompt is echoed once the prefill has succeeded (with the first token), so an error about the
    // prompt (too long for the context, an id out of range) is the only thing printed.
    bool echoed = ids_mode;
    auto echo = [&] {
        if (!echoed) std::fwrite(prompt.data(), 1, prompt.size(), stdout);
        echoed = true;
    };
    g_generate_interrupted = 0;
    std::signal(SIGINT, on_generate_sigint);
    std::vector<std::int32_t> history;
    sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    const auto knn_stage = make_knn_stage(f, ctx, static_cast<int>(f.integer("--threads")));
    if (knn_stage) knn_stage->install(smp);
    bool first_id = true;
    const token_callback print = [&](std::int32_t id, std::string_view text) {
        echo();
        if (ids_mode) {
            if (id >= 0) std::printf(first_id ? "%d" : " %d", id);
            first_id = false;
        } else {
            std::fwrite(text.data(), 1, text.size(), stdout);
        }
        std::fflush(stdout);
        return g_generate_interrupted == 0;
    };
    speculative_output spec;
    cache_state caches;
    const bool speculative = speculative_requested(f);
    if (speculative && knn_stage) throw usage_error("--knn cannot be combined with speculative decoding");
    if (speculative && (f.has("--cache") || f.has("--prompt-cache")))
        throw usage_error("--cache and --prompt-cache cannot be combined with speculative decoding");
    if (knn_stage && f.has("--cache")) throw usage_error("--cache cannot be combined with --knn");
    if (speculative) {
        auto drafter = make_draft_source(f, ctx, gp.sampling);
        spec = generate_speculative(ctx, *lm.vocab, history, prompt_ids, gp, smp, *drafter, read_speculative_flags(f), print);
    } else {
        spec.out = generate_cached(f, caches, lm, ctx, history, prompt_ids, gp, smp, print, lora.identities());
    }
    const auto& out = spec.out;
    std::signal(SIGINT, SIG_DFL);
    echo();
    std::printf("\n");
    std::fflush(stdout);
    if (!out.logprobs.empty()) print_logprobs(*lm.vocab, out.logprobs);
    if (!f.on("--no-stats")) {
        const auto& s = out.stats;
        std::fprintf(stderr, "\nprompt eval: %lld tokens, %.2f ms, %.2f tokens/s\n", static_cast<long long>(s.n_prompt_tokens),
                     s.prompt_seconds * 1e3, s.prompt_tokens_per_second());
        std::fprintf(stderr, "generation:  %lld tokens, %.2f ms, %.2f tokens/s; time to first token %.2f ms\n",
                     static_cast<long long>(s.n_generated), (s.generation_seconds) * 1e3, s.generation_tokens_per_second(),
                     s.time_to_first_token * 1e3);
        if (speculative) print_speculative_stats(spec.spec);
        if (knn_stage) print_knn_stats(knn_stage->stats());
        const char* why[] = {"max tokens", "end of generation", "stop string", "callback", "context full"};
        const std::string reason = g_generate_interrupted ? "interrupted (Ctrl-C)"
                                   : out.reason == stop_reason::stop_string ? "stop string '" + out.stop_string + "'"
                                                                            : why[static_cast<int>(out.reason)];
        std::fprintf(stderr, "stopped by: %s; seed %llu\n", reason.c_str(), static_cast<unsigned long long>(smp.seed()));
        print_cache_stats(caches);
    }
    return 0;
}

const register_command reg_generate("generate", "generate text from a prompt (streams to stdout)", run_generate);

}  // namespace
}  // namespace minigpt::tool

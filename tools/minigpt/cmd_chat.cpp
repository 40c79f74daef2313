// `minigpt chat`: an interactive conversation using the model's chat template (detected
// from the GGUF `tokenizer.chat_template`, or named with --chat-template), else a plain
// "user: ... / assistant:" format. Each turn re-renders the whole conversation and
// reuses the KV cache for the longest token prefix already evaluated, so only the new
// turn is computed (prompt-prefix KV reuse).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <tuple>
#include <utility>

#include "command.hpp"
#include "lora_flags.hpp"
#include "minigpt/generate/generation.hpp"
#include "minigpt/text/chat_template.hpp"
#include "prompt_print.hpp"
#include "sampling_flags.hpp"

namespace minigpt::tool {
namespace {

chat_template pick_template(const llm& lm, const std::string& name) {
    if (!name.empty()) return chat_template::from_name(name);
    const std::string& jinja = lm.vocab->chat_template();
    if (!jinja.empty()) {
        if (auto family = chat_template::detect(jinja)) return chat_template(*family);
        std::fprintf(stderr, "minigpt chat: the model's chat template is not a known family; using a plain format\n");
    }
    return chat_template::custom(custom_chat_format{});
}

volatile std::sig_atomic_t g_replying = 0;
volatile std::sig_atomic_t g_chat_interrupted = 0;

// Ctrl-C while the model replies stops the reply and returns to the prompt (as llama-cli's
// interactive mode); at the prompt it ends the program.
void on_chat_sigint(int) {
    if (!g_replying) {
        std::signal(SIGINT, SIG_DFL);
        std::raise(SIGINT);
        return;
    }
    g_chat_interrupted = 1;
}

int run_chat(const std::vector<std::string>& args) {
    flags f("usage: minigpt chat -m MODEL [--chat-template NAME] [-sys TEXT] [-n N] [--temp T] ...\n"
            "Type a message and press enter; an empty line or end of input quits. Ctrl-C stops a reply.");
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"--chat-template"}, "template name: chatml, llama2, llama3, mistral, gemma, phi3, zephyr")
        .value({"-sys", "--system-prompt"}, "system message")
        .value({"-n", "--n-predict"}, "tokens per reply at most (-1: no limit)", "256")
        .value({"-c", "--ctx-size"}, "context size (0: the model's, at most 4096)", "0")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .value({"--tokenizer"}, "tokenizer for a llama2.c model")
        .boolean({"--verbose-prompt"}, "print each turn's prompt token ids and pieces on stderr");
    declare_sampling_flags(f);
    lora_args lora;
    f.parse(lora.take(args));
    if (f.help()) { std::cout << f.usage(); return 0; }

    const std::string model_path = f.require("--model");
    const std::int64_t n_ctx = read_ctx(f);
    const int n_threads = read_threads(f);
    generation_params gp;
    gp.max_tokens = read_n_predict(f);
    gp.sampling = read_sampling_flags(f);
    const llm lm = llm::load(model_path, f.str("--tokenizer"));
    const chat_template tmpl = pick_template(lm, f.str("--chat-template"));
    context ctx(lm.weights, {.n_ctx = n_ctx, .n_threads = n_threads});
    if (!lora.empty()) ctx.set_adapters(lora.load());
    std::vector<chat_message> messages;
    if (f.has("--system-prompt")) messages.push_back({"system", f.str("--system-prompt")});
    gp.stop = {tmpl.end_of_turn()};
    gp.add_bos = false;
    const bool tty = ::isatty(0);
    std::fprintf(stderr, "minigpt chat: template %s, context %lld tokens\n", tmpl.name().c_str(), static_cast<long long>(ctx.n_ctx()));
    std::signal(SIGINT, on_chat_sigint);

    std::vector<std::int32_t> evaluated;  // tokens whose keys/values are in ctx, in order
    sampler smp(gp.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    std::string line;
    while (true) {
        if (tty) std::fprintf(stderr, "\n> ");
        if (!std::getline(std::cin, line) || line.empty()) break;
        messages.push_back({"user", line});
        // Control tokens are parsed in the template's text only, never in what the user typed.
        const auto render = [&] {
            const chat_prompt prompt = tmpl.render(messages);
            return std::pair(prompt, lm.vocab->encode_with_literals(prompt.text, lm.vocab->add_bos_default(), true, prompt.content));
        };
        auto [prompt, ids] = render();
        // A conversation that has outgrown the context loses its oldest turns (the system message
        // stays), as chat front ends do; a message too long on its own is refused and the chat goes on.
        // The reply needs at least one free position.
        const std::size_t first_turn = f.has("--system-prompt") ? 1 : 0;
        std::size_t dropped = 0;
        while (static_cast<std::int64_t>(ids.size()) >= ctx.n_ctx() && messages.size() > first_turn + 1) {
            // A user message and its reply go together, so the turns keep alternating as templates expect.
            const auto begin = messages.begin() + static_cast<std::ptrdiff_t>(first_turn);
            messages.erase(begin, begin + 2);
            dropped += 2;
            std::tie(prompt, ids) = render();
        }
        if (dropped > 0)
            std::fprintf(stderr, "minigpt chat: the conversation outgrew the context (%lld tokens); dropped its %zu oldest messages\n",
                         static_cast<long long>(ctx.n_ctx()), dropped);
        if (static_cast<std::int64_t>(ids.size()) >= ctx.n_ctx()) {
            std::fprintf(stderr, "minigpt chat: this message is %zu tokens with the template, more than the context of %lld (-c); not sent\n",
                         ids.size(), static_cast<long long>(ctx.n_ctx()));
            messages.pop_back();
            continue;
        }
        if (f.on("--verbose-prompt")) print_prompt_tokens(*lm.vocab, prompt.text, ids);
        std::size_t common = 0;
        while (common < ids.size() && common < evaluated.size() && ids[common] == evaluated[common]) ++common;
        if (common == ids.size()) --common;  // at least one token must be fed to get fresh logits
        ctx.truncate(static_cast<std::int64_t>(common));
        evaluated.resize(common);
        g_chat_interrupted = 0;
        g_replying = 1;
        const auto out = generate_from_tokens(ctx, *lm.vocab, evaluated, std::span(ids).subspan(common), gp, smp,
                                              [](std::int32_t, std::string_view text) {
                                                  std::fwrite(text.data(), 1, text.size(), stdout);
                                                  std::fflush(stdout);
                                                  return g_chat_interrupted == 0;
                                              });
        g_replying = 0;
        std::printf("\n");
        std::fflush(stdout);
        if (g_chat_interrupted) std::fprintf(stderr, "minigpt chat: reply interrupted\n");
        // evaluated now holds prompt + generated tokens; an unfed final token is dropped.
        if (static_cast<std::int64_t>(evaluated.size()) > ctx.n_past()) evaluated.resize(static_cast<std::size_t>(ctx.n_past()));
        messages.push_back({"assistant", out.text});
        if (out.reason == stop_reason::context_full) {
            std::fprintf(stderr, "minigpt chat: the context is full\n");
            break;
        }
    }
    std::signal(SIGINT, SIG_DFL);
    return 0;
}

const register_command reg_chat("chat", "interactive chat with the model's chat template", run_chat);

}  // namespace
}  // namespace minigpt::tool

// The smallest complete minigpt program: load a model, generate a continuation, stream it.
//
//   example_generate MODEL.gguf "Once upon a time"
//
// Built the compiled-once way (examples/CMakeLists.txt, the README's "Compile time"): this file sees
// only the declarations of <minigpt/model.hpp> and compiles in about two seconds; minigpt itself is
// compiled once, in the static library minigpt_add_library makes. The same file builds header-only too.
#include <minigpt/model.hpp>

#include <cstdio>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [PROMPT]\n", argv[0]);
        return 1;
    }
    try {
        const minigpt::llm lm = minigpt::llm::load(argv[1]);              // GGUF or llama2.c .bin
        minigpt::context ctx(lm.weights);                                 // KV cache (model's context length)
        minigpt::generation_params params;
        params.max_tokens = 64;
        params.sampling.temperature = 0.8f;
        params.sampling.seed = 42;
        const auto out = minigpt::generate(lm, ctx, argc > 2 ? argv[2] : "Once upon a time", params,
                                           [](std::int32_t, std::string_view text) {
                                               std::fwrite(text.data(), 1, text.size(), stdout);
                                               std::fflush(stdout);
                                               return true;  // false would stop generation
                                           });
        std::printf("\n[%lld tokens, %.1f tokens/s]\n", static_cast<long long>(out.stats.n_generated),
                    out.stats.generation_tokens_per_second());
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

// Forward-pass benchmarks on synthesised models built in memory (no files needed):
// single-token decode and batched prefill, tokens/s. The end-to-end numbers against
// llama.cpp come from `minigpt bench` / scripts/bench on the full-size presets; these
// track the forward pass itself on a small shape, per weight type and thread count.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "minigpt/model.hpp"

namespace {

using namespace minigpt;

std::shared_ptr<const model> small_model(dtype type) {
    io::gguf_writer w;
    synthesize(w, find_synth_preset(architecture::llama, "small"), type, 3);
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    return model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, "small")));
}

const std::shared_ptr<const model>& cached(dtype type) {
    static std::shared_ptr<const model> models[4];
    const int i = type == dtype::f32 ? 0 : type == dtype::f16 ? 1 : type == dtype::q8_0 ? 2 : 3;
    if (!models[i]) models[i] = small_model(type);
    return models[i];
}

dtype type_of(std::int64_t i) {
    const dtype types[] = {dtype::f32, dtype::f16, dtype::q8_0, dtype::q4_0};
    return types[i];
}

// One token at a time at positions 64..; tokens/s.
void decode(benchmark::State& state) {
    const auto& m = cached(type_of(state.range(0)));
    context ctx(m, {.n_ctx = 1024, .n_threads = static_cast<int>(state.range(1))});
    std::vector<std::int32_t> prompt(64, 7);
    ctx.decode(prompt);
    std::int32_t token = 11;
    for (auto _ : state) {
        if (ctx.n_past() >= 1000) {
            state.PauseTiming();
            ctx.truncate(64);
            state.ResumeTiming();
        }
        ctx.decode(std::span(&token, 1));
        benchmark::DoNotOptimize(ctx.logits().data());
    }
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.SetLabel(std::string(dtype_name(type_of(state.range(0)))));
}

// A 128-token prompt into an empty context; tokens/s.
void prefill(benchmark::State& state) {
    const auto& m = cached(type_of(state.range(0)));
    context ctx(m, {.n_ctx = 256, .n_threads = static_cast<int>(state.range(1))});
    std::vector<std::int32_t> prompt(128);
    for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<std::int32_t>((i * 7919) % 32000);
    for (auto _ : state) {
        ctx.truncate(0);
        ctx.decode(prompt);
        benchmark::DoNotOptimize(ctx.logits().data());
    }
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * 128), benchmark::Counter::kIsRate);
    state.SetLabel(std::string(dtype_name(type_of(state.range(0)))));
}

}  // namespace

// Args: weight type (0 f32, 1 f16, 2 q8_0, 3 q4_0), threads.
BENCHMARK(decode)->ArgsProduct({{0, 1, 2, 3}, {1, 2}})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(prefill)->ArgsProduct({{0, 1, 2, 3}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);

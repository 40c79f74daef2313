// Forward-pass benchmarks on synthesised models (no files needed): single-token decode and
// batched prefill of a small shape built in memory, tokens/s, per weight type and thread count;
// and decode_vs_read, GPT-2 124M F32 decoding in alternation with the read loop. The end-to-end
// numbers against llama.cpp come from `minigpt bench` / scripts/bench on the full-size presets.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "minigpt/core/memory.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/synth.hpp"
#include "decode_steps.hpp"
#include "read_loop.hpp"

namespace {

using namespace minigpt;

std::shared_ptr<const model> small_model(dtype type) {
    return synthesize_model(find_synth_preset(architecture::llama, "small"), type, 3, "small");
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
    bench::decode_steps(state, ctx, 1000);
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
// GPT-2 124M F32 (the performance issue's shape, `minigpt synth --arch gpt2 --preset gpt2-124m`)
// written to a temporary file, dropped from the page cache and loaded as a model file is, so that
// its weights sit in 2 MiB pages (a file still cached from being written keeps 4 KiB ones).
const std::shared_ptr<const model>& gpt2_124m_f32() {
    static const std::shared_ptr<const model> m = [] {
        const auto path = (std::filesystem::temp_directory_path() /
                           ("minigpt-bench-gpt2-124m-f32-" + std::to_string(::getpid()) + ".gguf")).string();
        {
            io::gguf_writer w(path);
            synthesize(w, find_synth_preset(architecture::gpt2, "gpt2-124m"), dtype::f32, 1);
            w.finish();
        }
        const int fd = ::open(path.c_str(), O_RDONLY);
        if (fd >= 0) {
            ::fdatasync(fd);
            ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            ::close(fd);
        }
        auto loaded = model::load(path);
        std::filesystem::remove(path);  // the mapping keeps the data
        return loaded;
    }();
    return m;
}

// Decode against the read loop in one process: each iteration decodes 32 tokens into an empty
// context, then runs the read loop (bench/read_loop.hpp) 32 times over a buffer as large as the
// weights. The host's bandwidth drifts by +-30% within minutes, so the two are compared pair by
// pair: "decode/read" is the median over iterations of decode's tokens/s over the read loop's
// (the tokens/s at which every weight would stream once per token at the read loop's rate). The
// performance issue asks for >= 0.9 with F32 weights. The time reported is decode's.
void decode_vs_read(benchmark::State& state) {
    const auto& m = gpt2_124m_f32();
    const int n_threads = static_cast<int>(state.range(0));
    constexpr int n_tokens = 32;
    context ctx(m, {.n_ctx = n_tokens, .n_threads = n_threads});
    const auto n_floats = static_cast<std::int64_t>(m->n_bytes() / sizeof(float));
    const auto buffer = heap_buffer(static_cast<std::size_t>(n_floats) * sizeof(float));
    std::fill_n(reinterpret_cast<float*>(buffer.get()), n_floats, 1.0f);
    using clock = std::chrono::steady_clock;
    double decode_seconds = 0.0, read_seconds = 0.0;
    std::vector<double> ratios;
    for (auto _ : state) {
        ctx.truncate(0);
        const auto t0 = clock::now();
        for (std::int32_t i = 0; i < n_tokens; ++i) {
            const std::int32_t token = (i * 7919) % 50000;
            ctx.decode(std::span(&token, 1));
        }
        const auto t1 = clock::now();
        for (int i = 0; i < n_tokens; ++i)
            benchmark::DoNotOptimize(minigpt::bench::read_all(reinterpret_cast<const float*>(buffer.get()), n_floats, n_threads));
        const auto t2 = clock::now();
        const double d = std::chrono::duration<double>(t1 - t0).count(), r = std::chrono::duration<double>(t2 - t1).count();
        state.SetIterationTime(d);
        decode_seconds += d;
        read_seconds += r;
        ratios.push_back(r / d);
    }
    std::sort(ratios.begin(), ratios.end());
    const double n_decoded = static_cast<double>(n_tokens) * static_cast<double>(state.iterations());
    state.counters["decode tokens/s"] = n_decoded / decode_seconds;
    state.counters["read-limit tokens/s"] = n_decoded / read_seconds;
    state.counters["read GB/s"] = n_decoded * static_cast<double>(m->n_bytes()) / read_seconds * 1e-9;
    state.counters["decode/read"] = ratios.empty() ? 0.0 : ratios[ratios.size() / 2];
}

BENCHMARK(decode)->ArgsProduct({{0, 1, 2, 3}, {1, 2}})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(prefill)->ArgsProduct({{0, 1, 2, 3}, {1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(decode_vs_read)->Arg(2)->Iterations(12)->UseManualTime()->Unit(benchmark::kMillisecond);

// The timed loop of the decode benchmarks (bench_forward_bench, bench_inspection_bench): one token
// at a time after a 64-token prompt, the context cut back to the prompt (untimed) before it fills,
// so every iteration decodes at a position in [64, limit).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <benchmark/benchmark.h>

#include "minigpt/model/context.hpp"

namespace minigpt::bench {

inline void decode_steps(benchmark::State& state, context& ctx, std::int64_t limit) {
    std::vector<std::int32_t> prompt(64, 7);
    ctx.decode(prompt);
    std::int32_t token = 11;
    for (auto _ : state) {
        if (ctx.n_past() >= limit) {
            state.PauseTiming();
            ctx.truncate(64);
            state.ResumeTiming();
        }
        ctx.decode(std::span(&token, 1));
        benchmark::DoNotOptimize(ctx.logits().data());
    }
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace minigpt::bench

// Fork/join cost of minigpt's worker team (core/threads.hpp, core/worker_pool.hpp): one parallel
// loop with (almost) no work, so the time is posting the loop to the helpers, their claiming the
// pieces, and the caller collecting them. Decode runs a few hundred such loops per token, so this
// is the floor under a tiny model's per-token time with -t > 1. Arg: threads (1 = no helpers).
// "BalancedSmall" adds 64 KiB of reads split in 16 pieces, the shape of a small GEMV.
#include <benchmark/benchmark.h>

#include <atomic>
#include <vector>

#include "minigpt/core/threads.hpp"

namespace {

void BM_ParallelForEmpty(benchmark::State& state) {
    const int threads = static_cast<int>(state.range(0));
    minigpt::set_max_threads(threads);
    std::atomic<std::int64_t> sink{0};
    for (auto _ : state)
        minigpt::parallel_for(threads, threads, [&](std::int64_t b, std::int64_t e) { sink.fetch_add(e - b, std::memory_order_relaxed); });
    benchmark::DoNotOptimize(sink.load());
    minigpt::set_max_threads(0);
}
BENCHMARK(BM_ParallelForEmpty)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

void BM_ParallelForBalancedSmall(benchmark::State& state) {
    const int threads = static_cast<int>(state.range(0));
    minigpt::set_max_threads(threads);
    std::vector<float> data(16 * 1024, 1.0f);  // (16 pieces x 1024 floats)
    std::vector<float> sums(16, 0.0f);         // (16)
    for (auto _ : state) {
        minigpt::parallel_for_balanced(16, threads, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t p = b; p < e; ++p) {
                float s = 0;
                for (int i = 0; i < 1024; ++i) s += data[static_cast<std::size_t>(p * 1024 + i)];
                sums[static_cast<std::size_t>(p)] = s;
            }
        }, 1);
        benchmark::DoNotOptimize(sums.data());
    }
    minigpt::set_max_threads(0);
}
BENCHMARK(BM_ParallelForBalancedSmall)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

}  // namespace

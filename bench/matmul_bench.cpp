// Google Benchmarks of kernels::matmul: GEMV per weight type (weight bytes/s, against the
// machine's read bandwidth measured here too) and GEMM for prefill (GFLOP/s).
//
// Weights are random normals quantised once per (type, shape) and kept for the whole run.
// Results and the command that reproduces them: docs/benchmarks.md, section "Kernels".
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/matmul.hpp"

using namespace minigpt;

namespace {

const tensor& weights(dtype t, std::int64_t n_out, std::int64_t n_in) {
    static std::map<std::tuple<dtype, std::int64_t, std::int64_t>, tensor> cache;
    auto key = std::make_tuple(t, n_out, n_in);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    tensor w = tensor::empty(t, {n_out, n_in});
    std::mt19937 rng(42);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<float> row(static_cast<std::size_t>(n_in));
    for (std::int64_t r = 0; r < n_out; ++r) {
        for (auto& v : row) v = dist(rng);
        quant::quantize_row(t, row.data(), w.row_ptr(r), n_in);
    }
    return cache.emplace(key, std::move(w)).first->second;
}

std::vector<float> activations(std::int64_t n) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(static_cast<std::size_t>(n));
    for (auto& v : x) v = dist(rng);
    return x;
}

// args: n_out, n_in, n_threads
template <dtype T>
void BM_gemv(benchmark::State& state) {
    const std::int64_t n_out = state.range(0), n_in = state.range(1);
    const int n_threads = static_cast<int>(state.range(2));
    const tensor& w = weights(T, n_out, n_in);
    const auto x = activations(n_in);
    std::vector<float> y(static_cast<std::size_t>(n_out));
    for (auto _ : state) {
        kernels::gemv(w, x.data(), y.data(), n_threads);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * w.n_bytes());
    state.counters["rows/s"] = benchmark::Counter(static_cast<double>(n_out) * static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

// args: n_out, n_in, n_tokens, n_threads
template <dtype T>
void BM_matmul(benchmark::State& state) {
    const std::int64_t n_out = state.range(0), n_in = state.range(1), n_tokens = state.range(2);
    const int n_threads = static_cast<int>(state.range(3));
    const tensor& w = weights(T, n_out, n_in);
    const auto x = activations(n_in * n_tokens);
    std::vector<float> y(static_cast<std::size_t>(n_out * n_tokens));
    for (auto _ : state) {
        kernels::matmul(w, x.data(), y.data(), n_tokens, n_threads);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n_out * n_in * n_tokens) *
                                                       static_cast<double>(state.iterations()) * 1e-9,
                                                   benchmark::Counter::kIsRate);
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(n_tokens) * static_cast<double>(state.iterations()),
                                                    benchmark::Counter::kIsRate);
}

// Sum of a 1 GiB float buffer split over threads: the read bandwidth GEMV is judged against.
void BM_read_bandwidth(benchmark::State& state) {
    const int n_threads = static_cast<int>(state.range(0));
    const std::int64_t n = (std::int64_t(1) << 30) / static_cast<std::int64_t>(sizeof(float));
    static std::vector<float> buffer(static_cast<std::size_t>(n), 1.0f);
    using B = xsimd::batch<float>;
    constexpr std::int64_t L = static_cast<std::int64_t>(B::size);
    for (auto _ : state) {
        float partial[64] = {};
        parallel_for(n_threads, n_threads, [&](std::int64_t t0, std::int64_t t1) {
            for (std::int64_t t = t0; t < t1; ++t) {
                const std::int64_t b = n / n_threads * t, e = t + 1 == n_threads ? n : n / n_threads * (t + 1);
                B a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
                for (std::int64_t i = b; i + 4 * L <= e; i += 4 * L) {
                    a0 += B::load_aligned(buffer.data() + i);
                    a1 += B::load_aligned(buffer.data() + i + L);
                    a2 += B::load_aligned(buffer.data() + i + 2 * L);
                    a3 += B::load_aligned(buffer.data() + i + 3 * L);
                }
                partial[t] = xsimd::hadd(a0 + a1 + a2 + a3);
            }
        });
        benchmark::DoNotOptimize(partial);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * static_cast<std::int64_t>(sizeof(float)));
}

void gemv_args(benchmark::internal::Benchmark* b) {
    for (auto [n_out, n_in] : {std::pair{4096, 4096}, std::pair{11008, 4096}})
        for (int threads : {1, 2}) b->Args({n_out, n_in, threads});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// 256 x 4096 weights stay in L2 across iterations: the kernels' compute speed, one thread, CPU
// time (steadier than wall time on a shared machine). A kernel whose in-cache speed exceeds the
// per-core share of the read bandwidth can stream weights from memory at full speed.
void in_cache_args(benchmark::internal::Benchmark* b) {
    b->Args({256, 4096, 1});
    b->Unit(benchmark::kMicrosecond);
}

void gemm_args(benchmark::internal::Benchmark* b) {
    for (int threads : {1, 2}) b->Args({4096, 4096, 512, threads});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Few-token batches around the hand-over from the dot kernels to the GEMM (gemm_min_tokens).
void small_batch_args(benchmark::internal::Benchmark* b) {
    for (int n_tokens : {2, 4, 8, 12, 16, 24, 32}) b->Args({4096, 4096, n_tokens, 2});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_read_bandwidth)->Name("read_bandwidth")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemv<dtype::f32>)->Name("gemv/f32")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::f16>)->Name("gemv/f16")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::bf16>)->Name("gemv/bf16")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q8_0>)->Name("gemv/q8_0")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q4_0>)->Name("gemv/q4_0")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q4_k>)->Name("gemv/q4_k")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q6_k>)->Name("gemv/q6_k")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::f32>)->Name("gemv_in_cache/f32")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::f16>)->Name("gemv_in_cache/f16")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::bf16>)->Name("gemv_in_cache/bf16")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q8_0>)->Name("gemv_in_cache/q8_0")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q4_0>)->Name("gemv_in_cache/q4_0")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q4_k>)->Name("gemv_in_cache/q4_k")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q6_k>)->Name("gemv_in_cache/q6_k")->Apply(in_cache_args);
BENCHMARK(BM_matmul<dtype::f32>)->Name("gemm/f32")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::f16>)->Name("gemm/f16")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q8_0>)->Name("gemm/q8_0")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q4_0>)->Name("gemm/q4_0")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q4_k>)->Name("gemm/q4_k")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::f32>)->Name("matmul_small/f32")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::q4_0>)->Name("matmul_small/q4_0")->Apply(small_batch_args);

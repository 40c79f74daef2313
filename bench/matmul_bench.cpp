// Google Benchmarks of kernels::matmul: GEMV per weight type (weight bytes/s, against the
// machine's read bandwidth measured here too) and GEMM for prefill (GFLOP/s).
//
// Weights are random normals quantised once per (type, shape) and kept for the whole run. Every
// weight goes through kernels::packed_matrix as the model uses it (Q4_0 / Q8_0 repacked on AVX-512
// VNNI machines, other types as they are); `*_rows/*` runs Q4_0 / Q8_0 on the per-row kernels for
// comparison. GEMV "from memory" cycles through enough copies of the matrix (>= 256 MiB) that none
// is in the 32 MiB L3 when it is used again, as in decoding a model larger than the caches.
// Results and the command that reproduces them: docs/benchmarks.md, section "Kernels".
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "read_loop.hpp"

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

// In an owning tensor, so 64-byte aligned like the model's activations (a std::vector's data is only
// 16-byte aligned, and matmul would first copy it: see kernels::detail::aligned_activations).
tensor activations(std::int64_t n) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    tensor x = tensor::empty(dtype::f32, {n});
    for (std::int64_t i = 0; i < n; ++i) x.data<float>()[i] = dist(rng);
    return x;
}

// Copies of one random matrix prepared with `policy`: enough to exceed 256 MiB when from_memory.
// Only the last set asked for is kept, so that the run holds at most ~0.5 GiB of copies.
const std::vector<kernels::packed_matrix>& prepared(dtype t, std::int64_t n_out, std::int64_t n_in, bool from_memory,
                                                    kernels::pack_policy policy) {
    using key_t = std::tuple<dtype, std::int64_t, std::int64_t, bool, kernels::pack_policy>;
    static key_t last_key;
    static std::vector<kernels::packed_matrix> last;
    const key_t key = std::make_tuple(t, n_out, n_in, from_memory, policy);
    if (!last.empty() && key == last_key) return last;
    last.clear();
    const tensor& w = weights(t, n_out, n_in);
    const std::int64_t copies = from_memory ? std::max<std::int64_t>(2, ((std::int64_t(256) << 20) + w.n_bytes() - 1) / w.n_bytes()) : 1;
    std::vector<kernels::packed_matrix> out;
    for (std::int64_t i = 0; i < copies; ++i) {
        tensor copy = tensor::empty(t, {n_out, n_in});
        std::memcpy(copy.raw(), w.raw(), static_cast<std::size_t>(w.n_bytes()));
        out.emplace_back(copy, policy);
    }
    last_key = key;
    last = std::move(out);
    return last;
}

// args: n_out, n_in, n_threads, from_memory
template <dtype T, kernels::pack_policy P = kernels::pack_policy::when_faster>
void BM_gemv(benchmark::State& state) {
    const std::int64_t n_out = state.range(0), n_in = state.range(1);
    const int n_threads = static_cast<int>(state.range(2));
    const auto& ws = prepared(T, n_out, n_in, state.range(3) != 0, P);
    const auto x = activations(n_in);
    std::vector<float> y(static_cast<std::size_t>(n_out));
    std::size_t next = 0;
    for (auto _ : state) {
        kernels::gemv(ws[next], x.data<float>(), y.data(), n_threads);
        next = (next + 1) % ws.size();
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * ws[0].source().n_bytes());
    state.counters["rows/s"] = benchmark::Counter(static_cast<double>(n_out) * static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

// args: n_out, n_in, n_tokens, n_threads
template <dtype T, kernels::pack_policy P = kernels::pack_policy::when_faster>
void BM_matmul(benchmark::State& state) {
    const std::int64_t n_out = state.range(0), n_in = state.range(1), n_tokens = state.range(2);
    const int n_threads = static_cast<int>(state.range(3));
    const auto& w = prepared(T, n_out, n_in, false, P)[0];
    const auto x = activations(n_in * n_tokens);
    std::vector<float> y(static_cast<std::size_t>(n_out * n_tokens));
    for (auto _ : state) {
        kernels::matmul(w, x.data<float>(), y.data(), n_tokens, n_threads);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n_out * n_in * n_tokens) *
                                                       static_cast<double>(state.iterations()) * 1e-9,
                                                   benchmark::Counter::kIsRate);
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(n_tokens) * static_cast<double>(state.iterations()),
                                                    benchmark::Counter::kIsRate);
}

// dequantize_row over 256 x 4096 weights held in L2 (one thread, CPU time): the decoder the GEMM runs
// on every weight tile, whose cost prefill pays once per block of k_token_block tokens.
template <dtype T>
void BM_dequantize(benchmark::State& state) {
    const tensor& w = weights(T, 256, 4096);
    std::vector<float> row(4096);
    for (auto _ : state) {
        for (std::int64_t r = 0; r < 256; ++r) {
            quant::dequantize_row(T, w.row_ptr(r), row.data(), 4096);
            benchmark::DoNotOptimize(row.data());
        }
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * w.n_bytes());
    state.counters["elements/s"] = benchmark::Counter(256.0 * 4096.0 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Sum of a 1 GiB float buffer split over threads: the read bandwidth GEMV is judged against. By
// default the buffer is in 2 MiB pages like minigpt's weights (core/memory.hpp); the small_pages
// variant (a std::vector, 4 KiB pages unless THP is "always") shows what the TLB misses cost.
template <bool SmallPages = false>
void BM_read_bandwidth(benchmark::State& state) {
    const int n_threads = static_cast<int>(state.range(0));
    const std::int64_t n = (std::int64_t(1) << 30) / static_cast<std::int64_t>(sizeof(float));
    static std::vector<float> small_pages;
    static std::shared_ptr<std::byte> huge_pages;
    const float* buffer_data = nullptr;
    if constexpr (SmallPages) {
        if (small_pages.empty()) small_pages.assign(static_cast<std::size_t>(n), 1.0f);
        buffer_data = small_pages.data();
    } else {
        if (!huge_pages) {
            huge_pages = heap_buffer(static_cast<std::size_t>(n) * sizeof(float));
            std::fill_n(reinterpret_cast<float*>(huge_pages.get()), n, 1.0f);
        }
        buffer_data = reinterpret_cast<float*>(huge_pages.get());
    }

    for (auto _ : state) benchmark::DoNotOptimize(minigpt::bench::read_all(buffer_data, n, n_threads));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * static_cast<std::int64_t>(sizeof(float)));
}

// Decode shapes: the 4096-wide matrices of a 7B model, and the model's own: GPT-2 124M's MLP
// (3072 x 768) and Llama 360M's (2560 x 960), all from memory, 1 and 2 threads.
void gemv_args(benchmark::internal::Benchmark* b) {
    for (auto [n_out, n_in] : {std::pair{4096, 4096}, std::pair{11008, 4096}, std::pair{3072, 768}, std::pair{2560, 960}})
        for (int threads : {1, 2}) b->Args({n_out, n_in, threads, 1});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// The K-quants need rows of a multiple of 256: no 960-wide shape.
void gemv_args_k(benchmark::internal::Benchmark* b) {
    for (auto [n_out, n_in] : {std::pair{4096, 4096}, std::pair{11008, 4096}, std::pair{3072, 768}})
        for (int threads : {1, 2}) b->Args({n_out, n_in, threads, 1});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// 256 x 4096 weights stay in L2 across iterations: the kernels' compute speed, one thread, CPU
// time (steadier than wall time on a shared machine). A kernel whose in-cache speed exceeds the
// per-core share of the read bandwidth can stream weights from memory at full speed.
void in_cache_args(benchmark::internal::Benchmark* b) {
    b->Args({256, 4096, 1, 0});
    b->Unit(benchmark::kMicrosecond);
}

void gemm_args(benchmark::internal::Benchmark* b) {
    for (int threads : {1, 2}) b->Args({4096, 4096, 512, threads});
    b->Args({3072, 768, 512, 2});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Few-token batches around the hand-over from the dot kernels to the GEMM (gemm_min_tokens).
void small_batch_args(benchmark::internal::Benchmark* b) {
    for (int n_tokens : {2, 4, 8, 12, 16, 24, 32}) b->Args({4096, 4096, n_tokens, 2});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// The matrix products of one GPT-2 124M decode step for n_tokens sequences (arg 0): each of 12
// layers' QKV (2304 x 768), output (768 x 768), up (3072 x 768) and down (768 x 3072) matrices,
// distinct copies (~85 MB of Q8_0, more than the L3), then the 50257 x 768 output matrix; 2 threads
// (arg 1). Where a batched decode step's weight traffic meets its arithmetic (docs/benchmarks.md).
void BM_gpt2_step_products(benchmark::State& state) {
    const std::int64_t n_tokens = state.range(0);
    const int n_threads = static_cast<int>(state.range(1));
    static const std::vector<kernels::packed_matrix> step = [] {
        std::vector<kernels::packed_matrix> m;
        auto copy_of = [&](std::int64_t n_out, std::int64_t n_in) {  // a copy of its own in memory
            const tensor& w = weights(dtype::q8_0, n_out, n_in);
            tensor c = tensor::empty(dtype::q8_0, {n_out, n_in});
            std::memcpy(c.raw(), w.raw(), static_cast<std::size_t>(w.n_bytes()));
            m.emplace_back(std::move(c));
        };
        for (int l = 0; l < 12; ++l) {
            copy_of(2304, 768);
            copy_of(768, 768);
            copy_of(3072, 768);
            copy_of(768, 3072);
        }
        copy_of(50257, 768);
        return m;
    }();
    const auto x = activations(3072 * n_tokens);
    std::vector<float> y(static_cast<std::size_t>(50257 * n_tokens));
    double macs = 0.0, bytes = 0.0;
    for (const auto& w : step) {
        macs += static_cast<double>(w.n_out() * w.n_in() * n_tokens);
        bytes += static_cast<double>(w.source().n_bytes());
    }
    for (auto _ : state) {
        for (const auto& w : step) kernels::matmul(w, x.data<float>(), y.data(), n_tokens, n_threads);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    const auto it = static_cast<double>(state.iterations());
    state.counters["GMAC/s"] = benchmark::Counter(macs * it * 1e-9, benchmark::Counter::kIsRate);
    state.counters["weight GB/s"] = benchmark::Counter(bytes * it * 1e-9, benchmark::Counter::kIsRate);
}

constexpr auto rows = kernels::pack_policy::never;

}  // namespace

BENCHMARK(BM_read_bandwidth<>)->Name("read_bandwidth")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_read_bandwidth<true>)->Name("read_bandwidth_small_pages")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemv<dtype::f32>)->Name("gemv/f32")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::f16>)->Name("gemv/f16")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::bf16>)->Name("gemv/bf16")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q8_0>)->Name("gemv/q8_0")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q4_0>)->Name("gemv/q4_0")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q4_k>)->Name("gemv/q4_k")->Apply(gemv_args_k);
BENCHMARK(BM_gemv<dtype::q6_k>)->Name("gemv/q6_k")->Apply(gemv_args_k);
BENCHMARK(BM_gemv<dtype::q4_1>)->Name("gemv/q4_1")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q5_0>)->Name("gemv/q5_0")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q5_1>)->Name("gemv/q5_1")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::iq4_nl>)->Name("gemv/iq4_nl")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q2_k>)->Name("gemv/q2_k")->Apply(gemv_args_k);
BENCHMARK(BM_gemv<dtype::q3_k>)->Name("gemv/q3_k")->Apply(gemv_args_k);
BENCHMARK(BM_gemv<dtype::q5_k>)->Name("gemv/q5_k")->Apply(gemv_args_k);
BENCHMARK(BM_gemv<dtype::iq4_xs>)->Name("gemv/iq4_xs")->Apply(gemv_args_k);
BENCHMARK(BM_gemv<dtype::q8_0, rows>)->Name("gemv_rows/q8_0")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::q4_0, rows>)->Name("gemv_rows/q4_0")->Apply(gemv_args);
BENCHMARK(BM_gemv<dtype::f32>)->Name("gemv_in_cache/f32")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::f16>)->Name("gemv_in_cache/f16")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::bf16>)->Name("gemv_in_cache/bf16")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q8_0>)->Name("gemv_in_cache/q8_0")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q4_0>)->Name("gemv_in_cache/q4_0")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q4_k>)->Name("gemv_in_cache/q4_k")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q6_k>)->Name("gemv_in_cache/q6_k")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q4_1>)->Name("gemv_in_cache/q4_1")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q5_0>)->Name("gemv_in_cache/q5_0")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q5_1>)->Name("gemv_in_cache/q5_1")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::iq4_nl>)->Name("gemv_in_cache/iq4_nl")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q2_k>)->Name("gemv_in_cache/q2_k")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q3_k>)->Name("gemv_in_cache/q3_k")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q5_k>)->Name("gemv_in_cache/q5_k")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::iq4_xs>)->Name("gemv_in_cache/iq4_xs")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q8_0, rows>)->Name("gemv_in_cache_rows/q8_0")->Apply(in_cache_args);
BENCHMARK(BM_gemv<dtype::q4_0, rows>)->Name("gemv_in_cache_rows/q4_0")->Apply(in_cache_args);
BENCHMARK(BM_matmul<dtype::f32>)->Name("gemm/f32")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::f16>)->Name("gemm/f16")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q8_0>)->Name("gemm/q8_0")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q4_0>)->Name("gemm/q4_0")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q4_k>)->Name("gemm/q4_k")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q6_k>)->Name("gemm/q6_k")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q5_0>)->Name("gemm/q5_0")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q5_1>)->Name("gemm/q5_1")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q5_k>)->Name("gemm/q5_k")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q4_1>)->Name("gemm/q4_1")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::iq4_nl>)->Name("gemm/iq4_nl")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::iq4_xs>)->Name("gemm/iq4_xs")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q2_k>)->Name("gemm/q2_k")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q3_k>)->Name("gemm/q3_k")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q8_0, rows>)->Name("gemm_rows/q8_0")->Apply(gemm_args);
BENCHMARK(BM_matmul<dtype::q4_0, rows>)->Name("gemm_rows/q4_0")->Apply(gemm_args);
BENCHMARK(BM_dequantize<dtype::q8_0>)->Name("dequantize/q8_0")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q4_0>)->Name("dequantize/q4_0")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q4_k>)->Name("dequantize/q4_k")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q6_k>)->Name("dequantize/q6_k")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q4_1>)->Name("dequantize/q4_1")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q5_0>)->Name("dequantize/q5_0")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q5_1>)->Name("dequantize/q5_1")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::iq4_nl>)->Name("dequantize/iq4_nl")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q2_k>)->Name("dequantize/q2_k")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q3_k>)->Name("dequantize/q3_k")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::q5_k>)->Name("dequantize/q5_k")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dequantize<dtype::iq4_xs>)->Name("dequantize/iq4_xs")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_matmul<dtype::q2_k>)->Name("matmul_small/q2_k")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::q3_k>)->Name("matmul_small/q3_k")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::q4_k>)->Name("matmul_small/q4_k")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::f32>)->Name("matmul_small/f32")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::q4_0>)->Name("matmul_small/q4_0")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::q8_0>)->Name("matmul_small/q8_0")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::q8_0, rows>)->Name("matmul_small_rows/q8_0")->Apply(small_batch_args);
BENCHMARK(BM_matmul<dtype::q4_0, rows>)->Name("matmul_small_rows/q4_0")->Apply(small_batch_args);
BENCHMARK(BM_gpt2_step_products)
    ->Name("gpt2_step_products")
    ->ArgsProduct({{1, 2, 4, 8}, {2}})
    ->ArgNames({"tokens", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Google Benchmarks of the element-wise kernels (n = 4096, fast path and double reference)
// and of attention: decode (1 query token, 12 heads x 64, 512 and 2048 cached positions)
// and prefill (512 tokens from an empty cache), with f32 and f16 caches, 1 and 2 threads;
// and a grouped-query decode shaped like Llama 3 8B (32/8 heads of 128, 4096 positions, f16).
// Numbers are recorded in docs/kernels.md and docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "minigpt/core/half.hpp"
#include "minigpt/kernels/attention.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/kernels/rope.hpp"

namespace {

using namespace minigpt;
namespace K = minigpt::kernels;

std::vector<float> random_vector(std::size_t n, unsigned seed, float lo = -2.0f, float hi = 2.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

constexpr std::int64_t k_n = 4096;

template <bool Ref>
void BM_rmsnorm(benchmark::State& st) {
    const auto x = random_vector(k_n, 1), w = random_vector(k_n, 2);
    std::vector<float> out(k_n);
    for (auto _ : st) {
        if constexpr (Ref) K::ref::rmsnorm(out.data(), x.data(), w.data(), k_n, 1e-5f);
        else K::rmsnorm(out.data(), x.data(), w.data(), k_n, 1e-5f);
        benchmark::DoNotOptimize(out.data());
    }
    st.SetItemsProcessed(st.iterations() * k_n);
}

template <bool Ref>
void BM_layernorm(benchmark::State& st) {
    const auto x = random_vector(k_n, 1), w = random_vector(k_n, 2), b = random_vector(k_n, 3);
    std::vector<float> out(k_n);
    for (auto _ : st) {
        if constexpr (Ref) K::ref::layernorm(out.data(), x.data(), w.data(), b.data(), k_n, 1e-5f);
        else K::layernorm(out.data(), x.data(), w.data(), b.data(), k_n, 1e-5f);
        benchmark::DoNotOptimize(out.data());
    }
    st.SetItemsProcessed(st.iterations() * k_n);
}

// In-place kernels: the input is restored from a copy outside the timed region would
// dominate, so each iteration runs on a fresh copy and the copy is timed too (memcpy of
// 16 KB is small next to an exp per element).
template <bool Ref>
void BM_softmax(benchmark::State& st) {
    const auto src = random_vector(k_n, 4, -10.0f, 10.0f);
    std::vector<float> x(k_n);
    for (auto _ : st) {
        x = src;
        if constexpr (Ref) K::ref::softmax(x.data(), k_n);
        else K::softmax(x.data(), k_n);
        benchmark::DoNotOptimize(x.data());
    }
    st.SetItemsProcessed(st.iterations() * k_n);
}

template <bool Ref>
void BM_gelu(benchmark::State& st) {
    const auto src = random_vector(k_n, 5, -5.0f, 5.0f);
    std::vector<float> x(k_n);
    for (auto _ : st) {
        x = src;
        if constexpr (Ref) K::ref::gelu(x.data(), k_n);
        else K::gelu(x.data(), k_n);
        benchmark::DoNotOptimize(x.data());
    }
    st.SetItemsProcessed(st.iterations() * k_n);
}

template <bool Ref>
void BM_swiglu(benchmark::State& st) {
    const auto g = random_vector(k_n, 6, -5.0f, 5.0f), u = random_vector(k_n, 7);
    std::vector<float> out(k_n);
    for (auto _ : st) {
        if constexpr (Ref) K::ref::swiglu(out.data(), g.data(), u.data(), k_n);
        else K::swiglu(out.data(), g.data(), u.data(), k_n);
        benchmark::DoNotOptimize(out.data());
    }
    st.SetItemsProcessed(st.iterations() * k_n);
}

void BM_dot(benchmark::State& st) {
    const auto a = random_vector(k_n, 8), b = random_vector(k_n, 9);
    for (auto _ : st) benchmark::DoNotOptimize(K::dot(a.data(), b.data(), k_n));
    st.SetItemsProcessed(st.iterations() * k_n);
}

// RoPE on the 32 query heads x 128 of a 7B-sized model at one position.
void BM_rope(benchmark::State& st) {
    auto x = random_vector(32 * 128, 10);
    std::int64_t pos = 0;
    const auto layout = st.range(0) == 0 ? K::rope_layout::adjacent_pairs : K::rope_layout::neox;
    for (auto _ : st) {
        K::rope(x.data(), 32, 128, 128, pos++ % 4096, 10000.0f, layout);
        benchmark::DoNotOptimize(x.data());
    }
    st.SetItemsProcessed(st.iterations() * 32 * 128);
}

BENCHMARK(BM_dot);
BENCHMARK(BM_rmsnorm<false>)->Name("BM_rmsnorm/4096");
BENCHMARK(BM_rmsnorm<true>)->Name("BM_rmsnorm_ref/4096");
BENCHMARK(BM_layernorm<false>)->Name("BM_layernorm/4096");
BENCHMARK(BM_layernorm<true>)->Name("BM_layernorm_ref/4096");
BENCHMARK(BM_softmax<false>)->Name("BM_softmax/4096");
BENCHMARK(BM_softmax<true>)->Name("BM_softmax_ref/4096");
BENCHMARK(BM_gelu<false>)->Name("BM_gelu/4096");
BENCHMARK(BM_gelu<true>)->Name("BM_gelu_ref/4096");
BENCHMARK(BM_swiglu<false>)->Name("BM_swiglu/4096");
BENCHMARK(BM_swiglu<true>)->Name("BM_swiglu_ref/4096");
BENCHMARK(BM_rope)->Arg(0)->Arg(1)->ArgNames({"neox"});

// ---- attention: 12 heads x 64 (GPT-2 small), MHA ---------------------------------------

struct attn_data {
    static constexpr std::int64_t n_heads = 12, head_dim = 64, dim = n_heads * head_dim;
    std::vector<float> q, k, v;
    std::vector<std::uint16_t> k16, v16;
    attn_data(std::int64_t n_tokens, std::int64_t n_keys)
        : q(random_vector(static_cast<std::size_t>(n_tokens * dim), 11)),
          k(random_vector(static_cast<std::size_t>(n_keys * dim), 12)),
          v(random_vector(static_cast<std::size_t>(n_keys * dim), 13)),
          k16(k.size()), v16(v.size()) {
        for (std::size_t i = 0; i < k.size(); ++i) k16[i] = fp32_to_fp16(k[i]), v16[i] = fp32_to_fp16(v[i]);
    }
};

// args: cached positions (keys incl. the new token), f16 cache?, threads
void BM_attention_decode(benchmark::State& st) {
    const std::int64_t n_keys = st.range(0);
    const bool f16 = st.range(1) != 0;
    const int threads = static_cast<int>(st.range(2));
    attn_data d(1, n_keys);
    std::vector<float> out(attn_data::dim);
    const void* k = f16 ? static_cast<const void*>(d.k16.data()) : d.k.data();
    const void* v = f16 ? static_cast<const void*>(d.v16.data()) : d.v.data();
    for (auto _ : st) {
        K::attention(d.q.data(), k, v, f16 ? dtype::f16 : dtype::f32, out.data(), 1, n_keys - 1, attn_data::n_heads,
                     attn_data::n_heads, attn_data::head_dim, 0.125f, threads);
        benchmark::DoNotOptimize(out.data());
    }
    st.counters["keys/s"] = benchmark::Counter(static_cast<double>(st.iterations() * n_keys * attn_data::n_heads),
                                               benchmark::Counter::kIsRate);
}

// args: prompt tokens (from an empty cache), f16 cache?, threads
void BM_attention_prefill(benchmark::State& st) {
    const std::int64_t n_tokens = st.range(0);
    const bool f16 = st.range(1) != 0;
    const int threads = static_cast<int>(st.range(2));
    attn_data d(n_tokens, n_tokens);
    std::vector<float> out(static_cast<std::size_t>(n_tokens * attn_data::dim));
    const void* k = f16 ? static_cast<const void*>(d.k16.data()) : d.k.data();
    const void* v = f16 ? static_cast<const void*>(d.v16.data()) : d.v.data();
    for (auto _ : st) {
        K::attention(d.q.data(), k, v, f16 ? dtype::f16 : dtype::f32, out.data(), n_tokens, 0, attn_data::n_heads,
                     attn_data::n_heads, attn_data::head_dim, 0.125f, threads);
        benchmark::DoNotOptimize(out.data());
    }
    // (query, key) pairs actually scored under the causal mask
    st.counters["pairs/s"] = benchmark::Counter(
        static_cast<double>(st.iterations() * n_tokens * (n_tokens + 1) / 2 * attn_data::n_heads), benchmark::Counter::kIsRate);
}

// Grouped-query decode shaped like Llama 3 8B: 32 query heads over 8 KV heads of 128, f16
// cache. args: cached positions, threads
void BM_attention_decode_gqa(benchmark::State& st) {
    constexpr std::int64_t n_heads = 32, n_kv = 8, hd = 128;
    const std::int64_t n_keys = st.range(0);
    const int threads = static_cast<int>(st.range(1));
    const auto q = random_vector(n_heads * hd, 14);
    const auto kf = random_vector(static_cast<std::size_t>(n_keys * n_kv * hd), 15);
    const auto vf = random_vector(kf.size(), 16);
    std::vector<std::uint16_t> k(kf.size()), v(vf.size());
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = fp32_to_fp16(kf[i]), v[i] = fp32_to_fp16(vf[i]);
    std::vector<float> out(n_heads * hd);
    for (auto _ : st) {
        K::attention(q.data(), k.data(), v.data(), dtype::f16, out.data(), 1, n_keys - 1, n_heads, n_kv, hd,
                     1.0f / std::sqrt(128.0f), threads);
        benchmark::DoNotOptimize(out.data());
    }
    st.counters["keys/s"] = benchmark::Counter(static_cast<double>(st.iterations() * n_keys * n_heads), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_attention_decode_gqa)
    ->ArgNames({"keys", "threads"})
    ->Args({4096, 1})->Args({4096, 2})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_attention_decode)
    ->ArgNames({"keys", "f16", "threads"})
    ->Args({512, 0, 1})->Args({512, 1, 1})->Args({512, 0, 2})->Args({512, 1, 2})
    ->Args({2048, 0, 1})->Args({2048, 1, 1})->Args({2048, 0, 2})->Args({2048, 1, 2})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_attention_prefill)
    ->ArgNames({"tokens", "f16", "threads"})
    ->Args({512, 0, 1})->Args({512, 1, 1})->Args({512, 0, 2})->Args({512, 1, 2})
    ->Unit(benchmark::kMillisecond);

}  // namespace

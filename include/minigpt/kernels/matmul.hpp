// Matrix products with a weight matrix of any supported dtype: y = W x (GEMV, one
// token) and Y = X Wᵀ (GEMM, a batch of tokens), W of shape (n_out, n_in).
//
// Few tokens (generation, short batches): every weight row is streamed once and dotted with
// each token while it is in cache, by the fused decode-and-dot kernels of matmul_dot.hpp (for
// quantised W the activations are first quantised to 8-bit blocks and the products are exact
// int32 sums). The rows are shared out with parallel_for_balanced, so a thread slowed down by the
// machine does not hold the other back. Many tokens (prefill): the cache-blocked f32
// GEMM of matmul_gemm.hpp, which decodes W tile by tile. Both split the output rows
// over threads with parallel_for. matmul_reference is the scalar double-precision
// definition the tests compare against.
//
// The overloads taking a packed_matrix (matmul_packed.hpp) are what the model uses: Q4_0 and
// Q8_0 weights repacked 16 rows at a time run on integer kernels for any number of tokens;
// other types fall through to the tensor overloads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/matmul_dot.hpp"
#include "minigpt/kernels/matmul_dot_more.hpp"
#include "minigpt/kernels/matmul_gemm.hpp"
#include "minigpt/kernels/matmul_packed.hpp"
#include "minigpt/quant/quant.hpp"
#include "minigpt/quant/reference.hpp"

namespace minigpt::kernels {

namespace detail {

// From this many tokens on, the blocked GEMM beats running the dot kernels once per token:
// crossovers measured on 4096 x 4096 weights, one thread (docs/benchmarks.md). The integer dot
// kernels stay ahead longer for the 4-bit types, whose tiles cost more to decode to f32.
inline std::int64_t gemm_min_tokens(dtype t) {
    switch (t) {
        // Weights used in place (not packed) on AVX2 without VNNI: the several-token Q8_0 kernel
        // (dot_tokens_avx2, pmaddubsw on 8-bit activations) beats the f32 GEMM at every batch
        // size, 512-token prefill included, so Q8_0 never hands over there. Q4_0 keeps the GEMM
        // from 24 tokens (its token kernel is faster there too, 110 against 96 GFLOP/s at 512
        // tokens, but packed Q4_0 is what models use on such CPUs).
        case dtype::q8_0: return int8_token_kernels_available() ? std::numeric_limits<std::int64_t>::max() : 8;
        case dtype::q4_0: return 24;
        case dtype::q6_k: return 16;
        default: return 12;  // f32, f16, bf16, q4_k
    }
}
// Rows per piece of parallel_for_balanced: ~16 KiB of weights, small enough to even out threads
// that stream at different speeds, large enough that each piece is a sequential read.
inline std::int64_t balanced_chunk(std::int64_t row_bytes) { return std::max<std::int64_t>(1, (16 << 10) / std::max<std::int64_t>(1, row_bytes)); }

// Below this many weight bytes a call is too small to be worth waking a second thread.
inline constexpr std::int64_t k_parallel_min_bytes = 64 * 1024;

inline void check_matmul(const char* fn, const tensor& w, const float* x, const float* y, std::int64_t n_tokens) {
    if (w.empty()) throw shape_error(std::string(fn) + ": weight tensor has no data");
    if (w.rank() != 2) throw shape_error(std::string(fn) + ": weight must be rank 2 (n_out, n_in), got shape " + w.shape_string());
    if (n_tokens < 0) throw shape_error(std::string(fn) + ": negative n_tokens " + std::to_string(n_tokens));
    if (n_tokens > 0 && (!x || !y)) throw shape_error(std::string(fn) + ": null " + (x ? "output" : "input") + " pointer");
}

// Activations quantised for the integer kernels, in a per-thread buffer that only grows.
template <class Act>
inline const Act* quantize_activations(const float* x, std::int64_t n_tokens, std::int64_t n_in) {
    thread_local std::vector<Act> buffer;
    const std::int64_t per_token = n_in / (std::is_same_v<Act, quant::act_q8_32> ? quant::k_qk : quant::k_qk_k);
    const std::size_t need = static_cast<std::size_t>(checked_mul(static_cast<std::uint64_t>(per_token),
                                                                  static_cast<std::uint64_t>(n_tokens), "activation blocks"));
    if (buffer.size() < need) buffer.resize(need);
    for (std::int64_t t = 0; t < n_tokens; ++t) {
        if constexpr (std::is_same_v<Act, quant::act_q8_32>)
            quantize_act_32(x + t * n_in, buffer.data() + t * per_token, n_in);
        else
            quantize_act_256(x + t * n_in, buffer.data() + t * per_token, n_in);
    }
    return buffer.data();
}

// x itself when 64-byte aligned, else a copy in a per-thread aligned buffer that only grows. The
// float kernels load x a full vector at a time next to each weight vector; with x straddling cache
// lines every load costs two L1 accesses, which made one core's f16 GEMV from memory ~30% slower
// (19 vs 26 GB/s with x from a std::vector). The model's activations are aligned already.
inline const float* aligned_activations(const float* x, std::int64_t n_floats) {
    if (reinterpret_cast<std::uintptr_t>(x) % 64 == 0) return x;
    thread_local std::shared_ptr<std::byte> buffer;
    thread_local std::size_t capacity = 0;
    const std::size_t n_bytes = static_cast<std::size_t>(n_floats) * sizeof(float);
    if (capacity < n_bytes) {
        buffer = heap_buffer(n_bytes, fill::none);
        capacity = n_bytes;
    }
    float* copy = reinterpret_cast<float*>(buffer.get());
    std::copy(x, x + n_floats, copy);
    return copy;
}

// Rows [r0, r1) against every token: y[t*n_out + r] = dot(W row r, token t), `rows<R>(row, stride,
// t, out)` computing R consecutive rows for token t (the same sums whatever R). One token reads
// one row at a time, so that each thread reads W as one sequential stream, which the hardware
// prefetchers follow at full bandwidth: 4 rows read side by side (4 streams) reached only ~13 GB/s
// of the ~23 GB/s one core can read for f32 and f16, and 1.5-3x less than one row for the
// integer kernels (measured, docs/benchmarks.md). Several tokens are compute-bound instead, and
// take 4 rows at a time to share each activation load among them (1.5x faster at 2-16 tokens).
template <class RowsFn>
inline void rows_by_tokens(const tensor& w, float* y, std::int64_t n_tokens, std::int64_t r0, std::int64_t r1, RowsFn&& rows) {
    constexpr int group = 4;
    const std::int64_t n_out = w.dim(0), stride = w.stride_bytes(0);
    std::int64_t r = r0;
    if (n_tokens > 1) {
        float out[group];
        for (; r + group <= r1; r += group) {
            const std::byte* row = w.raw() + r * stride;
            for (std::int64_t t = 0; t < n_tokens; ++t) {
                rows.template operator()<group>(row, stride, t, out);
                for (int i = 0; i < group; ++i) y[t * n_out + r + i] = out[i];
            }
        }
    }
    for (; r < r1; ++r) {
        const std::byte* row = w.raw() + r * stride;
        for (std::int64_t t = 0; t < n_tokens; ++t) rows.template operator()<1>(row, stride, t, y + t * n_out + r);
    }
}

// Most tokens one pass of the float few-token kernel (dot_float_tokens) dots with a row: 6 tokens x 4
// chains of accumulators + 4 weight vectors fit the 32 vector registers of AVX-512 (256-bit dot_ops).
inline constexpr std::int64_t k_float_token_group = 6;

// f.template operator()<N>() with N the run-time count n of a token group, 1 <= n <= Max (Max for
// anything larger): from a group's size to the kernels' compile-time token count.
template <int Max, class F>
inline void with_token_count(std::int64_t n, F&& f) {
    [&]<int... I>(std::integer_sequence<int, I...>) {
        (void)((n == I + 1 || I + 1 == Max ? (f.template operator()<I + 1>(), true) : false) || ...);
    }(std::make_integer_sequence<int, Max>{});
}

inline bool is_float_type(dtype t) { return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16; }

// Rows [r0, r1) of a float-type W against every token.
inline void float_rows(const tensor& w, const float* x, float* y, std::int64_t n_tokens, std::int64_t r0, std::int64_t r1) {
    const std::int64_t n_in = w.dim(1);
    [[maybe_unused]] const bool use_avx512 = float_kernels_use_avx512();
    auto run = [&]<float_kind K>() {
        if (n_tokens == 1) {
            const std::byte* row = w.raw() + r0 * w.stride_bytes(0);
#if defined(MINIGPT_AVX512F_DISPATCH)
            if (use_avx512) return avx512::dot_float_row_range<K>(row, w.stride_bytes(0), x, n_in, y + r0, r1 - r0);
#endif
            return native::dot_float_row_range<K>(row, w.stride_bytes(0), x, n_in, y + r0, r1 - r0);
        }
        // Several tokens: each row read once and dotted with up to k_max_tokens tokens at a time,
        // the tokens split into near-equal groups (9 = 5 + 4) that re-read the row from L1.
        const std::int64_t n_groups = (n_tokens + k_float_token_group - 1) / k_float_token_group;
        const std::int64_t n_out = w.dim(0), stride = w.stride_bytes(0);
        for (std::int64_t r = r0; r < r1; ++r) {
            const std::byte* row = w.raw() + r * stride;
            for (std::int64_t g = 0, t0 = 0; g < n_groups; ++g) {
                const std::int64_t t1 = n_tokens * (g + 1) / n_groups;
                auto tokens = [&]<int T>() {
#if defined(MINIGPT_AVX512F_DISPATCH)
                    if (use_avx512) return avx512::dot_float_tokens<K, T>(row, x + t0 * n_in, n_in, n_in, y + t0 * n_out + r, n_out);
#endif
                    native::dot_float_tokens<K, T>(row, x + t0 * n_in, n_in, n_in, y + t0 * n_out + r, n_out);
                };
                with_token_count<6>(t1 - t0, tokens);
                t0 = t1;
            }
        }
    };
    if (w.type() == dtype::f32) run.template operator()<float_kind::f32>();
    else if (w.type() == dtype::f16) run.template operator()<float_kind::f16>();
    else run.template operator()<float_kind::bf16>();
}

// Several tokens on Q8_0 or Q4_0 where dot_tokens_avx2 exists: up to 8
// tokens share each load (and unpacking) of a weight block; more tokens are split into near-equal
// groups (9 = 5 + 4). With several groups each piece of rows (32 rows, ~140 KiB of Q8_0 at n_in
// 4096) stays in L2 while the groups take turns on it, so a 512-token prefill reads the weights once
// from memory. Same sums as the row kernel per token.
inline void int8_token_rows(const tensor& w, const float* x, float* y, std::int64_t n_tokens, int threads) {
#if defined(MINIGPT_SIMD_INT8_AVX2) && !defined(MINIGPT_SIMD_INT8_512)
    const std::int64_t n_out = w.dim(0), nb = w.dim(1) / quant::k_qk, stride = w.stride_bytes(0);
    const quant::act_q8_32* act = quantize_activations<quant::act_q8_32>(x, n_tokens, w.dim(1));
    const std::int64_t n_groups = (n_tokens + 7) / 8;
    const auto run = [&]<class Ops>() {
        parallel_for_balanced(n_out, threads, [&](std::int64_t r0, std::int64_t r1) {
            for (std::int64_t g = 0, t0 = 0; g < n_groups; ++g) {
                const std::int64_t t1 = n_tokens * (g + 1) / n_groups;
                const quant::act_q8_32* a = act + t0 * nb;
                const auto group = [&]<int T>() {
                    for (std::int64_t r = r0; r < r1; ++r) {
                        dot_tokens_avx2<Ops, T>(w.raw() + r * stride, a, nb, nb, y + t0 * n_out + r, n_out);
                    }
                };
                with_token_count<8>(t1 - t0, group);
                t0 = t1;
            }
        }, n_groups > 1 ? std::max<std::int64_t>(balanced_chunk(stride), 32) : balanced_chunk(stride));
    };
    if (w.type() == dtype::q8_0) run.template operator()<q8_0_token_ops>();
    else run.template operator()<q4_0_token_ops>();
#else
    (void)w, (void)x, (void)y, (void)n_tokens, (void)threads;
#endif
}

// The few-token path for every dtype (validation done by the caller; nothing here throws).
inline void matmul_dots(const tensor& w, const float* x, float* y, std::int64_t n_tokens, int n_threads) {
    const std::int64_t n_out = w.dim(0), n_in = w.dim(1);
    const int threads = w.n_bytes() < k_parallel_min_bytes ? 1 : n_threads;
    if (is_float_type(w.type())) {
        x = aligned_activations(x, n_tokens * n_in);
        parallel_for_balanced(n_out, threads, [&](std::int64_t r0, std::int64_t r1) { float_rows(w, x, y, n_tokens, r0, r1); },
                              balanced_chunk(w.stride_bytes(0)));
        return;
    }
    auto run = [&](auto&& rows) {
        parallel_for_balanced(n_out, threads, [&](std::int64_t r0, std::int64_t r1) { rows_by_tokens(w, y, n_tokens, r0, r1, rows); },
                              balanced_chunk(w.stride_bytes(0)));
    };
    auto rows_32 = [&](auto kernel) {
        const std::int64_t nb = n_in / quant::k_qk;
        const quant::act_q8_32* act = quantize_activations<quant::act_q8_32>(x, n_tokens, n_in);
        run([&]<int R>(const std::byte* row, std::int64_t stride, std::int64_t t, float* out) {
            kernel.template operator()<R>(row, stride, act + t * nb, nb, out);
        });
    };
    auto rows_256 = [&](auto kernel) {
        const std::int64_t nb = n_in / quant::k_qk_k;
        const quant::act_q8_256* act = quantize_activations<quant::act_q8_256>(x, n_tokens, n_in);
        run([&]<int R>(const std::byte* row, std::int64_t stride, std::int64_t t, float* out) {
            kernel.template operator()<R>(row, stride, act + t * nb, nb, out);
        });
    };
#define MINIGPT_KERNEL(NAME) []<int R>(const std::byte* row, std::int64_t stride, const auto* act, std::int64_t nb, float* out) { \
        NAME<R>(row, stride, act, nb, out);                                                                                   \
    }
    if ((w.type() == dtype::q8_0 || w.type() == dtype::q4_0) && n_tokens > 1 && int8_token_kernels_available())
        return int8_token_rows(w, x, y, n_tokens, threads);
    switch (w.type()) {
        case dtype::q8_0: return rows_32(MINIGPT_KERNEL(dot_q8_0_rows));
        case dtype::q4_0: return rows_32(MINIGPT_KERNEL(dot_q4_0_rows));
        case dtype::q4_1: return rows_32(MINIGPT_KERNEL(dot_q4_1_rows));
        case dtype::q5_0: return rows_32(MINIGPT_KERNEL(dot_q5_0_rows));
        case dtype::q5_1: return rows_32(MINIGPT_KERNEL(dot_q5_1_rows));
        case dtype::iq4_nl: return rows_32(MINIGPT_KERNEL(dot_iq4_nl_rows));
        case dtype::q2_k: return rows_256(MINIGPT_KERNEL(dot_q2_k_rows));
        case dtype::q3_k: return rows_256(MINIGPT_KERNEL(dot_q3_k_rows));
        case dtype::q4_k: return rows_256(MINIGPT_KERNEL(dot_q4_k_rows));
        case dtype::q5_k: return rows_256(MINIGPT_KERNEL(dot_q5_k_rows));
        case dtype::q6_k: return rows_256(MINIGPT_KERNEL(dot_q6_k_rows));
        case dtype::iq4_xs: return rows_256(MINIGPT_KERNEL(dot_iq4_xs_rows));
        default: return;  // float types were handled above
    }
#undef MINIGPT_KERNEL
}

inline void matmul_gemm(const tensor& w, const float* x, float* y, std::int64_t n_tokens, int n_threads) {
    parallel_for_balanced(w.dim(0), n_threads, [&](std::int64_t r0, std::int64_t r1) { gemm_rows(w, x, y, n_tokens, r0, r1); },
                          k_gemm_chunk_rows);
}

}  // namespace detail

// Y (n_tokens, n_out) = X (n_tokens, n_in) · Wᵀ; W (n_out, n_in) of any supported dtype, X and Y
// row-major f32 and not overlapping. n_threads <= 0: one per physical core. Throws shape_error on
// a W that is not rank 2 or has no data, null x / y, or negative n_tokens. For quantised W and
// fewer than gemm_min_tokens tokens, X is rounded to 8-bit blocks first (see docs/formats.md).
inline void matmul(const tensor& w, const float* x, float* y, std::int64_t n_tokens, int n_threads = 0) {
    detail::check_matmul("matmul", w, x, y, n_tokens);
    if (n_tokens == 0 || w.dim(0) == 0) return;
    if (w.dim(1) == 0) {
        std::fill(y, y + n_tokens * w.dim(0), 0.0f);
        return;
    }
    if (n_tokens >= detail::gemm_min_tokens(w.type())) detail::matmul_gemm(w, x, y, n_tokens, n_threads);
    else detail::matmul_dots(w, x, y, n_tokens, n_threads);
}

// y (n_out) = W x (n_in): the n_tokens == 1 case.
inline void gemv(const tensor& w, const float* x, float* y, int n_threads = 0) {
    detail::check_matmul("gemv", w, x, y, 1);
    matmul(w, x, y, 1, n_threads);
}

// One product of matmul_shared: y (n_tokens, w.n_out()) = X · wᵀ.
struct matmul_target {
    const packed_matrix& w;
    float* y;
};

// Several products of the same input (below); the packed case of matmul is its one-target case.
inline void matmul_shared(std::initializer_list<matmul_target> targets, const float* x, std::int64_t n_tokens,
                          int n_threads = 0);

// matmul with a prepared weight: the packed integer kernels (any n_tokens) when W was repacked,
// otherwise exactly matmul(w.source(), ...). X is rounded to 8-bit blocks as for the dot kernels.
inline void matmul(const packed_matrix& w, const float* x, float* y, std::int64_t n_tokens, int n_threads = 0) {
    if (!w.is_packed()) return matmul(w.source(), x, y, n_tokens, n_threads);
    detail::check_matmul("matmul", w.source(), x, y, n_tokens);  // errors named for the caller's function
    matmul_shared({{w, y}}, x, n_tokens, n_threads);
}

inline void gemv(const packed_matrix& w, const float* x, float* y, int n_threads = 0) {
    detail::check_matmul("gemv", w.source(), x, y, 1);
    matmul(w, x, y, 1, n_threads);
}

// Several products of the same input X (Q, K and V; gate and up) with the same results as one
// matmul call per target. When the weights are all packed with one type, or all of one float type
// with few tokens, the products share one parallel region, whose rows are the targets' rows end to
// end (and, packed, one quantisation of X): in decoding each region costs a fork, a join and the
// wait for the slower thread, ~16% of Llama 360M's decode time with one region per matrix.
inline void matmul_shared(std::initializer_list<matmul_target> targets, const float* x, std::int64_t n_tokens,
                          int n_threads) {
    if (targets.size() == 0) return;
    const packed_matrix& first = targets.begin()->w;
    bool fuse = n_tokens > 0;
    for (const auto& t : targets) {
        detail::check_matmul("matmul_shared", t.w.source(), x, t.y, n_tokens);
        if (t.w.n_in() != first.n_in())
            throw shape_error("matmul_shared: weights take inputs of different widths, " + first.source().shape_string() +
                              " and " + t.w.source().shape_string());
        fuse = fuse && t.w.type() == first.type() && t.w.is_packed() == first.is_packed();
    }
    if (n_tokens == 0) return;
    const bool packed = first.is_packed();
    fuse = fuse && (packed || (detail::is_float_type(first.type()) && n_tokens < detail::gemm_min_tokens(first.type())));
    // One float target is exactly matmul's few-token path; one packed target is matmul(packed) itself.
    if (!fuse || (targets.size() == 1 && !packed)) {
        for (const auto& t : targets) matmul(t.w, x, t.y, n_tokens, n_threads);
        return;
    }
    // Work units: 16-row groups (packed) or rows, numbered across the targets in order.
    std::int64_t n_units = 0, n_bytes = 0;
    for (const auto& t : targets) {
        n_units += packed ? t.w.layout().n_groups : t.w.n_out();
        n_bytes += t.w.source().n_bytes();
    }
    const quant::act_q8_32_seeded* act =
        packed ? detail::quantize_activations_seeded(x, n_tokens, first.n_in(), first.type(), n_threads) : nullptr;
    if (!packed) x = detail::aligned_activations(x, n_tokens * first.n_in());
    const std::int64_t unit_bytes = packed ? first.layout().group_bytes : first.source().stride_bytes(0);
    const int threads = n_bytes * std::min<std::int64_t>(n_tokens, 8) < detail::k_parallel_min_bytes ? 1 : n_threads;
    parallel_for_balanced(n_units, threads, [&](std::int64_t b, std::int64_t e) {
        std::int64_t start = 0;
        for (const auto& t : targets) {
            const std::int64_t units = packed ? t.w.layout().n_groups : t.w.n_out();
            const std::int64_t u0 = std::max(b, start) - start, u1 = std::min(e, start + units) - start;
            if (u0 < u1) {
                if (packed) detail::packed_groups(t.w.layout(), t.w.packed_data(), act, n_tokens, t.y, t.w.n_out(), u0, u1);
                else detail::float_rows(t.w.source(), x, t.y, n_tokens, u0, u1);
            }
            start += units;
        }
    }, detail::balanced_chunk(unit_bytes));
}

// Scalar reference: each row of W decoded with quant::dequantize_row, products accumulated in
// double, rounded to float once. For tests; no quantisation of the activations.
inline void matmul_reference(const tensor& w, const float* x, float* y, std::int64_t n_tokens) {
    detail::check_matmul("matmul_reference", w, x, y, n_tokens);
    const std::int64_t n_out = w.dim(0), n_in = w.dim(1);
    std::vector<float> row(static_cast<std::size_t>(n_in));
    for (std::int64_t r = 0; r < n_out; ++r) {
        quant::dequantize_row(w.type(), w.row_ptr(r), row.data(), n_in);
        for (std::int64_t t = 0; t < n_tokens; ++t) {
            double s = 0.0;
            for (std::int64_t i = 0; i < n_in; ++i) s += static_cast<double>(row[static_cast<std::size_t>(i)]) * x[t * n_in + i];
            y[t * n_out + r] = static_cast<float>(s);
        }
    }
}

}  // namespace minigpt::kernels

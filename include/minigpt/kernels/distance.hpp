// Squared-L2 distance and dot-product kernels for nearest-neighbour search over float32
// and float16 keys (used by knn/; they know nothing of datastores).
//
// The hot loop of exact search is one query against millions of keys, so it is
// memory-bound: keys are read once, in order, and the kernel only has to keep up
// with the memory bus. float16 keys halve the bytes read; they are widened to float32
// in registers by simd::load_f16 (the project's wrapper of the F16C / AVX-512
// conversion) and go through the same fused multiply-adds. The scalar references
// beside the fast paths are what the tests hold them to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/half.hpp"
#include "minigpt/simd/convert.hpp"

namespace minigpt::kernels::distance {

// Scalar references, accumulating in double so the tests have an independent yardstick.
inline double l2_sq_reference(const float* a, const float* b, std::int64_t dim) {
    double s = 0.0;
    for (std::int64_t i = 0; i < dim; ++i) {
        const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
        s += d * d;
    }
    return s;
}
inline double l2_sq_reference_f16(const float* q, const std::uint16_t* k, std::int64_t dim) {
    double s = 0.0;
    for (std::int64_t i = 0; i < dim; ++i) {
        const double d = static_cast<double>(q[i]) - static_cast<double>(fp16_to_fp32(k[i]));
        s += d * d;
    }
    return s;
}

// dst[i] = float(src[i]) for n halves; exact (every fp16 value is a float32 value).
inline void widen_f16(const std::uint16_t* src, float* dst, std::int64_t n) { simd::f16_to_f32_row(src, dst, n); }

namespace detail {

// A key row as float32 lanes: float keys load as they are, float16 keys are widened (exactly).
template <class Key>
inline simd::f32_batch load_key(const Key* k) {
    if constexpr (std::is_same_v<Key, float>) return simd::f32_batch::load_unaligned(k);
    else return simd::load_f16(k);
}
template <class Key>
inline float key_at(const Key* k, std::int64_t i) {
    if constexpr (std::is_same_v<Key, float>) return k[i];
    else return fp16_to_fp32(k[i]);
}

// sum_i (q[i] - k[i])^2 in float32 with four independent accumulators (latency hiding).
template <class Key>
inline float l2_sq_any(const float* q, const Key* k, std::int64_t dim) {
    using batch = simd::f32_batch;
    constexpr std::int64_t w = static_cast<std::int64_t>(batch::size);
    batch acc[4] = {batch(0.0f), batch(0.0f), batch(0.0f), batch(0.0f)};
    std::int64_t i = 0;
    for (; i + 4 * w <= dim; i += 4 * w)
        for (int u = 0; u < 4; ++u) {
            const batch d = batch::load_unaligned(q + i + u * w) - load_key(k + i + u * w);
            acc[u] = xsimd::fma(d, d, acc[u]);
        }
    for (; i + w <= dim; i += w) {
        const batch d = batch::load_unaligned(q + i) - load_key(k + i);
        acc[0] = xsimd::fma(d, d, acc[0]);
    }
    float s = xsimd::hadd((acc[0] + acc[1]) + (acc[2] + acc[3]));
    for (; i < dim; ++i) {
        const float d = q[i] - key_at(k, i);
        s += d * d;
    }
    return s;
}

}  // namespace detail

// sum_i (a[i] - b[i])^2.
inline float l2_sq(const float* a, const float* b, std::int64_t dim) { return detail::l2_sq_any(a, b, dim); }

// Query in float32, key in float16 widened on the fly.
inline float l2_sq_f16(const float* q, const std::uint16_t* k, std::int64_t dim) { return detail::l2_sq_any(q, k, dim); }

inline float dot(const float* a, const float* b, std::int64_t n) {
    using batch = simd::f32_batch;
    constexpr std::int64_t w = static_cast<std::int64_t>(batch::size);
    batch acc0(0.0f), acc1(0.0f);
    std::int64_t i = 0;
    for (; i + 2 * w <= n; i += 2 * w) {
        acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
        acc1 = xsimd::fma(batch::load_unaligned(a + i + w), batch::load_unaligned(b + i + w), acc1);
    }
    for (; i + w <= n; i += w) acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
    float s = xsimd::hadd(acc0 + acc1);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

inline float sq_norm(const float* a, std::int64_t dim) {
    using batch = simd::f32_batch;
    constexpr std::int64_t w = static_cast<std::int64_t>(batch::size);
    batch acc0(0.0f), acc1(0.0f);
    std::int64_t i = 0;
    for (; i + 2 * w <= dim; i += 2 * w) {
        const batch x0 = batch::load_unaligned(a + i), x1 = batch::load_unaligned(a + i + w);
        acc0 = xsimd::fma(x0, x0, acc0);
        acc1 = xsimd::fma(x1, x1, acc1);
    }
    for (; i + w <= dim; i += w) {
        const batch x = batch::load_unaligned(a + i);
        acc0 = xsimd::fma(x, x, acc0);
    }
    float s = xsimd::hadd(acc0 + acc1);
    for (; i < dim; ++i) s += a[i] * a[i];
    return s;
}

namespace detail {

// C[i * ldc + j] = a_i . b_j for an MA x NB tile: MA * NB accumulators stay in registers,
// so each step loads MA + NB vectors for MA * NB fused multiply-adds.
template <int MA, int NB>
inline void dot_tile(const float* a, const float* b, std::int64_t d, float* c, std::int64_t ldc) {
    using batch = simd::f32_batch;
    constexpr std::int64_t w = static_cast<std::int64_t>(batch::size);
    batch acc[MA][NB];
    for (int i = 0; i < MA; ++i)
        for (int j = 0; j < NB; ++j) acc[i][j] = batch(0.0f);
    std::int64_t t = 0;
    for (; t + w <= d; t += w) {
        batch bv[NB];
        for (int j = 0; j < NB; ++j) bv[j] = batch::load_unaligned(b + j * d + t);
        for (int i = 0; i < MA; ++i) {
            const batch av = batch::load_unaligned(a + i * d + t);
            for (int j = 0; j < NB; ++j) acc[i][j] = xsimd::fma(av, bv[j], acc[i][j]);
        }
    }
    const std::int64_t rem = d - t;
    for (int i = 0; i < MA; ++i)
        for (int j = 0; j < NB; ++j) {
            float s = xsimd::hadd(acc[i][j]);
            const float* ar = a + i * d + t;
            const float* br = b + j * d + t;
            for (std::int64_t r = 0; r < rem; ++r) s += ar[r] * br[r];
            c[i * ldc + j] = s;
        }
}

template <int NB>
inline void dot_rows(const float* a, std::int64_t rows, const float* b, std::int64_t d, float* c, std::int64_t ldc) {
    switch (rows) {
        case 1: dot_tile<1, NB>(a, b, d, c, ldc); break;
        case 2: dot_tile<2, NB>(a, b, d, c, ldc); break;
        case 3: dot_tile<3, NB>(a, b, d, c, ldc); break;
        case 4: dot_tile<4, NB>(a, b, d, c, ldc); break;
        case 5: dot_tile<5, NB>(a, b, d, c, ldc); break;
        default: dot_tile<6, NB>(a, b, d, c, ldc); break;
    }
}

}  // namespace detail

// All dot products between the rows of a (na, d) and b (nb, d), both row-major:
// c (na, nb) with row stride ldc. This is the GEMM behind batched distances and k-means
// assignment: b is taken 128 rows at a time (a 384 KiB chunk at d = 768 stays in L2),
// and swept by 6 x 4 register tiles (24 accumulators + 5 operands fit the 32 AVX-512
// registers), a's 6 rows staying in L1 across the chunk. Measured on Zen 4 at d = 768:
// about 64 GFLOP/s per core, three quarters of the FMA peak (4 x 4 tiles reached 28).
inline void dot_products(const float* a, std::int64_t na, const float* b, std::int64_t nb, std::int64_t d, float* c, std::int64_t ldc) {
    constexpr std::int64_t chunk = 128;
    for (std::int64_t b0 = 0; b0 < nb; b0 += chunk) {
        const std::int64_t b1 = b0 + chunk < nb ? b0 + chunk : nb;
        for (std::int64_t i = 0; i < na; i += 6) {
            const std::int64_t rows = na - i < 6 ? na - i : 6;
            std::int64_t j = b0;
            for (; j + 4 <= b1; j += 4) detail::dot_rows<4>(a + i * d, rows, b + j * d, d, c + i * ldc + j, ldc);
            for (; j < b1; ++j) detail::dot_rows<1>(a + i * d, rows, b + j * d, d, c + i * ldc + j, ldc);
        }
    }
}

}  // namespace minigpt::kernels::distance

namespace minigpt::knn {
// The kNN code calls these kernels unqualified.
using namespace minigpt::kernels::distance;
}  // namespace minigpt::knn

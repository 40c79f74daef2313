// Horizontal sums of many float batches at once (the last step of dot-product tiles).
//
// Reducing each accumulator separately costs a shuffle tree per vector; reducing eight
// together shares the shuffles (three rounds of pairwise hadd plus one 128-bit swap give
// all eight sums in one register). xsimd 8.1's own haddp for AVX-512 returns the sums
// in a permuted lane order, so this is written with AVX intrinsics; other targets fall
// back to xsimd::hadd per batch.
#pragma once

#include <cstddef>

#include <xsimd/xsimd.hpp>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "minigpt/simd/convert.hpp"

namespace minigpt::simd {

#if defined(__AVX__)
// The sum of a's 8 lanes in the order sum8_transposed adds them: ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7)).
inline float sum8_one(__m256 a) {
    const __m256 h = _mm256_hadd_ps(a, a);  // (a0+a1, a2+a3, ., ., a4+a5, a6+a7, ., .)
    const __m256 q = _mm256_hadd_ps(h, h);  // lane 0: (a0+a1)+(a2+a3); lane 4: (a4+a5)+(a6+a7)
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1)));
}

// out[i] = sum of the 8 lanes of v[i], i < 8.
inline __m256 sum8_transposed(const __m256* v) {
    const __m256 h01 = _mm256_hadd_ps(v[0], v[1]), h23 = _mm256_hadd_ps(v[2], v[3]);
    const __m256 h45 = _mm256_hadd_ps(v[4], v[5]), h67 = _mm256_hadd_ps(v[6], v[7]);
    // q0123 = [lanes 0-3 sums of v0..v3 | lanes 4-7 sums of v0..v3]
    const __m256 q0123 = _mm256_hadd_ps(h01, h23), q4567 = _mm256_hadd_ps(h45, h67);
    return _mm256_add_ps(_mm256_permute2f128_ps(q0123, q4567, 0x20), _mm256_permute2f128_ps(q0123, q4567, 0x31));
}
#endif

// out[i] = sum of all lanes of v[i] for i < n. Every v[i] is summed in the same order whether it
// is reduced in a group of eight or alone, so a GEMM tile's sums do not depend on where in the tile
// (or in how large a tile) a token's row fell: a token's logits do not depend on its batch.
inline void reduce_add_each(const f32_batch* v, int n, float* out) {
    int i = 0;
#if defined(__AVX512F__)
    static_assert(f32_lanes == 16);
    auto halves_of = [](const f32_batch& a) {
        // Through memory rather than a 512-bit extract: GCC 12 warns falsely on every
        // extract intrinsic, and the compiler turns this back into register moves.
        alignas(64) float lanes[16];
        a.store_aligned(lanes);
        return _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
    };
    for (; i + 8 <= n; i += 8) {
        __m256 halves[8];
        for (int j = 0; j < 8; ++j) halves[j] = halves_of(v[i + j]);
        _mm256_storeu_ps(out + i, sum8_transposed(halves));
    }
    for (; i < n; ++i) out[i] = sum8_one(halves_of(v[i]));
#elif defined(__AVX__)
    static_assert(f32_lanes == 8);
    for (; i + 8 <= n; i += 8) {
        __m256 regs[8];
        for (int j = 0; j < 8; ++j) regs[j] = v[i + j];
        _mm256_storeu_ps(out + i, sum8_transposed(regs));
    }
    for (; i < n; ++i) out[i] = sum8_one(v[i]);
#else
    for (; i < n; ++i) out[i] = xsimd::hadd(v[i]);
#endif
}

}  // namespace minigpt::simd

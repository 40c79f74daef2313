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
// out[i] = sum of the 8 lanes of v[i], i < 8.
inline __m256 sum8_transposed(const __m256* v) {
    const __m256 h01 = _mm256_hadd_ps(v[0], v[1]), h23 = _mm256_hadd_ps(v[2], v[3]);
    const __m256 h45 = _mm256_hadd_ps(v[4], v[5]), h67 = _mm256_hadd_ps(v[6], v[7]);
    // q0123 = [lanes 0-3 sums of v0..v3 | lanes 4-7 sums of v0..v3]
    const __m256 q0123 = _mm256_hadd_ps(h01, h23), q4567 = _mm256_hadd_ps(h45, h67);
    return _mm256_add_ps(_mm256_permute2f128_ps(q0123, q4567, 0x20), _mm256_permute2f128_ps(q0123, q4567, 0x31));
}
#endif

// out[i] = sum of all lanes of v[i] for i < n.
inline void reduce_add_each(const f32_batch* v, int n, float* out) {
    int i = 0;
#if defined(__AVX512F__)
    static_assert(f32_lanes == 16);
    for (; i + 8 <= n; i += 8) {
        __m256 halves[8];
        for (int j = 0; j < 8; ++j) {
            // Through memory rather than a 512-bit extract: GCC 12 warns falsely on every
            // extract intrinsic, and the compiler turns this back into register moves.
            alignas(64) float lanes[16];
            v[i + j].store_aligned(lanes);
            halves[j] = _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
        }
        _mm256_storeu_ps(out + i, sum8_transposed(halves));
    }
#elif defined(__AVX__)
    static_assert(f32_lanes == 8);
    for (; i + 8 <= n; i += 8) {
        __m256 regs[8];
        for (int j = 0; j < 8; ++j) regs[j] = v[i + j];
        _mm256_storeu_ps(out + i, sum8_transposed(regs));
    }
#endif
    for (; i < n; ++i) out[i] = xsimd::hadd(v[i]);
}

}  // namespace minigpt::simd

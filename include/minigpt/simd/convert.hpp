// Vector conversions between f32 and the 16-bit float formats (fp16, bf16).
//
// xsimd 8 has no half-precision types, so the loads that widen 16-bit floats into an
// xsimd float batch wrap F16C / AVX-512 intrinsics here, with a scalar fallback (the
// exact converters of core/half.hpp) for any other target. Hardware fp16 -> f32 is exact
// and f32 -> fp16 with round-to-nearest-even matches fp32_to_fp16 on every input, so the
// fast and scalar paths give identical bits (tests/quant_test.cpp checks this).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "minigpt/core/half.hpp"
#include "minigpt/simd/avx512f.hpp"

namespace minigpt::simd {

using arch = xsimd::default_arch;
using f32_batch = xsimd::batch<float, arch>;
inline constexpr std::size_t f32_lanes = f32_batch::size;

// Pins a loaded vector in a register. GCC otherwise re-reads a value that several FMAs
// share straight from memory in each of them (load folding), which makes register-blocked
// kernels load-bound; an empty asm that "modifies" the register forbids that rematerialisation.
template <class T, class A>
inline void keep_in_register(xsimd::batch<T, A>& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    typename xsimd::batch<T, A>::register_type r = v;
    asm("" : "+v"(r));
    v = r;
#else
    (void)v;
#endif
}

// One fp16 value to f32; a single instruction with F16C, used per block for scales.
inline float half_to_float(std::uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return fp16_to_fp32(h);
#endif
}

// Batch-size fp16 values at p (any alignment) widened to f32. A template so that the
// branches for other vector widths are discarded rather than type-checked.
template <class A = arch>
inline xsimd::batch<float, A> load_f16(const std::uint16_t* p) {
    constexpr std::size_t lanes = xsimd::batch<float, A>::size;
#if defined(__AVX512F__)
    // The maskz forms with a full mask avoid GCC 12's false -Wmaybe-uninitialized on the
    // _mm512_undefined_* pass-through operand of the plain intrinsics; the code is the same.
    if constexpr (lanes == 16)
        return _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
#endif
#if defined(__F16C__)
    if constexpr (lanes == 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    if constexpr (lanes == 4) return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#endif
    alignas(64) float tmp[lanes];
    for (std::size_t i = 0; i < lanes; ++i) tmp[i] = fp16_to_fp32(p[i]);
    return xsimd::batch<float, A>::load_aligned(tmp);
}

// Batch-size bf16 values at p widened to f32 (bf16 is the top half of an f32: shift left 16).
template <class A = arch>
inline xsimd::batch<float, A> load_bf16(const std::uint16_t* p) {
    constexpr std::size_t lanes = xsimd::batch<float, A>::size;
#if defined(__AVX512F__)
    if constexpr (lanes == 16)
        return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(
            0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
#endif
#if defined(__AVX2__)
    if constexpr (lanes == 8)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
#endif
    alignas(64) float tmp[lanes];
    for (std::size_t i = 0; i < lanes; ++i) tmp[i] = bf16_to_fp32(p[i]);
    return xsimd::batch<float, A>::load_aligned(tmp);
}

// Batch-size int8 / uint8 values at p widened to f32 (exact).
template <class A = arch>
inline xsimd::batch<float, A> load_i8_as_f32(const std::int8_t* p) {
    constexpr std::size_t lanes = xsimd::batch<float, A>::size;
#if defined(__AVX512F__)
    if constexpr (lanes == 16)
        return _mm512_maskz_cvtepi32_ps(0xffff, _mm512_maskz_cvtepi8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#endif
#if defined(__AVX2__)
    if constexpr (lanes == 8)
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#endif
    alignas(64) float tmp[lanes];
    for (std::size_t i = 0; i < lanes; ++i) tmp[i] = static_cast<float>(p[i]);
    return xsimd::batch<float, A>::load_aligned(tmp);
}

// n fp16 / bf16 values to f32 (any n); fp16 through AVX-512 chosen at run time in builds without F16C.
inline void f16_to_f32_row(const std::uint16_t* src, float* dst, std::int64_t n) {
#if defined(MINIGPT_AVX512F_DISPATCH) && !defined(__F16C__)
    if (avx512f::supported()) return avx512f::f16_to_f32_row(src, dst, n);
#endif
    const std::int64_t n_vec = n - n % static_cast<std::int64_t>(f32_lanes);
    for (std::int64_t i = 0; i < n_vec; i += f32_lanes) load_f16<>(src + i).store_unaligned(dst + i);
    for (std::int64_t i = n_vec; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}
inline void bf16_to_f32_row(const std::uint16_t* src, float* dst, std::int64_t n) {
    const std::int64_t n_vec = n - n % static_cast<std::int64_t>(f32_lanes);
    for (std::int64_t i = 0; i < n_vec; i += f32_lanes) load_bf16<>(src + i).store_unaligned(dst + i);
    for (std::int64_t i = n_vec; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

// n f32 values to fp16, round to nearest even.
inline void f32_to_f16_row(const float* src, std::uint16_t* dst, std::int64_t n) {
#if defined(MINIGPT_AVX512F_DISPATCH) && !defined(__F16C__)
    if (avx512f::supported()) return avx512f::f32_to_f16_row(src, dst, n);
#endif
    std::int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

}  // namespace minigpt::simd

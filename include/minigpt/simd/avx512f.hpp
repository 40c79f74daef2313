// AVX-512 F/BW/VL/DQ for code chosen at run time, whatever the compiler flags: raw 512-bit
// registers in functions carrying GCC/Clang target attributes, which compile in any x86-64 build
// and run only after supported() has checked the CPU. f32_ops is the vector-operation set the float
// kernels are written against (simd/float_ops.hpp has its xsimd twin); the row converters serve
// simd/convert.hpp. MINIGPT_AVX512F_DISPATCH is defined where this exists (x86-64, GCC or Clang).
// xsimd cannot serve here: xsimd 8 defines its AVX-512 batch types only when the translation unit
// is compiled for AVX-512.
#pragma once

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MINIGPT_AVX512F_DISPATCH 1

#include <immintrin.h>

#include <cstdint>

#include "minigpt/simd/int8.hpp"  // reduce_add(__m256): the one 256-bit horizontal sum

#define MINIGPT_TARGET_AVX512F __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

namespace minigpt::simd::avx512f {

// True when the CPU (and OS) run AVX-512 F/BW/VL/DQ: Intel Skylake-SP and later server parts,
// AMD Zen 4 and later. Checked once.
inline bool supported() {
    static const bool yes = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }();
    return yes;
}

#define MINIGPT_AVX512F_OP MINIGPT_TARGET_AVX512F __attribute__((always_inline)) static inline
struct f32_ops {
    using reg = __m512;
    static constexpr std::int64_t lanes = 16;
    static constexpr int dot_chains = 4;
    static constexpr int held_x = 0;
    MINIGPT_AVX512F_OP reg zero() { return _mm512_setzero_ps(); }
    MINIGPT_AVX512F_OP reg load(const float* p) { return _mm512_loadu_ps(p); }
    MINIGPT_AVX512F_OP void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
    // The maskz forms with a full mask avoid GCC 12's false -Wmaybe-uninitialized on the
    // _mm512_undefined_* pass-through operand of the plain intrinsics; the code is the same.
    MINIGPT_AVX512F_OP reg load_f16(const std::uint16_t* p) {
        return _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    // bf16 is the top half of an f32: widen to 32 bits and shift left by 16.
    MINIGPT_AVX512F_OP reg load_bf16(const std::uint16_t* p) {
        const __m512i wide = _mm512_maskz_cvtepu16_epi32(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, wide, 16));
    }
    MINIGPT_AVX512F_OP reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    MINIGPT_AVX512F_OP reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    MINIGPT_AVX512F_OP float reduce(reg a) {
        // (GCC 12 implements _mm512_castps512_ps256 with an undefined pass-through too.)
        const __m256 low = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(a), 0));
        const __m256 high = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(a), 1));
        return simd::reduce_add(_mm256_add_ps(low, high));
    }
    MINIGPT_AVX512F_OP void keep(reg& a) { asm("" : "+v"(a)); }
    // out[i] = sum of the lanes of v[i]; one at a time (this twin only runs in builds without
    // AVX-512 flags, where the GEMM tile's 16 reductions are a few percent of its work).
    MINIGPT_AVX512F_OP void reduce_each(const reg* v, int n, float* out) {
        for (int i = 0; i < n; ++i) out[i] = reduce(v[i]);
    }
};
// The row-dot kernel's operations (simd/float_ops.hpp's native_dot_ops for builds with AVX-512
// flags): 256-bit registers, of which AVX-512 VL gives 32, so 4 rows x 4 chains fit.
struct f32x8_ops {
    using reg = __m256;
    static constexpr std::int64_t lanes = 8;
    static constexpr int dot_chains = 4;
    static constexpr int held_x = 24;
    MINIGPT_AVX512F_OP reg zero() { return _mm256_setzero_ps(); }
    MINIGPT_AVX512F_OP reg load(const float* p) { return _mm256_loadu_ps(p); }
    MINIGPT_AVX512F_OP reg load_f16(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
    MINIGPT_AVX512F_OP reg load_bf16(const std::uint16_t* p) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
    }
    MINIGPT_AVX512F_OP reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    MINIGPT_AVX512F_OP reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    MINIGPT_AVX512F_OP float reduce(reg a) { return simd::reduce_add(a); }
    MINIGPT_AVX512F_OP void keep(reg& a) { asm("" : "+v"(a)); }
};
#undef MINIGPT_AVX512F_OP

// n fp16 values to f32 and back (round to nearest even), 16 at a time: simd/convert.hpp's row
// converters call these in builds without F16C flags, where fp16 would be converted in software.
MINIGPT_TARGET_AVX512F inline void f16_to_f32_row(const std::uint16_t* src, float* dst, std::int64_t n) {
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, f32_ops::load_f16(src + i));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}
MINIGPT_TARGET_AVX512F inline void f32_to_f16_row(const float* src, std::uint16_t* dst, std::int64_t n) {
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                            _mm512_maskz_cvtps_ph(0xffff, _mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace minigpt::simd::avx512f

#endif

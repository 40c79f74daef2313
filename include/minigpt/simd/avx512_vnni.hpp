// AVX-512 VNNI primitives for kernels chosen at run time, whatever the compiler flags.
//
// xsimd 8 fixes its vector types per translation unit from the compiler flags: a program built
// for baseline x86-64 has no AVX-512 batches at all, and one built with -march=native runs on
// no older CPU. The hottest kernel (the packed integer matmul, kernels/matmul_packed.hpp) is
// therefore written on these wrappers instead: raw 512-bit registers in functions carrying
// GCC/Clang target attributes, which compile in any x86-64 build and are called only after
// supported() has checked the CPU. Every function here is marked MINIGPT_TARGET_AVX512_VNNI,
// and so must be every function that calls them with vectors in flight (so that they inline).
// MINIGPT_AVX512_VNNI_DISPATCH is defined where this exists (x86-64 with GCC or Clang).
//
// The masked / maskz intrinsic forms are used where the plain ones pass _mm512_undefined_*()
// through, on which GCC 12 warns falsely.
#pragma once

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MINIGPT_AVX512_VNNI_DISPATCH 1

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "minigpt/simd/avx512f.hpp"

#define MINIGPT_TARGET_AVX512_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

namespace minigpt::simd::vnni512 {

// True when the CPU (and OS) run AVX-512 F/BW/VL/DQ (simd/avx512f.hpp) and VNNI: Intel Ice Lake
// and later server parts, AMD Zen 4 and later. Checked once.
inline bool supported() {
    static const bool yes = avx512f::supported() && __builtin_cpu_supports("avx512vnni");
    return yes;
}

using bytes = __m512i;  // 64 bytes
using i32 = __m512i;    // 16 int32 lanes
using f32 = __m512;     // 16 float lanes

MINIGPT_TARGET_AVX512_VNNI inline bytes load(const std::byte* p) { return _mm512_loadu_si512(p); }

// Bytes & 0x0f, and (bytes >> 4) & 0x0f: the two nibble planes of 64 packed Q4_0 bytes.
MINIGPT_TARGET_AVX512_VNNI inline bytes low_nibbles(bytes v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0f)); }
MINIGPT_TARGET_AVX512_VNNI inline bytes high_nibbles(bytes v) {
    return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f));
}

// acc[r] + sum_{k<4} a[4r+k] * x[k] (a unsigned, x signed; exact): the 4 activation bytes at x
// broadcast to every lane, which compilers fold into vpdpbusd's memory operand.
MINIGPT_TARGET_AVX512_VNNI inline i32 dot_bcast(i32 acc, bytes a, const std::int8_t* x) {
    std::int32_t x4;
    std::memcpy(&x4, x, 4);
    return _mm512_dpbusd_epi32(acc, a, _mm512_set1_epi32(x4));
}

MINIGPT_TARGET_AVX512_VNNI inline i32 splat(std::int32_t v) { return _mm512_set1_epi32(v); }
MINIGPT_TARGET_AVX512_VNNI inline f32 splat(float v) { return _mm512_set1_ps(v); }
MINIGPT_TARGET_AVX512_VNNI inline f32 zero() { return _mm512_setzero_ps(); }

// 16 fp16 values widened to f32 (exact).
MINIGPT_TARGET_AVX512_VNNI inline f32 load_f16(const std::uint16_t* p) {
    return _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

MINIGPT_TARGET_AVX512_VNNI inline f32 to_float(i32 v) { return _mm512_maskz_cvtepi32_ps(0xffff, v); }
MINIGPT_TARGET_AVX512_VNNI inline f32 mul(f32 a, f32 b) { return _mm512_mul_ps(a, b); }
MINIGPT_TARGET_AVX512_VNNI inline f32 fma(f32 a, f32 b, f32 c) { return _mm512_fmadd_ps(a, b, c); }

// Stores lanes [0, n) of v at p (n <= 16).
MINIGPT_TARGET_AVX512_VNNI inline void store_first(float* p, f32 v, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
}

// Pins a vector in a register: GCC otherwise re-derives a value that many instructions share (a
// nibble plane) from memory in each of them.
MINIGPT_TARGET_AVX512_VNNI inline void keep_in_register(bytes& v) { asm("" : "+v"(v)); }

}  // namespace minigpt::simd::vnni512

#endif

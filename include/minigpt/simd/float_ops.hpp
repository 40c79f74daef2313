// The float vector operations a kernel body is written against, in two sets with one interface,
// so that the body is written once (kernels/matmul_dot_float.inl) and compiled for both:
//
//  * native_f32_ops: xsimd at the width the compiler flags allow (the kernels' usual form);
//  * avx512f::f32_ops (simd/avx512f.hpp): raw 512-bit registers in functions carrying target
//    attributes, run only after avx512f::supported() has checked the CPU. A program built for
//    baseline x86-64 (no -march) thereby streams f32/f16/bf16 weights with AVX-512 on a CPU that
//    has it, as the packed integer kernels do (simd/avx512_vnni.hpp).
//
// The row-dot kernel of decode takes its own set, `dot_ops`: 256-bit registers where AVX-512 is
// there (native_dot_ops below, avx512f::f32x8_ops), the full width otherwise.
//
// A body using avx512f::f32_ops must itself carry MINIGPT_TARGET_AVX512F, so that the operations
// (always_inline) inline into it.
#pragma once

#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "minigpt/simd/avx512f.hpp"
#include "minigpt/simd/convert.hpp"
#include "minigpt/simd/reduce.hpp"

namespace minigpt::simd {

struct native_f32_ops {
    using reg = f32_batch;
    static constexpr std::int64_t lanes = static_cast<std::int64_t>(f32_lanes);
    // Independent FMA chains per row in the row-dot kernel: 4 where 32 vector registers hold 4
    // rows x 4 chains (AVX-512), else 2 (16 registers).
    static constexpr int dot_chains = lanes >= 16 ? 4 : 2;
    static constexpr int held_x = 0;  // x vectors the one-token row kernel keeps in registers
    static reg zero() { return reg(0.0f); }
    static reg load(const float* p) { return reg::load_unaligned(p); }
    static void store(float* p, reg v) { v.store_unaligned(p); }
    static reg load_f16(const std::uint16_t* p) { return simd::load_f16<>(p); }
    static reg load_bf16(const std::uint16_t* p) { return simd::load_bf16<>(p); }
    static reg fma(reg a, reg b, reg c) { return xsimd::fma(a, b, c); }
    static reg add(reg a, reg b) { return a + b; }
    static float reduce(reg a) { return xsimd::hadd(a); }
    static void keep(reg& a) { keep_in_register(a); }
    static void reduce_each(const reg* v, int n, float* out) { reduce_add_each(v, n, out); }
};

#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// The row-dot kernel's operations in an AVX-512 build: 256-bit registers, 4 chains per row (32
// registers hold 4 rows x 4 chains plus the shared activations). Streaming f32 rows from memory,
// 256-bit FMAs kept two cores at ~100% of the read loop's bandwidth where 512-bit ones reached
// 90-94% (AMD Zen 4, which splits 512-bit operations in two; docs/kernels.md).
struct native_dot_ops {
    using reg = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
    static constexpr std::int64_t lanes = 8;
    static constexpr int dot_chains = 4;
    static constexpr int held_x = 24;  // + 4 chains + temporaries: 32 registers
    static reg zero() { return reg(0.0f); }
    static reg load(const float* p) { return reg::load_unaligned(p); }
    static reg load_f16(const std::uint16_t* p) { return simd::load_f16<xsimd::fma3<xsimd::avx2>>(p); }
    static reg load_bf16(const std::uint16_t* p) { return simd::load_bf16<xsimd::fma3<xsimd::avx2>>(p); }
    static reg fma(reg a, reg b, reg c) { return xsimd::fma(a, b, c); }
    static reg add(reg a, reg b) { return a + b; }
    static float reduce(reg a) { return xsimd::hadd(a); }
    static void keep(reg& a) { keep_in_register(a); }
};
#else
using native_dot_ops = native_f32_ops;
#endif

}  // namespace minigpt::simd

// The float vector operations a kernel body is written against, in two sets with one interface,
// so that the body is written once (kernels/matmul_dot_float.inl) and compiled for both:
//
//  * native_f32_ops: xsimd at the width the compiler flags allow (the kernels' usual form);
//  * avx512f::f32_ops (simd/avx512f.hpp): raw 512-bit registers in functions carrying target
//    attributes, run only after avx512f::supported() has checked the CPU. A program built for
//    baseline x86-64 (no -march) thereby streams f32/f16/bf16 weights with AVX-512 on a CPU that
//    has it, as the packed integer kernels do (simd/avx512_vnni.hpp).
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

}  // namespace minigpt::simd

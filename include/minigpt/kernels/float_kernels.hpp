// The float kernels that run-time dispatch covers, compiled twice: in namespace native on xsimd
// at the build's own width, and on x86-64 in namespace avx512 with AVX-512 target attributes, for
// builds without AVX-512 flags running on a CPU with it (simd/float_ops.hpp). Each is written once,
// in an .inl file included here per namespace against that namespace's vector operations (`ops`,
// and `dot_ops` for the row-dot kernel: 256-bit registers where AVX-512 is there; simd/float_ops.hpp):
//
//  * dot_float_rows<K, R>(w, stride, x, n, out): R f32/f16/bf16 weight rows dotted with x
//    (matmul_dot_float.inl; decode);
//  * gemm_micro_any(mt, nr, x, ldx, w, ldw, k, c, ldc): c[t*ldc + r] += sum_{i<k} x[t*ldx + i] *
//    w[r*ldw + i] for t < mt <= 4, r < nr <= 4 (matmul_gemm_micro.inl; prefill).
//
// kernels::matmul calls the avx512 twins when float_kernels_use_avx512().
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "minigpt/core/half.hpp"
#include "minigpt/simd/float_ops.hpp"

namespace minigpt::kernels::detail {

enum class float_kind { f32, f16, bf16 };

template <float_kind K>
inline float weight_at(const std::byte* row, std::int64_t i) {
    if constexpr (K == float_kind::f32) return reinterpret_cast<const float*>(row)[i];
    else if constexpr (K == float_kind::f16) return fp16_to_fp32(reinterpret_cast<const std::uint16_t*>(row)[i]);
    else return bf16_to_fp32(reinterpret_cast<const std::uint16_t*>(row)[i]);
}

namespace native {
using ops = simd::native_f32_ops;
using dot_ops = simd::native_dot_ops;
#define MINIGPT_FLOAT_KERNEL_TARGET
#include "minigpt/kernels/matmul_dot_float.inl"
#include "minigpt/kernels/matmul_gemm_micro.inl"
#undef MINIGPT_FLOAT_KERNEL_TARGET
}  // namespace native

#if defined(MINIGPT_AVX512F_DISPATCH)
namespace avx512 {
using ops = simd::avx512f::f32_ops;
using dot_ops = simd::avx512f::f32x8_ops;
#define MINIGPT_FLOAT_KERNEL_TARGET MINIGPT_TARGET_AVX512F
#include "minigpt/kernels/matmul_dot_float.inl"
#include "minigpt/kernels/matmul_gemm_micro.inl"
#undef MINIGPT_FLOAT_KERNEL_TARGET
}  // namespace avx512
#endif

// True when the float kernels should be the avx512 twins: the build's own flags lack AVX-512 and
// the CPU has it.
inline bool float_kernels_use_avx512() {
#if defined(MINIGPT_AVX512F_DISPATCH) && !defined(__AVX512F__)
    return simd::avx512f::supported();
#else
    return false;
#endif
}

}  // namespace minigpt::kernels::detail

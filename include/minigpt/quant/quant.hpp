// Row conversions between f32 and every GGUF element type minigpt supports.
//
// dequantize_row / quantize_row are the one entry point the rest of the library (GGUF
// reader and writer, embeddings, KV cache, tests) uses to turn a row of any dtype into
// floats and back. Quantised types decode with the vector dequantisers of
// quant/dequant_fast.hpp and encode with the reference quantisers of quant/reference.hpp;
// f16/bf16 use the vector converters of simd/convert.hpp. Every fast path gives the same
// bits as its scalar reference (tests/quant_test.cpp). Block layouts: docs/formats.md.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/quant/blocks.hpp"
#include "minigpt/quant/dequant_fast.hpp"
#include "minigpt/quant/reference.hpp"
#include "minigpt/quant/reference_k.hpp"
#include "minigpt/quant/reference_q.hpp"
#include "minigpt/simd/convert.hpp"

namespace minigpt::quant {

namespace detail {
// Takes null-ness flags rather than the pointers: GCC 12 assumes a const pointer argument is
// read and warns about callers' not-yet-written output buffers.
inline void check_row(const char* fn, dtype type, bool has_src, bool has_dst, std::int64_t n) {
    const auto& tr = traits(type);  // throws minigpt::error on an unsupported type id
    if (n < 0) throw shape_error(std::string(fn) + ": negative element count " + std::to_string(n));
    if (n % tr.block_size != 0)
        throw shape_error(std::string(fn) + ": " + std::to_string(n) + " elements is not a multiple of the " +
                          std::string(tr.name) + " block size " + std::to_string(tr.block_size));
    if (n > 0 && (!has_src || !has_dst))
        throw shape_error(std::string(fn) + ": null " + (has_src ? "destination" : "source") + " pointer");
}
}  // namespace detail

// dequantize_row without the checks, for kernels that validated their tensor up front and
// call this inside parallel regions (where nothing may throw). Unknown types are a no-op.
inline void dequantize_row_unchecked(dtype type, const void* src, float* dst, std::int64_t n) noexcept {
    if (n <= 0) return;
    switch (type) {
        case dtype::f32: std::memmove(dst, src, static_cast<std::size_t>(n) * sizeof(float)); return;
        case dtype::f16: simd::f16_to_f32_row(static_cast<const std::uint16_t*>(src), dst, n); return;
        case dtype::bf16: simd::bf16_to_f32_row(static_cast<const std::uint16_t*>(src), dst, n); return;
        case dtype::q8_0: fast::dequantize_q8_0(static_cast<const block_q8_0*>(src), dst, n); return;
        case dtype::q4_0: fast::dequantize_q4_0(static_cast<const block_q4_0*>(src), dst, n); return;
        case dtype::q4_k: fast::dequantize_q4_k(static_cast<const block_q4_k*>(src), dst, n); return;
        case dtype::q6_k: fast::dequantize_q6_k(static_cast<const block_q6_k*>(src), dst, n); return;
        case dtype::q4_1: fast::dequantize_q4_1(static_cast<const block_q4_1*>(src), dst, n); return;
        case dtype::q5_0: fast::dequantize_q5_0(static_cast<const block_q5_0*>(src), dst, n); return;
        case dtype::q5_1: fast::dequantize_q5_1(static_cast<const block_q5_1*>(src), dst, n); return;
        case dtype::q2_k: fast::dequantize_q2_k(static_cast<const block_q2_k*>(src), dst, n); return;
        case dtype::q3_k: fast::dequantize_q3_k(static_cast<const block_q3_k*>(src), dst, n); return;
        case dtype::q5_k: fast::dequantize_q5_k(static_cast<const block_q5_k*>(src), dst, n); return;
        case dtype::iq4_nl: fast::dequantize_iq4_nl(static_cast<const block_iq4_nl*>(src), dst, n); return;
        case dtype::iq4_xs: fast::dequantize_iq4_xs(static_cast<const block_iq4_xs*>(src), dst, n); return;
    }
}

// dst[0..n) = the n elements of type `type` stored at src. n must be a multiple of the block size.
inline void dequantize_row(dtype type, const void* src, float* dst, std::int64_t n) {
    detail::check_row("dequantize_row", type, src != nullptr, dst != nullptr, n);
    dequantize_row_unchecked(type, src, dst, n);
}

// quantize_row without the checks, for callers that validated the type and size up front and
// run inside parallel regions (where nothing may throw). Unknown types are a no-op.
inline void quantize_row_unchecked(dtype type, const float* src, void* dst, std::int64_t n) noexcept {
    if (n <= 0) return;
    switch (type) {
        case dtype::f32: std::memmove(dst, src, static_cast<std::size_t>(n) * sizeof(float)); return;
        case dtype::f16: simd::f32_to_f16_row(src, static_cast<std::uint16_t*>(dst), n); return;
        case dtype::bf16: {
            auto* out = static_cast<std::uint16_t*>(dst);
            for (std::int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(src[i]);
            return;
        }
        case dtype::q8_0: ref::quantize_q8_0(src, static_cast<block_q8_0*>(dst), n); return;
        case dtype::q4_0: ref::quantize_q4_0(src, static_cast<block_q4_0*>(dst), n); return;
        case dtype::q4_k: ref::quantize_q4_k_ggml(src, static_cast<block_q4_k*>(dst), n); return;
        case dtype::q6_k: ref::quantize_q6_k_ggml(src, static_cast<block_q6_k*>(dst), n); return;
        case dtype::q4_1: ref::quantize_q4_1(src, static_cast<block_q4_1*>(dst), n); return;
        case dtype::q5_0: ref::quantize_q5_0(src, static_cast<block_q5_0*>(dst), n); return;
        case dtype::q5_1: ref::quantize_q5_1(src, static_cast<block_q5_1*>(dst), n); return;
        case dtype::q2_k: ref::quantize_q2_k(src, static_cast<block_q2_k*>(dst), n); return;
        case dtype::q3_k: ref::quantize_q3_k(src, static_cast<block_q3_k*>(dst), n); return;
        case dtype::q5_k: ref::quantize_q5_k(src, static_cast<block_q5_k*>(dst), n); return;
        case dtype::iq4_nl: ref::quantize_iq4_nl(src, static_cast<block_iq4_nl*>(dst), n); return;
        case dtype::iq4_xs: ref::quantize_iq4_xs(src, static_cast<block_iq4_xs*>(dst), n); return;
    }
}

// Stores the n floats at src as type `type` at dst (row_bytes(type, n) bytes). Every quantised
// type rounds as llama-quantize does without an importance matrix (ggml's reference quantisers and
// scale searches, quant/reference*.hpp); f16/bf16 round to nearest even.
inline void quantize_row(dtype type, const float* src, void* dst, std::int64_t n) {
    detail::check_row("quantize_row", type, src != nullptr, dst != nullptr, n);
    quantize_row_unchecked(type, src, dst, n);
}

}  // namespace minigpt::quant

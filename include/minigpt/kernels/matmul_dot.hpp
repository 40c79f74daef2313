// Row-dot kernels behind kernels::matmul: R weight rows against one activation vector.
//
// GEMV is bound by streaming the weights, so each kernel reads its rows once, decoding
// blocks in registers. A kernel can take R rows at once and share every activation load
// among them, but matmul calls them with R = 1: on the machines measured, R rows read side
// by side are R memory streams, which the prefetchers serve at a fraction of the bandwidth
// of one (docs/benchmarks.md). Float weights
// (f32/f16/bf16) meet the f32 activation directly; quantised weights meet an
// activation quantised once per call to 8-bit blocks (quant::act_q8_32 / act_q8_256)
// and multiply in exact int32 arithmetic, applying the float block scales once per
// block. The quantised kernels' AVX2 forms (`*_avx2`) carry target attributes and
// run after a CPU check in builds without AVX2 flags (simd/int8.hpp), so a baseline
// x86-64 build does not fall back to scalar code on any CPU made since 2013. Each
// fast kernel has a scalar twin (`*_scalar`) computing the same sum: it is the
// portable fallback elsewhere, and the tests run it against the double-precision
// reference too.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/half.hpp"
#include "minigpt/kernels/float_kernels.hpp"
#include "minigpt/quant/blocks.hpp"
#include "minigpt/simd/convert.hpp"
#include "minigpt/simd/int8.hpp"

namespace minigpt::kernels::detail {

using quant::act_q8_256;
using quant::act_q8_32;
using quant::block_q4_0;
using quant::block_q4_k;
using quant::block_q6_k;
using quant::block_q8_0;

// ---- activation quantisation ---------------------------------------------------------------
// Vector forms of quant::ref::quantize_act_32 / _256 with the same float operations (x * 127/amax,
// round to nearest even), hence the same bytes; the per-call cost matters for small matrices.

// qs[0..n) = round(x * id) for n a multiple of 16; returns the sum of qs.
inline std::int32_t round_block(const float* x, float id, std::int8_t* qs, int n) {
    using B = simd::f32_batch;
    constexpr int L = static_cast<int>(B::size);
    alignas(64) std::int32_t q[256];
    // Round to nearest even by adding 1.5 * 2^23: for |v| <= 2^22 the sum's low mantissa bits are
    // round(v) + 2^22, so subtracting the bits of 1.5 * 2^23 leaves round(v) as an int32. (Plain
    // float ops only: xsimd's AVX-512 conversion intrinsics trip GCC 12's false warnings.)
    using I = xsimd::batch<std::int32_t, simd::arch>;
    const B magic(12582912.0f);
    const I magic_bits(0x4b400000);
    for (int j = 0; j < n; j += L) {
        B v = B::load_unaligned(x + j) * B(id);
        simd::keep_in_register(v);  // the product must be rounded on its own, not fused into the add
        (xsimd::bitwise_cast<I>(v + magic) - magic_bits).store_aligned(q + j);
    }
    // The sum is of the stored bytes: equal to the sum of q for finite x (|q| <= 127), and it cannot
    // overflow when x holds NaN or inf (a hostile model's activations), whose q are arbitrary int32
    // (found by fuzz_gguf_model: signed overflow here).
    std::int32_t sum = 0;
    for (int j = 0; j < n; ++j) {
        qs[j] = static_cast<std::int8_t>(q[j]);
        sum += qs[j];
    }
    return sum;
}

inline float abs_max(const float* x, int n) {
    using B = simd::f32_batch;
    constexpr int L = static_cast<int>(B::size);
    B m(0.0f);
    for (int j = 0; j < n; j += L) {
        const B v = xsimd::abs(B::load_unaligned(x + j));
        m = xsimd::select(v > m, v, m);
    }
    alignas(64) float lanes[L];
    m.store_aligned(lanes);
    float r = 0.0f;
    for (int j = 0; j < L; ++j) r = std::max(r, lanes[j]);
    return r;
}

inline void quantize_act_32(const float* x, act_q8_32* a, std::int64_t n) {
    for (std::int64_t i = 0; i < n / quant::k_qk; ++i) {
        const float* xb = x + i * quant::k_qk;
        const float amax = abs_max(xb, quant::k_qk);
        a[i].d = amax / 127.0f;
        a[i].sum = round_block(xb, amax != 0.0f ? 127.0f / amax : 0.0f, a[i].qs, quant::k_qk);
    }
}

inline void quantize_act_256(const float* x, act_q8_256* a, std::int64_t n) {
    for (std::int64_t i = 0; i < n / quant::k_qk_k; ++i) {
        const float* xb = x + i * quant::k_qk_k;
        const float amax = abs_max(xb, quant::k_qk_k);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int g = 0; g < 16; ++g) a[i].bsums[g] = static_cast<std::int16_t>(round_block(xb + 16 * g, id, a[i].qs + 16 * g, 16));
        a[i].d = amax / 127.0f;
    }
}

// ---- float weights -----------------------------------------------------------------------

// float_kind, weight_at and dot_float_rows are in float_kernels.hpp (compiled twice, for run-time choice).

// ---- Q8_0 x act_q8_32 --------------------------------------------------------------------

inline float dot_q8_0_scalar(const block_q8_0* w, const act_q8_32* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t isum = 0;
        for (int j = 0; j < quant::k_qk; ++j) isum += w[b].qs[j] * a[b].qs[j];
        s += static_cast<float>(isum) * (fp16_to_fp32(w[b].d) * a[b].d);
    }
    return s;
}

#if defined(MINIGPT_SIMD_INT8_AVX2)
template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q8_0_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks,
                                                   float* out) {
    simd::f32x8 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8();
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        simd::i8x32 xq = simd::load_i8x32(a[b].qs);
        simd::keep_in_register(xq);
        for (int r = 0; r < R; ++r) {
            const auto* wb = reinterpret_cast<const block_q8_0*>(w + r * stride) + b;
            const simd::i32x8 p = simd::dot_i8i8(_mm256_setzero_si256(), simd::load_i8x32(wb->qs), xq);
            acc[r] = simd::fma_i32(acc[r], p, simd::f16_scale(wb->d) * a[b].d);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]);
}
#endif

template <int R>
inline void dot_q8_0_rows(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
#if defined(MINIGPT_SIMD_INT8_512)
    // Two blocks per step. Weights go on vpdpbusd's unsigned side as w + 128 (sign bit
    // flipped), so the seed subtracts 128 * sum(x) per block.
    simd::f32x16 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::f32x16(0.0f);
    const std::int64_t n_pairs = n_blocks / 2;
    for (std::int64_t p = 0; p < n_pairs; ++p) {
        const act_q8_32& a0 = a[2 * p];
        const act_q8_32& a1 = a[2 * p + 1];
        simd::i8x64 xq = simd::load_2x32(a0.qs, a1.qs);
        simd::keep_in_register(xq);
        const simd::i32x16 seed = simd::lane0_lane8(-128 * a0.sum, -128 * a1.sum);
        const simd::f32x16 dx = simd::halves(a0.d, a1.d);
        for (int r = 0; r < R; ++r) {
            const auto* wb = reinterpret_cast<const block_q8_0*>(w + r * stride) + 2 * p;
            const simd::i32x16 dot = simd::dot_u8i8(seed, simd::flip_sign_bits(simd::load_2x32(wb[0].qs, wb[1].qs)), xq);
            acc[r] = simd::fma_i32(acc[r], dot, simd::halves_f16(wb[0].d, wb[1].d) * dx);
        }
    }
    for (int r = 0; r < R; ++r) {
        out[r] = xsimd::hadd(acc[r]);
        if (n_blocks % 2)
            out[r] += dot_q8_0_scalar(reinterpret_cast<const block_q8_0*>(w + r * stride) + n_blocks - 1, a + n_blocks - 1, 1);
    }
#else
#if defined(MINIGPT_SIMD_INT8_AVX2)
    if (simd::int8_avx2_supported()) return dot_q8_0_rows_avx2<R>(w, stride, a, n_blocks, out);
#endif
    for (int r = 0; r < R; ++r) out[r] = dot_q8_0_scalar(reinterpret_cast<const block_q8_0*>(w + r * stride), a, n_blocks);
#endif
}

// ---- Q4_0 x act_q8_32 --------------------------------------------------------------------
// sum_j (q_j - 8) x_j = sum_j q_j x_j - 8 * sum_j x_j: the nibbles stay unsigned for the u8*i8
// product and the offset costs one multiply by the activation block's stored sum.

inline float dot_q4_0_scalar(const block_q4_0* w, const act_q8_32* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t isum = 0;
        for (int j = 0; j < quant::k_qk / 2; ++j)
            isum += (w[b].qs[j] & 0x0f) * a[b].qs[j] + (w[b].qs[j] >> 4) * a[b].qs[j + 16];
        isum -= 8 * a[b].sum;
        s += static_cast<float>(isum) * (fp16_to_fp32(w[b].d) * a[b].d);
    }
    return s;
}

#if defined(MINIGPT_SIMD_INT8_AVX2)
template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q4_0_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks,
                                                   float* out) {
    simd::f32x8 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8();
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        simd::i8x32 xq = simd::load_i8x32(a[b].qs);
        simd::keep_in_register(xq);
        const simd::i32x8 offset = simd::lane0(-8 * a[b].sum);
        for (int r = 0; r < R; ++r) {
            const auto* wb = reinterpret_cast<const block_q4_0*>(w + r * stride) + b;
            const simd::i32x8 p = simd::dot_u8i8(offset, simd::unpack_nibbles_16(wb->qs), xq);
            acc[r] = simd::fma_i32(acc[r], p, simd::f16_scale(wb->d) * a[b].d);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]);
}
// One row against T tokens (token t's blocks at a + t * a_stride): y[t * ldy] = the one-token row
// kernel (dot_q8_0_rows_avx2<1> / dot_q4_0_rows_avx2<1>) of that token, bit for bit (the same int32
// lanes, scale products, FMAs and reduction), so a token's result does not depend on how many others
// share its batch. Each weight block is prepared once for the T tokens (Q8_0: its bytes and their
// absolute values; Q4_0: its nibbles unpacked) with its scale: per token and block 6 vector
// operations remain instead of the row kernel's 9, which is what several tokens in a batch are
// bound by once the row is in L1. T <= 8 keeps the accumulators and the block in the 16 registers.
// Ops: the weight type's two steps, prepare(block) and dot(prepared, activation block).
struct q8_0_token_ops {
    using block = block_q8_0;
    struct prepared {
        simd::i8x32 q;
        simd::u8x32 abs_q;
    };
    MINIGPT_TARGET_AVX2 static prepared prepare(const block& b) {
        const simd::i8x32 q = simd::load_i8x32(b.qs);
        return {q, simd::abs_i8(q)};
    }
    MINIGPT_TARGET_AVX2 static simd::i32x8 dot(const prepared& w, const act_q8_32& x) {
        return simd::dot_abs_signed(w.abs_q, simd::sign_like(simd::load_i8x32(x.qs), w.q));
    }
};
struct q4_0_token_ops {
    using block = block_q4_0;
    using prepared = simd::u8x32;
    MINIGPT_TARGET_AVX2 static prepared prepare(const block& b) { return simd::unpack_nibbles_16(b.qs); }
    MINIGPT_TARGET_AVX2 static simd::i32x8 dot(const prepared& w, const act_q8_32& x) {
        return simd::dot_u8i8(simd::lane0(-8 * x.sum), w, simd::load_i8x32(x.qs));
    }
};

template <class Ops, int T>
MINIGPT_TARGET_AVX2 inline void dot_tokens_avx2(const std::byte* w, const act_q8_32* a, std::int64_t a_stride, std::int64_t n_blocks,
                                                float* y, std::int64_t ldy) {
    static_assert(T >= 1 && T <= 8);
    simd::f32x8 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = simd::zero_f32x8();
    const auto* wb = reinterpret_cast<const typename Ops::block*>(w);
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        const typename Ops::prepared wq = Ops::prepare(wb[b]);
        const simd::f32x8 dw = simd::splat_f32(simd::f16_scale(wb[b].d));
        for (int t = 0; t < T; ++t) {
            const act_q8_32& x = a[t * a_stride + b];
            acc[t] = simd::fma_i32(acc[t], Ops::dot(wq, x), simd::mul(dw, simd::broadcast_f32(&x.d)));
        }
    }
    for (int t = 0; t < T; ++t) y[t * ldy] = simd::reduce_add(acc[t]);
}
#endif

// True where dot_tokens_avx2 serves several tokens (AVX2 at run time,
// in builds without the 512-bit kernels, which have no such form).
inline bool int8_token_kernels_available() {
#if defined(MINIGPT_SIMD_INT8_AVX2) && !defined(MINIGPT_SIMD_INT8_512)
    return simd::int8_avx2_supported();
#else
    return false;
#endif
}

template <int R>
inline void dot_q4_0_rows(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
#if defined(MINIGPT_SIMD_INT8_512)
    simd::f32x16 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::f32x16(0.0f);
    const std::int64_t n_pairs = n_blocks / 2;
    for (std::int64_t p = 0; p < n_pairs; ++p) {
        const act_q8_32& a0 = a[2 * p];
        const act_q8_32& a1 = a[2 * p + 1];
        simd::i8x64 xq = simd::load_2x32(a0.qs, a1.qs);
        simd::keep_in_register(xq);
        const simd::i32x16 seed = simd::lane0_lane8(-8 * a0.sum, -8 * a1.sum);
        const simd::f32x16 dx = simd::halves(a0.d, a1.d);
        for (int r = 0; r < R; ++r) {
            const auto* wb = reinterpret_cast<const block_q4_0*>(w + r * stride) + 2 * p;
            const simd::i32x16 dot = simd::dot_u8i8(seed, simd::unpack_nibbles_2x16(wb[0].qs, wb[1].qs), xq);
            acc[r] = simd::fma_i32(acc[r], dot, simd::halves_f16(wb[0].d, wb[1].d) * dx);
        }
    }
    for (int r = 0; r < R; ++r) {
        out[r] = xsimd::hadd(acc[r]);
        if (n_blocks % 2)
            out[r] += dot_q4_0_scalar(reinterpret_cast<const block_q4_0*>(w + r * stride) + n_blocks - 1, a + n_blocks - 1, 1);
    }
#else
#if defined(MINIGPT_SIMD_INT8_AVX2)
    if (simd::int8_avx2_supported()) return dot_q4_0_rows_avx2<R>(w, stride, a, n_blocks, out);
#endif
    for (int r = 0; r < R; ++r) out[r] = dot_q4_0_scalar(reinterpret_cast<const block_q4_0*>(w + r * stride), a, n_blocks);
#endif
}

// ---- Q4_K x act_q8_256 -------------------------------------------------------------------
// x = d*sc*q - dmin*m per sub-block of 32, so
//   dot = d*da * sum_s sc_s * sum_{j in s} q_j a_j  -  dmin*da * sum_s m_s * sum_{j in s} a_j,
// the second sum coming from the activation's group sums.

// The 8 scales (out[0..7]) and 8 mins (out[8..15]) of a Q4_K block, unpacked four at a time
// with 32-bit word operations (same bits as quant::ref::q4_k_scale_min).
inline void q4_k_unpack_scales(const std::uint8_t* packed, std::uint8_t* out) {
    std::uint32_t w0, w1, w2;
    std::memcpy(&w0, packed, 4);
    std::memcpy(&w1, packed + 4, 4);
    std::memcpy(&w2, packed + 8, 4);
    const std::uint32_t words[4] = {
        w0 & 0x3f3f3f3fu,                                            // scales 0-3
        (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4),     // scales 4-7
        w1 & 0x3f3f3f3fu,                                            // mins 0-3
        ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4),  // mins 4-7
    };
    std::memcpy(out, words, 16);
}

inline float dot_q4_k_scalar(const block_q4_k* w, const act_q8_256* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::uint8_t sm[16];
        q4_k_unpack_scales(w[b].scales, sm);
        std::int32_t isum = 0, msum = 0;
        for (int c = 0; c < 4; ++c) {
            std::int32_t lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) {
                lo += (w[b].qs[32 * c + l] & 0x0f) * a[b].qs[64 * c + l];
                hi += (w[b].qs[32 * c + l] >> 4) * a[b].qs[64 * c + 32 + l];
            }
            isum += sm[2 * c] * lo + sm[2 * c + 1] * hi;
        }
        for (int sb = 0; sb < 8; ++sb) msum += sm[8 + sb] * (a[b].bsums[2 * sb] + a[b].bsums[2 * sb + 1]);
        s += fp16_to_fp32(w[b].d) * a[b].d * static_cast<float>(isum) -
             fp16_to_fp32(w[b].dmin) * a[b].d * static_cast<float>(msum);
    }
    return s;
}

#if defined(MINIGPT_SIMD_INT8_AVX2)
template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q4_k_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks,
                                                   float* out) {
    simd::f32x8 acc[R];
    float mins[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8(), mins[r] = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t group32[8];  // activation sums per sub-block of 32
        for (int sb = 0; sb < 8; ++sb) group32[sb] = a[b].bsums[2 * sb] + a[b].bsums[2 * sb + 1];
        for (int r = 0; r < R; ++r) {
            const auto* wb = reinterpret_cast<const block_q4_k*>(w + r * stride) + b;
            std::uint8_t sm[16];
            q4_k_unpack_scales(wb->scales, sm);
            simd::i32x8 isum = _mm256_setzero_si256();
            for (int c = 0; c < 4; ++c) {
                const simd::u8x32 v = simd::load_u8x32(wb->qs + 32 * c);
                isum = simd::dot_u8i8_scaled(isum, simd::low_nibbles(v), simd::load_i8x32(a[b].qs + 64 * c),
                                             simd::splat_i16(static_cast<std::int16_t>(sm[2 * c])));
                isum = simd::dot_u8i8_scaled(isum, simd::high_nibbles(v), simd::load_i8x32(a[b].qs + 64 * c + 32),
                                             simd::splat_i16(static_cast<std::int16_t>(sm[2 * c + 1])));
            }
            std::int32_t msum = 0;
            for (int sb = 0; sb < 8; ++sb) msum += sm[8 + sb] * group32[sb];
            acc[r] = simd::fma_i32(acc[r], isum, simd::f16_scale(wb->d) * a[b].d);
            mins[r] += simd::f16_scale(wb->dmin) * a[b].d * static_cast<float>(msum);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]) - mins[r];
}
#endif

template <int R>
inline void dot_q4_k_rows(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks, float* out) {
#if defined(MINIGPT_SIMD_INT8_AVX2)
    if (simd::int8_avx2_supported()) return dot_q4_k_rows_avx2<R>(w, stride, a, n_blocks, out);
#endif
    for (int r = 0; r < R; ++r) out[r] = dot_q4_k_scalar(reinterpret_cast<const block_q4_k*>(w + r * stride), a, n_blocks);
}

// ---- Q6_K x act_q8_256 -------------------------------------------------------------------
// x = d*sc_g*(q - 32) per group of 16: dot = d*da * (sum_g sc_g * sum_{j in g} q_j a_j
//                                                   - 32 * sum_g sc_g * bsum_g).

inline float dot_q6_k_scalar(const block_q6_k* w, const act_q8_256* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const std::uint8_t* ql = w[b].ql + 64 * h;
            const std::uint8_t* qh = w[b].qh + 32 * h;
            const std::int8_t* x = a[b].qs + 128 * h;
            const std::int8_t* sc = w[b].scales + 8 * h;
            for (int l = 0; l < 32; ++l) {
                const int g = l / 16;
                isum += sc[g] * ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) * x[l];
                isum += sc[g + 2] * ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) * x[l + 32];
                isum += sc[g + 4] * ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) * x[l + 64];
                isum += sc[g + 6] * ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) * x[l + 96];
            }
        }
        for (int g = 0; g < 16; ++g) isum -= 32 * w[b].scales[g] * a[b].bsums[g];
        s += fp16_to_fp32(w[b].d) * a[b].d * static_cast<float>(isum);
    }
    return s;
}

#if defined(MINIGPT_SIMD_INT8_AVX2)
template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q6_k_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks,
                                                   float* out) {
    using simd::bits_and;
    using simd::bits_or;
    simd::f32x8 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8();
    const simd::u8x32 mask_hi = simd::splat_u8(0x30);
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        for (int r = 0; r < R; ++r) {
            const auto* wb = reinterpret_cast<const block_q6_k*>(w + r * stride) + b;
            std::int32_t offset = 0;
            for (int g = 0; g < 16; ++g) offset += wb->scales[g] * a[b].bsums[g];
            simd::i32x8 isum = simd::lane0(-32 * offset);
            for (int h = 0; h < 2; ++h) {
                const simd::u8x32 ql0 = simd::load_u8x32(wb->ql + 64 * h);
                const simd::u8x32 ql1 = simd::load_u8x32(wb->ql + 64 * h + 32);
                const simd::u8x32 qh = simd::load_u8x32(wb->qh + 32 * h);
                const std::int8_t* sc = wb->scales + 8 * h;
                const std::int8_t* x = a[b].qs + 128 * h;
                const simd::u8x32 q1 = bits_or(simd::low_nibbles(ql0), bits_and(simd::shift_left_u8<4>(qh), mask_hi));
                const simd::u8x32 q2 = bits_or(simd::low_nibbles(ql1), bits_and(simd::shift_left_u8<2>(qh), mask_hi));
                const simd::u8x32 q3 = bits_or(simd::high_nibbles(ql0), bits_and(qh, mask_hi));
                const simd::u8x32 q4 = bits_or(simd::high_nibbles(ql1), bits_and(simd::shift_right_u8<2>(qh), mask_hi));
                isum = simd::dot_u8i8_scaled(isum, q1, simd::load_i8x32(x), simd::scales_lo_hi(sc[0], sc[1]));
                isum = simd::dot_u8i8_scaled(isum, q2, simd::load_i8x32(x + 32), simd::scales_lo_hi(sc[2], sc[3]));
                isum = simd::dot_u8i8_scaled(isum, q3, simd::load_i8x32(x + 64), simd::scales_lo_hi(sc[4], sc[5]));
                isum = simd::dot_u8i8_scaled(isum, q4, simd::load_i8x32(x + 96), simd::scales_lo_hi(sc[6], sc[7]));
            }
            acc[r] = simd::fma_i32(acc[r], isum, simd::f16_scale(wb->d) * a[b].d);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]);
}
#endif

template <int R>
inline void dot_q6_k_rows(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks, float* out) {
#if defined(MINIGPT_SIMD_INT8_AVX2)
    if (simd::int8_avx2_supported()) return dot_q6_k_rows_avx2<R>(w, stride, a, n_blocks, out);
#endif
    for (int r = 0; r < R; ++r) out[r] = dot_q6_k_scalar(reinterpret_cast<const block_q6_k*>(w + r * stride), a, n_blocks);
}

}  // namespace minigpt::kernels::detail

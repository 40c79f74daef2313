// Row-dot kernels for Q4_1, Q5_0, Q5_1, IQ4_NL (against act_q8_32) and Q2_K, Q3_K, Q5_K, IQ4_XS
// (against act_q8_256), beside the Q8_0 / Q4_0 / Q4_K / Q6_K ones of matmul_dot.hpp.
//
// As there, each weight block is decoded to bytes in registers and multiplied with the quantised
// activations in exact int32 arithmetic, the float block scales applied once per block (the
// activation types are llama.cpp's choice: Q8_0/Q8_1-like blocks of 32 for the 32-element types,
// Q8_K-like blocks of 256 for the K-quants and IQ4_XS). Offsets (Q5_0's -16, Q3_K's -4) and mins
// (Q4_1, Q5_1, Q2_K, Q5_K) are carried by the activation block sums, so the unsigned weight values
// stay on the u8 side of the byte products. IQ4's non-linear levels are looked up with a byte
// shuffle and multiplied signed. The AVX2 forms (`*_avx2`) carry target attributes and are chosen
// at run time in baseline builds (simd/int8.hpp); each has a scalar twin (`*_scalar`) computing the
// same integer sums, which the tests run against the double-precision reference too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "minigpt/core/half.hpp"
#include "minigpt/kernels/matmul_dot.hpp"
#include "minigpt/quant/blocks.hpp"
#include "minigpt/quant/reference_k.hpp"
#include "minigpt/quant/reference_q.hpp"
#include "minigpt/simd/int8.hpp"

// The AVX2 bodies below are lambdas taking and returning 256-bit vectors; GCC warns (-Wpsabi) that
// their ABI differs from a build without AVX, which does not matter: they are inlined into
// functions with the same target attribute and never cross a call boundary compiled without it.
// Without this, a consumer's plain `-O2` build of the README example printed that warning.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace minigpt::kernels::detail {

using quant::block_iq4_nl;
using quant::block_iq4_xs;
using quant::block_q2_k;
using quant::block_q3_k;
using quant::block_q4_1;
using quant::block_q5_0;
using quant::block_q5_1;
using quant::block_q5_k;

// ---- scalar twins ---------------------------------------------------------------------------

// x = d*q + m (Q4_1 / Q5_1): dot = d*da * sum q a + m*da * sum a.
inline float dot_q4_1_scalar(const block_q4_1* w, const act_q8_32* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t isum = 0;
        for (int j = 0; j < quant::k_qk / 2; ++j) isum += (w[b].qs[j] & 0x0f) * a[b].qs[j] + (w[b].qs[j] >> 4) * a[b].qs[j + 16];
        s += static_cast<float>(isum) * (fp16_to_fp32(w[b].d) * a[b].d) + fp16_to_fp32(w[b].m) * a[b].d * static_cast<float>(a[b].sum);
    }
    return s;
}

inline float dot_q5_0_scalar(const block_q5_0* w, const act_q8_32* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        int q[quant::k_qk];
        quant::ref::q5_values(w[b].qs, w[b].qh, q);
        std::int32_t isum = -16 * a[b].sum;
        for (int j = 0; j < quant::k_qk; ++j) isum += q[j] * a[b].qs[j];
        s += static_cast<float>(isum) * (fp16_to_fp32(w[b].d) * a[b].d);
    }
    return s;
}

inline float dot_q5_1_scalar(const block_q5_1* w, const act_q8_32* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        int q[quant::k_qk];
        quant::ref::q5_values(w[b].qs, w[b].qh, q);
        std::int32_t isum = 0;
        for (int j = 0; j < quant::k_qk; ++j) isum += q[j] * a[b].qs[j];
        s += static_cast<float>(isum) * (fp16_to_fp32(w[b].d) * a[b].d) + fp16_to_fp32(w[b].m) * a[b].d * static_cast<float>(a[b].sum);
    }
    return s;
}

inline float dot_iq4_nl_scalar(const block_iq4_nl* w, const act_q8_32* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t isum = 0;
        for (int j = 0; j < quant::k_qk / 2; ++j)
            isum += quant::k_iq4nl_values[w[b].qs[j] & 0x0f] * a[b].qs[j] + quant::k_iq4nl_values[w[b].qs[j] >> 4] * a[b].qs[j + 16];
        s += static_cast<float>(isum) * (fp16_to_fp32(w[b].d) * a[b].d);
    }
    return s;
}

// x = d*(sc_g & 15)*q - dmin*(sc_g >> 4) per group of 16.
inline float dot_q2_k_scalar(const block_q2_k* w, const act_q8_256* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t isum = 0, msum = 0;
        for (int h = 0; h < 2; ++h)
            for (int k = 0; k < 4; ++k)
                for (int half = 0; half < 2; ++half) {
                    const int g = 8 * h + 2 * k + half;
                    std::int32_t gsum = 0;
                    for (int l = 0; l < 16; ++l)
                        gsum += ((w[b].qs[32 * h + 16 * half + l] >> (2 * k)) & 3) * a[b].qs[128 * h + 32 * k + 16 * half + l];
                    isum += (w[b].scales[g] & 0x0f) * gsum;
                }
        for (int g = 0; g < 16; ++g) msum += (w[b].scales[g] >> 4) * a[b].bsums[g];
        s += fp16_to_fp32(w[b].d) * a[b].d * static_cast<float>(isum) - fp16_to_fp32(w[b].dmin) * a[b].d * static_cast<float>(msum);
    }
    return s;
}

// x = d*sc_g*(q - 4) with q = low 2 bits + 4*hbit: dot = d*da * (sum sc_g sum q a - 4 sum sc_g bsum_g).
inline float dot_q3_k_scalar(const block_q3_k* w, const act_q8_256* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        int sc[16];
        quant::ref::q3_k_scales(w[b].scales, sc);
        std::int32_t isum = 0;
        for (int h = 0; h < 2; ++h)
            for (int k = 0; k < 4; ++k)
                for (int half = 0; half < 2; ++half) {
                    std::int32_t gsum = 0;
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        const int q = ((w[b].qs[32 * h + l] >> (2 * k)) & 3) + 4 * ((w[b].hmask[l] >> (4 * h + k)) & 1);
                        gsum += q * a[b].qs[128 * h + 32 * k + l];
                    }
                    isum += sc[8 * h + 2 * k + half] * gsum;
                }
        for (int g = 0; g < 16; ++g) isum -= 4 * sc[g] * a[b].bsums[g];
        s += fp16_to_fp32(w[b].d) * a[b].d * static_cast<float>(isum);
    }
    return s;
}

inline float dot_q5_k_scalar(const block_q5_k* w, const act_q8_256* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::uint8_t sm[16];
        q4_k_unpack_scales(w[b].scales, sm);
        std::int32_t isum = 0, msum = 0;
        for (int c = 0; c < 4; ++c) {
            std::int32_t lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) {
                lo += ((w[b].qs[32 * c + l] & 0x0f) | (((w[b].qh[l] >> (2 * c)) & 1) << 4)) * a[b].qs[64 * c + l];
                hi += ((w[b].qs[32 * c + l] >> 4) | (((w[b].qh[l] >> (2 * c + 1)) & 1) << 4)) * a[b].qs[64 * c + 32 + l];
            }
            isum += sm[2 * c] * lo + sm[2 * c + 1] * hi;
        }
        for (int sb = 0; sb < 8; ++sb) msum += sm[8 + sb] * (a[b].bsums[2 * sb] + a[b].bsums[2 * sb + 1]);
        s += fp16_to_fp32(w[b].d) * a[b].d * static_cast<float>(isum) - fp16_to_fp32(w[b].dmin) * a[b].d * static_cast<float>(msum);
    }
    return s;
}

inline float dot_iq4_xs_scalar(const block_iq4_xs* w, const act_q8_256* a, std::int64_t n_blocks) {
    float s = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        std::int32_t isum = 0;
        for (int sb = 0; sb < 8; ++sb) {
            const std::uint8_t* qs = w[b].qs + 16 * sb;
            const std::int8_t* x = a[b].qs + 32 * sb;
            std::int32_t ssum = 0;
            for (int j = 0; j < 16; ++j) ssum += quant::k_iq4nl_values[qs[j] & 0x0f] * x[j] + quant::k_iq4nl_values[qs[j] >> 4] * x[j + 16];
            isum += quant::ref::iq4_xs_scale(w[b], sb) * ssum;
        }
        s += fp16_to_fp32(w[b].d) * a[b].d * static_cast<float>(isum);
    }
    return s;
}

// ---- AVX2 forms ---------------------------------------------------------------------------

#if defined(MINIGPT_SIMD_INT8_AVX2)

// Shared loop of the 32-element types: body(wb, xq, a_block) returns the block's int32 vector sum
// and its float scale and adds any per-block float term (mins) to `extra`.
template <class Block, int R, class Body>
MINIGPT_TARGET_AVX2 inline void dot_rows_32_avx2(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks,
                                                 float* out, Body&& body) {
    simd::f32x8 acc[R];
    float extra[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8(), extra[r] = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        simd::i8x32 xq = simd::load_i8x32(a[b].qs);
        simd::keep_in_register(xq);
        for (int r = 0; r < R; ++r) {
            const Block* wb = reinterpret_cast<const Block*>(w + r * stride) + b;
            float scale;
            const simd::i32x8 p = body(wb, xq, a[b], scale, extra[r]);
            acc[r] = simd::fma_i32(acc[r], p, scale);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]) + extra[r];
}

template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q4_1_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
    dot_rows_32_avx2<block_q4_1, R>(w, stride, a, n_blocks, out,
                                    [](const block_q4_1* wb, simd::i8x32 xq, const act_q8_32& ab, float& scale, float& extra) MINIGPT_TARGET_AVX2 {
                                        scale = simd::f16_scale(wb->d) * ab.d;
                                        extra += simd::f16_scale(wb->m) * ab.d * static_cast<float>(ab.sum);
                                        return simd::dot_u8i8(_mm256_setzero_si256(), simd::unpack_nibbles_16(wb->qs), xq);
                                    });
}

template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q5_0_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
    dot_rows_32_avx2<block_q5_0, R>(w, stride, a, n_blocks, out,
                                    [](const block_q5_0* wb, simd::i8x32 xq, const act_q8_32& ab, float& scale, float&) MINIGPT_TARGET_AVX2 {
                                        scale = simd::f16_scale(wb->d) * ab.d;
                                        const simd::u8x32 q = simd::bits_or(simd::unpack_nibbles_16(wb->qs), simd::spread_bits_32(wb->qh, 0x10));
                                        return simd::dot_u8i8(simd::lane0(-16 * ab.sum), q, xq);
                                    });
}

template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q5_1_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
    dot_rows_32_avx2<block_q5_1, R>(w, stride, a, n_blocks, out,
                                    [](const block_q5_1* wb, simd::i8x32 xq, const act_q8_32& ab, float& scale, float& extra) MINIGPT_TARGET_AVX2 {
                                        scale = simd::f16_scale(wb->d) * ab.d;
                                        extra += simd::f16_scale(wb->m) * ab.d * static_cast<float>(ab.sum);
                                        const simd::u8x32 q = simd::bits_or(simd::unpack_nibbles_16(wb->qs), simd::spread_bits_32(wb->qh, 0x10));
                                        return simd::dot_u8i8(_mm256_setzero_si256(), q, xq);
                                    });
}

template <int R>
MINIGPT_TARGET_AVX2 inline void dot_iq4_nl_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
    dot_rows_32_avx2<block_iq4_nl, R>(w, stride, a, n_blocks, out,
                                      [](const block_iq4_nl* wb, simd::i8x32 xq, const act_q8_32& ab, float& scale, float&) MINIGPT_TARGET_AVX2 {
                                          scale = simd::f16_scale(wb->d) * ab.d;
                                          const simd::i8x32 v = simd::lookup_16(simd::unpack_nibbles_16(wb->qs), quant::k_iq4nl_values);
                                          return simd::dot_i8i8(_mm256_setzero_si256(), v, xq);
                                      });
}

// Shared loop of the 256-element types: body(wb, a_block, scale, extra) returns the super-block's
// int32 vector sum, its float scale, and adds a float term (mins) to extra.
template <class Block, int R, class Body>
MINIGPT_TARGET_AVX2 inline void dot_rows_256_avx2(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks,
                                                  float* out, Body&& body) {
    simd::f32x8 acc[R];
    float extra[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8(), extra[r] = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b)
        for (int r = 0; r < R; ++r) {
            const Block* wb = reinterpret_cast<const Block*>(w + r * stride) + b;
            float scale;
            const simd::i32x8 p = body(wb, a[b], scale, extra[r]);
            acc[r] = simd::fma_i32(acc[r], p, scale);
        }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]) + extra[r];
}

// Q2_K and Q3_K keep every scale in registers: the 16 group scales are widened to int16 once per
// super-block and each 32-byte chunk's pair of them is shuffled out of that register (scale_pair);
// Q2_K's mins meet the activation group sums in one int16 multiply-add, as Q3_K's "- 4" offset does.
// The 2-bit fields are cut with immediate shifts, and the eight chunk products go to two int32
// chains (one per 128-element half) so that the vpdpwssd latencies overlap. Scalar scale handling
// here held these two at a third of the other K-quants' speed (docs/benchmarks.md).
template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q2_k_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks,
                                                   float* out) {
    simd::f32x8 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8();
    const __m128i low4 = _mm_set1_epi8(0x0f);
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        const act_q8_256& ab = a[b];
        const simd::i16x16 bsums = simd::load_i16x16(ab.bsums);
        for (int r = 0; r < R; ++r) {
            const block_q2_k* wb = reinterpret_cast<const block_q2_k*>(w + r * stride) + b;
            const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb->scales));
            const simd::i16x16 sc = simd::widen_u8_i16(_mm_and_si128(packed, low4));
            const simd::i16x16 mins = simd::widen_u8_i16(_mm_and_si128(_mm_srli_epi16(packed, 4), low4));
            const simd::u8x32 v0 = simd::load_u8x32(wb->qs), v1 = simd::load_u8x32(wb->qs + 32);
            const std::int8_t* x = ab.qs;
            simd::i32x8 s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
            s0 = simd::dot_u8i8_scaled(s0, simd::two_bits_at<0>(v0), simd::load_i8x32(x), simd::scale_pair<0>(sc));
            s1 = simd::dot_u8i8_scaled(s1, simd::two_bits_at<0>(v1), simd::load_i8x32(x + 128), simd::scale_pair<4>(sc));
            s0 = simd::dot_u8i8_scaled(s0, simd::two_bits_at<2>(v0), simd::load_i8x32(x + 32), simd::scale_pair<1>(sc));
            s1 = simd::dot_u8i8_scaled(s1, simd::two_bits_at<2>(v1), simd::load_i8x32(x + 160), simd::scale_pair<5>(sc));
            s0 = simd::dot_u8i8_scaled(s0, simd::two_bits_at<4>(v0), simd::load_i8x32(x + 64), simd::scale_pair<2>(sc));
            s1 = simd::dot_u8i8_scaled(s1, simd::two_bits_at<4>(v1), simd::load_i8x32(x + 192), simd::scale_pair<6>(sc));
            s0 = simd::dot_u8i8_scaled(s0, simd::two_bits_at<6>(v0), simd::load_i8x32(x + 96), simd::scale_pair<3>(sc));
            s1 = simd::dot_u8i8_scaled(s1, simd::two_bits_at<6>(v1), simd::load_i8x32(x + 224), simd::scale_pair<7>(sc));
            const simd::i32x8 msum = simd::dot_i16(_mm256_setzero_si256(), mins, bsums);
            acc[r] = simd::fma_i32(acc[r], _mm256_add_epi32(s0, s1), simd::f16_scale(wb->d) * ab.d);
            acc[r] = simd::fma_i32(acc[r], msum, -(simd::f16_scale(wb->dmin) * ab.d));
        }
    }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]);
}

// The 16 Q3_K scales (6-bit, minus 32) as int16 lanes: the low 4 bits are the nibbles of bytes
// 0-7 (groups 0-7 low, 8-15 high), the high 2 bits of group g at bits 2(g/4) of byte 8 + g%4, i.e.
// lane group g/4 of the word of bytes 8-11 shifted right by 2(g/4) (same values as ref::q3_k_scales).
MINIGPT_TARGET_AVX2 __attribute__((always_inline)) inline simd::i16x16 q3_k_scales_i16(const std::uint8_t* s) {
    const __m128i lo8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s));
    const __m128i low4 = _mm_set1_epi8(0x0f);
    const __m128i nibbles = _mm_unpacklo_epi64(_mm_and_si128(lo8, low4), _mm_and_si128(_mm_srli_epi16(lo8, 4), low4));
    std::int32_t hw;
    std::memcpy(&hw, s + 8, 4);
    const __m128i high = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(hw), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    const __m128i values = _mm_or_si128(nibbles, _mm_slli_epi16(high, 4));
    return simd::widen_i8_i16(_mm_sub_epi8(values, _mm_set1_epi8(32)));
}

template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q3_k_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks,
                                                   float* out) {
    simd::f32x8 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::zero_f32x8();
    for (std::int64_t b = 0; b < n_blocks; ++b) {
        const act_q8_256& ab = a[b];
        const simd::i16x16 bsums = simd::load_i16x16(ab.bsums);
        for (int r = 0; r < R; ++r) {
            const block_q3_k* wb = reinterpret_cast<const block_q3_k*>(w + r * stride) + b;
            const simd::i16x16 sc = q3_k_scales_i16(wb->scales);
            // x = sc * (q - 4) with q = low 2 bits + 4 * high bit (0..7): the -4 goes through the group sums.
            const simd::i32x8 offset = simd::dot_i16(_mm256_setzero_si256(), sc, bsums);
            const simd::u8x32 hm = simd::load_u8x32(wb->hmask);
            const simd::u8x32 v0 = simd::load_u8x32(wb->qs), v1 = simd::load_u8x32(wb->qs + 32);
            const std::int8_t* x = ab.qs;
            using simd::bits_or;
            simd::i32x8 s0 = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 2)), s1 = _mm256_setzero_si256();
            s0 = simd::dot_u8i8_scaled(s0, bits_or(simd::two_bits_at<0>(v0), simd::bit_as_4<0>(hm)), simd::load_i8x32(x), simd::scale_pair<0>(sc));
            s1 = simd::dot_u8i8_scaled(s1, bits_or(simd::two_bits_at<0>(v1), simd::bit_as_4<4>(hm)), simd::load_i8x32(x + 128), simd::scale_pair<4>(sc));
            s0 = simd::dot_u8i8_scaled(s0, bits_or(simd::two_bits_at<2>(v0), simd::bit_as_4<1>(hm)), simd::load_i8x32(x + 32), simd::scale_pair<1>(sc));
            s1 = simd::dot_u8i8_scaled(s1, bits_or(simd::two_bits_at<2>(v1), simd::bit_as_4<5>(hm)), simd::load_i8x32(x + 160), simd::scale_pair<5>(sc));
            s0 = simd::dot_u8i8_scaled(s0, bits_or(simd::two_bits_at<4>(v0), simd::bit_as_4<2>(hm)), simd::load_i8x32(x + 64), simd::scale_pair<2>(sc));
            s1 = simd::dot_u8i8_scaled(s1, bits_or(simd::two_bits_at<4>(v1), simd::bit_as_4<6>(hm)), simd::load_i8x32(x + 192), simd::scale_pair<6>(sc));
            s0 = simd::dot_u8i8_scaled(s0, bits_or(simd::two_bits_at<6>(v0), simd::bit_as_4<3>(hm)), simd::load_i8x32(x + 96), simd::scale_pair<3>(sc));
            s1 = simd::dot_u8i8_scaled(s1, bits_or(simd::two_bits_at<6>(v1), simd::bit_as_4<7>(hm)), simd::load_i8x32(x + 224), simd::scale_pair<7>(sc));
            acc[r] = simd::fma_i32(acc[r], _mm256_add_epi32(s0, s1), simd::f16_scale(wb->d) * ab.d);
        }
    }
    for (int r = 0; r < R; ++r) out[r] = simd::reduce_add(acc[r]);
}

template <int R>
MINIGPT_TARGET_AVX2 inline void dot_q5_k_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks, float* out) {
    dot_rows_256_avx2<block_q5_k, R>(w, stride, a, n_blocks, out, [](const block_q5_k* wb, const act_q8_256& ab, float& scale, float& extra) MINIGPT_TARGET_AVX2 {
        std::uint8_t sm[16];
        q4_k_unpack_scales(wb->scales, sm);
        std::int32_t msum = 0;
        for (int sb = 0; sb < 8; ++sb) msum += sm[8 + sb] * (ab.bsums[2 * sb] + ab.bsums[2 * sb + 1]);
        extra -= simd::f16_scale(wb->dmin) * ab.d * static_cast<float>(msum);
        scale = simd::f16_scale(wb->d) * ab.d;
        const simd::u8x32 qh = simd::load_u8x32(wb->qh);
        simd::i32x8 isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const simd::u8x32 v = simd::load_u8x32(wb->qs + 32 * c);
            const simd::u8x32 lo = simd::bits_or(simd::low_nibbles(v), simd::select_bit(qh, 2 * c, 0x10));
            const simd::u8x32 hi = simd::bits_or(simd::high_nibbles(v), simd::select_bit(qh, 2 * c + 1, 0x10));
            isum = simd::dot_u8i8_scaled(isum, lo, simd::load_i8x32(ab.qs + 64 * c), simd::splat_i16(static_cast<std::int16_t>(sm[2 * c])));
            isum = simd::dot_u8i8_scaled(isum, hi, simd::load_i8x32(ab.qs + 64 * c + 32), simd::splat_i16(static_cast<std::int16_t>(sm[2 * c + 1])));
        }
        return isum;
    });
}

template <int R>
MINIGPT_TARGET_AVX2 inline void dot_iq4_xs_rows_avx2(const std::byte* w, std::int64_t stride, const act_q8_256* a, std::int64_t n_blocks, float* out) {
    dot_rows_256_avx2<block_iq4_xs, R>(w, stride, a, n_blocks, out, [](const block_iq4_xs* wb, const act_q8_256& ab, float& scale, float&) MINIGPT_TARGET_AVX2 {
        scale = simd::f16_scale(wb->d) * ab.d;
        simd::i32x8 isum = _mm256_setzero_si256();
        for (int sb = 0; sb < 8; ++sb) {
            const simd::i8x32 v = simd::lookup_16(simd::unpack_nibbles_16(wb->qs + 16 * sb), quant::k_iq4nl_values);
            isum = simd::dot_i8i8_scaled(isum, v, simd::load_i8x32(ab.qs + 32 * sb),
                                         simd::splat_i16(static_cast<std::int16_t>(quant::ref::iq4_xs_scale(*wb, sb))));
        }
        return isum;
    });
}

#endif  // MINIGPT_SIMD_INT8_AVX2

// ---- dispatch -------------------------------------------------------------------------------

#if defined(MINIGPT_SIMD_INT8_AVX2)
#define MINIGPT_DOT_ROWS(NAME, BLOCK, ACT)                                                                                     \
    template <int R>                                                                                                           \
    inline void dot_##NAME##_rows(const std::byte* w, std::int64_t stride, const ACT* a, std::int64_t n_blocks, float* out) { \
        if (simd::int8_avx2_supported()) return dot_##NAME##_rows_avx2<R>(w, stride, a, n_blocks, out);                        \
        for (int r = 0; r < R; ++r) out[r] = dot_##NAME##_scalar(reinterpret_cast<const BLOCK*>(w + r * stride), a, n_blocks); \
    }
#else
#define MINIGPT_DOT_ROWS(NAME, BLOCK, ACT)                                                                                     \
    template <int R>                                                                                                           \
    inline void dot_##NAME##_rows(const std::byte* w, std::int64_t stride, const ACT* a, std::int64_t n_blocks, float* out) { \
        for (int r = 0; r < R; ++r) out[r] = dot_##NAME##_scalar(reinterpret_cast<const BLOCK*>(w + r * stride), a, n_blocks); \
    }
#endif

#if defined(MINIGPT_SIMD_INT8_512)
// Q5_0 / Q5_1 two blocks per 512-bit step (as Q4_0's row kernel): the 64 fifth bits of two blocks
// are one mask register, merged into the nibbles with one masked move. With_min adds Q5_1's
// m * da * sum(a) per block.
template <bool with_min, class Block, int R>
inline void dot_q5_rows_512(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
    simd::f32x16 acc[R];
    float extra[R];
    for (int r = 0; r < R; ++r) acc[r] = simd::f32x16(0.0f), extra[r] = 0.0f;
    const std::int64_t n_pairs = n_blocks / 2;
    const __m512i fifth = _mm512_set1_epi8(0x10);
    for (std::int64_t p = 0; p < n_pairs; ++p) {
        const act_q8_32& a0 = a[2 * p];
        const act_q8_32& a1 = a[2 * p + 1];
        simd::i8x64 xq = simd::load_2x32(a0.qs, a1.qs);
        simd::keep_in_register(xq);
        const simd::i32x16 seed = with_min ? simd::i32x16(0) : simd::lane0_lane8(-16 * a0.sum, -16 * a1.sum);
        const simd::f32x16 dx = simd::halves(a0.d, a1.d);
        for (int r = 0; r < R; ++r) {
            const Block* wb = reinterpret_cast<const Block*>(w + r * stride) + 2 * p;
            std::uint32_t h0, h1;
            std::memcpy(&h0, wb[0].qh, 4);
            std::memcpy(&h1, wb[1].qh, 4);
            const __mmask64 bits = static_cast<__mmask64>(h0) | (static_cast<__mmask64>(h1) << 32);
            const __m512i q = _mm512_or_si512(__m512i(simd::unpack_nibbles_2x16(wb[0].qs, wb[1].qs)), _mm512_maskz_mov_epi8(bits, fifth));
            const simd::i32x16 dot = simd::dot_u8i8(seed, simd::u8x64(q), xq);
            acc[r] = simd::fma_i32(acc[r], dot, simd::halves_f16(wb[0].d, wb[1].d) * dx);
            if constexpr (with_min)
                extra[r] += fp16_to_fp32(wb[0].m) * a0.d * static_cast<float>(a0.sum) + fp16_to_fp32(wb[1].m) * a1.d * static_cast<float>(a1.sum);
        }
    }
    for (int r = 0; r < R; ++r) {
        out[r] = xsimd::hadd(acc[r]) + extra[r];
        if (n_blocks % 2) {
            const Block* last = reinterpret_cast<const Block*>(w + r * stride) + n_blocks - 1;
            if constexpr (with_min) out[r] += dot_q5_1_scalar(last, a + n_blocks - 1, 1);
            else out[r] += dot_q5_0_scalar(last, a + n_blocks - 1, 1);
        }
    }
}

template <int R>
inline void dot_q5_0_rows(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
    dot_q5_rows_512<false, block_q5_0, R>(w, stride, a, n_blocks, out);
}
template <int R>
inline void dot_q5_1_rows(const std::byte* w, std::int64_t stride, const act_q8_32* a, std::int64_t n_blocks, float* out) {
    dot_q5_rows_512<true, block_q5_1, R>(w, stride, a, n_blocks, out);
}
#endif  // MINIGPT_SIMD_INT8_512

MINIGPT_DOT_ROWS(q4_1, block_q4_1, act_q8_32)
#if !defined(MINIGPT_SIMD_INT8_512)
MINIGPT_DOT_ROWS(q5_0, block_q5_0, act_q8_32)
MINIGPT_DOT_ROWS(q5_1, block_q5_1, act_q8_32)
#endif
MINIGPT_DOT_ROWS(iq4_nl, block_iq4_nl, act_q8_32)
MINIGPT_DOT_ROWS(q2_k, block_q2_k, act_q8_256)
MINIGPT_DOT_ROWS(q3_k, block_q3_k, act_q8_256)
MINIGPT_DOT_ROWS(q5_k, block_q5_k, act_q8_256)
MINIGPT_DOT_ROWS(iq4_xs, block_iq4_xs, act_q8_256)
#undef MINIGPT_DOT_ROWS

}  // namespace minigpt::kernels::detail

#pragma GCC diagnostic pop

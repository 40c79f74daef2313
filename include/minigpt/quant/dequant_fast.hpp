// Vectorised dequantisation of the block types, giving the same bits as quant/reference.hpp.
//
// Used by quant::dequantize_row and by the GEMM, which decodes weight tiles on the fly, so
// its speed sets the fixed cost of a prefill matmul. Each block is first unpacked into
// signed bytes with plain integer loops (which the compiler vectorises), then widened to
// f32 and scaled a batch at a time with exactly the float operations of the reference:
// one product per element for Q8_0 / Q4_0, (d * scale) * q for Q6_K and a fused
// d*sc*q - dmin*m for Q4_K (see docs/formats.md for why the fused form).
#pragma once

#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "minigpt/quant/blocks.hpp"
#include "minigpt/quant/reference.hpp"
#include "minigpt/quant/reference_k.hpp"
#include "minigpt/quant/reference_q.hpp"
#include "minigpt/simd/convert.hpp"
#include "minigpt/simd/int8.hpp"

namespace minigpt::quant::fast {

namespace detail {
using B = simd::f32_batch;
inline constexpr int L = static_cast<int>(B::size);

// y[0..n) = q[0..n) * scale, n a multiple of the batch size.
inline void scale_bytes(const std::int8_t* q, float scale, float* y, int n) {
    const B s(scale);
    for (int j = 0; j < n; j += L) (simd::load_i8_as_f32(q + j) * s).store_unaligned(y + j);
}
}  // namespace detail

inline void dequantize_q8_0(const block_q8_0* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) detail::scale_bytes(b[i].qs, simd::half_to_float(b[i].d), y + i * k_qk, k_qk);
}

inline void dequantize_q4_0(const block_q4_0* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        alignas(32) std::int8_t q[k_qk];
#if defined(MINIGPT_SIMD_INT8)
        // One 32-byte store: the byte loop below compiles to stores the widening loads cannot
        // forward from, which made this 5x slower than the scalar reference.
        _mm256_store_si256(reinterpret_cast<__m256i*>(q), _mm256_sub_epi8(simd::unpack_nibbles_16(b[i].qs), simd::splat_u8(8)));
#else
        for (int j = 0; j < k_qk / 2; ++j) {
            q[j] = static_cast<std::int8_t>((b[i].qs[j] & 0x0f) - 8);
            q[j + 16] = static_cast<std::int8_t>((b[i].qs[j] >> 4) - 8);
        }
#endif
        detail::scale_bytes(q, simd::half_to_float(b[i].d), y + i * k_qk, k_qk);
    }
}

inline void dequantize_q4_k(const block_q4_k* b, float* y, std::int64_t n) {
    using detail::B;
    using detail::L;
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = simd::half_to_float(b[i].d), dmin = simd::half_to_float(b[i].dmin);
        std::int8_t q[k_qk_k];
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                q[64 * c + l] = static_cast<std::int8_t>(b[i].qs[32 * c + l] & 0x0f);
                q[64 * c + 32 + l] = static_cast<std::int8_t>(b[i].qs[32 * c + l] >> 4);
            }
        for (int s = 0; s < 8; ++s) {
            int sc, m;
            ref::q4_k_scale_min(s, b[i].scales, sc, m);
            const B ds(d * static_cast<float>(sc)), dm(dmin * static_cast<float>(m));
            for (int j = 32 * s; j < 32 * s + 32; j += L)
                xsimd::fms(ds, simd::load_i8_as_f32(q + j), dm).store_unaligned(y + i * k_qk_k + j);
        }
    }
}

inline void dequantize_q6_k(const block_q6_k* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = simd::half_to_float(b[i].d);
        std::int8_t q[k_qk_k];
        for (int h = 0; h < 2; ++h) {
            const std::uint8_t* ql = b[i].ql + 64 * h;
            const std::uint8_t* qh = b[i].qh + 32 * h;
            std::int8_t* qo = q + 128 * h;
            for (int l = 0; l < 32; ++l) {
                qo[l] = static_cast<std::int8_t>(((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32);
                qo[l + 32] = static_cast<std::int8_t>(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
                qo[l + 64] = static_cast<std::int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                qo[l + 96] = static_cast<std::int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        for (int g = 0; g < 16; ++g)
            detail::scale_bytes(q + 16 * g, d * static_cast<float>(b[i].scales[g]), y + i * k_qk_k + 16 * g, 16);
    }
}

// Q5_0 / Q5_1: values gathered to bytes, then one product (and for Q5_1 the fused + m of the
// reference's q * d + m, which is what ggml's expression compiles to with FMA).
inline void dequantize_q5_0(const block_q5_0* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        int v[k_qk];
        ref::q5_values(b[i].qs, b[i].qh, v);
        std::int8_t q[k_qk];
        for (int j = 0; j < k_qk; ++j) q[j] = static_cast<std::int8_t>(v[j] - 16);
        detail::scale_bytes(q, simd::half_to_float(b[i].d), y + i * k_qk, k_qk);
    }
}

inline void dequantize_q5_1(const block_q5_1* b, float* y, std::int64_t n) {
    using detail::B;
    using detail::L;
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        int v[k_qk];
        ref::q5_values(b[i].qs, b[i].qh, v);
        std::int8_t q[k_qk];
        for (int j = 0; j < k_qk; ++j) q[j] = static_cast<std::int8_t>(v[j]);
        const B d(simd::half_to_float(b[i].d)), m(simd::half_to_float(b[i].m));
        for (int j = 0; j < k_qk; j += L) xsimd::fma(simd::load_i8_as_f32(q + j), d, m).store_unaligned(y + i * k_qk + j);
    }
}

inline void dequantize_q5_k(const block_q5_k* b, float* y, std::int64_t n) {
    using detail::B;
    using detail::L;
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = simd::half_to_float(b[i].d), dmin = simd::half_to_float(b[i].dmin);
        std::int8_t q[k_qk_k];
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                q[64 * c + l] = static_cast<std::int8_t>((b[i].qs[32 * c + l] & 0x0f) | (((b[i].qh[l] >> (2 * c)) & 1) << 4));
                q[64 * c + 32 + l] = static_cast<std::int8_t>((b[i].qs[32 * c + l] >> 4) | (((b[i].qh[l] >> (2 * c + 1)) & 1) << 4));
            }
        for (int s = 0; s < 8; ++s) {
            int sc, m;
            ref::q4_k_scale_min(s, b[i].scales, sc, m);
            const B ds(d * static_cast<float>(sc)), dm(dmin * static_cast<float>(m));
            for (int j = 32 * s; j < 32 * s + 32; j += L)
                xsimd::fms(ds, simd::load_i8_as_f32(q + j), dm).store_unaligned(y + i * k_qk_k + j);
        }
    }
}

// ---- Q4_1, IQ4_NL, IQ4_XS, Q2_K, Q3_K ------------------------------------------------------
// Same scheme: the block's values unpacked to bytes (with AVX2 in 32-byte stores, which the
// widening loads that follow can forward from), then one float operation per element as the
// reference has it: q * d (IQ4_NL; IQ4_XS and Q3_K with the group scale d * sc computed first), the
// fused q * d + m of Q4_1 and the fused dl * q - ml of Q2_K (what ggml's expressions compile to
// with FMA; the references state them with std::fma).

namespace detail {
// The 32 values of a nibble-packed 32-element block (Q4_0's order), IQ4 levels when `levels`.
inline void unpack_nibbles(const std::uint8_t* qs, std::int8_t* q, bool levels) {
#if defined(MINIGPT_SIMD_INT8)
    const __m256i v = simd::unpack_nibbles_16(qs);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), levels ? simd::lookup_16(v, k_iq4nl_values) : v);
#else
    for (int j = 0; j < 16; ++j) {
        const int lo = qs[j] & 0x0f, hi = qs[j] >> 4;
        q[j] = levels ? k_iq4nl_values[lo] : static_cast<std::int8_t>(lo);
        q[j + 16] = levels ? k_iq4nl_values[hi] : static_cast<std::int8_t>(hi);
    }
#endif
}

// The 256 2-bit fields of Q2_K / Q3_K in element order (element 128h + 32k + l at bits 2k of
// qs[32h + l]), plus 4 * (bit 4h + k of hmask[l]) - 4 when hmask is given (Q3_K's q - 4).
inline void unpack_2bit(const std::uint8_t* qs, const std::uint8_t* hmask, std::int8_t* q) {
#if defined(MINIGPT_SIMD_INT8)
    const __m256i four = _mm256_set1_epi8(4);
    const __m256i hm = hmask ? simd::load_u8x32(hmask) : _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
        const __m256i v = simd::load_u8x32(qs + 32 * h);
        __m256i f[4] = {simd::two_bits_at<0>(v), simd::two_bits_at<2>(v), simd::two_bits_at<4>(v), simd::two_bits_at<6>(v)};
        if (hmask) {
            const __m256i hb[4] = {h ? simd::bit_as_4<4>(hm) : simd::bit_as_4<0>(hm), h ? simd::bit_as_4<5>(hm) : simd::bit_as_4<1>(hm),
                                   h ? simd::bit_as_4<6>(hm) : simd::bit_as_4<2>(hm), h ? simd::bit_as_4<7>(hm) : simd::bit_as_4<3>(hm)};
            for (int k = 0; k < 4; ++k) f[k] = _mm256_sub_epi8(_mm256_or_si256(f[k], hb[k]), four);
        }
        for (int k = 0; k < 4; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 128 * h + 32 * k), f[k]);
    }
#else
    for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 4; ++k)
            for (int l = 0; l < 32; ++l) {
                int v = (qs[32 * h + l] >> (2 * k)) & 3;
                if (hmask) v += 4 * ((hmask[l] >> (4 * h + k)) & 1) - 4;
                q[128 * h + 32 * k + l] = static_cast<std::int8_t>(v);
            }
#endif
}
}  // namespace detail

inline void dequantize_q4_1(const block_q4_1* b, float* y, std::int64_t n) {
    using detail::B;
    using detail::L;
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        alignas(32) std::int8_t q[k_qk];
        detail::unpack_nibbles(b[i].qs, q, false);
        const B d(simd::half_to_float(b[i].d)), m(simd::half_to_float(b[i].m));
        for (int j = 0; j < k_qk; j += L) xsimd::fma(simd::load_i8_as_f32(q + j), d, m).store_unaligned(y + i * k_qk + j);
    }
}

inline void dequantize_iq4_nl(const block_iq4_nl* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        alignas(32) std::int8_t q[k_qk];
        detail::unpack_nibbles(b[i].qs, q, true);
        detail::scale_bytes(q, simd::half_to_float(b[i].d), y + i * k_qk, k_qk);
    }
}

inline void dequantize_iq4_xs(const block_iq4_xs* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = simd::half_to_float(b[i].d);
        alignas(32) std::int8_t q[k_qk_k];
        for (int s = 0; s < 8; ++s) detail::unpack_nibbles(b[i].qs + 16 * s, q + 32 * s, true);
        for (int s = 0; s < 8; ++s)
            detail::scale_bytes(q + 32 * s, d * static_cast<float>(ref::iq4_xs_scale(b[i], s)), y + i * k_qk_k + 32 * s, 32);
    }
}

inline void dequantize_q2_k(const block_q2_k* b, float* y, std::int64_t n) {
    using detail::B;
    using detail::L;
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = simd::half_to_float(b[i].d), dmin = simd::half_to_float(b[i].dmin);
        alignas(32) std::int8_t q[k_qk_k];
        detail::unpack_2bit(b[i].qs, nullptr, q);
        for (int g = 0; g < 16; ++g) {
            const B dl(d * static_cast<float>(b[i].scales[g] & 0x0f)), ml(dmin * static_cast<float>(b[i].scales[g] >> 4));
            for (int j = 16 * g; j < 16 * g + 16; j += L) xsimd::fms(dl, simd::load_i8_as_f32(q + j), ml).store_unaligned(y + i * k_qk_k + j);
        }
    }
}

inline void dequantize_q3_k(const block_q3_k* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = simd::half_to_float(b[i].d);
        int sc[16];
        ref::q3_k_scales(b[i].scales, sc);
        alignas(32) std::int8_t q[k_qk_k];
        detail::unpack_2bit(b[i].qs, b[i].hmask, q);
        for (int g = 0; g < 16; ++g) detail::scale_bytes(q + 16 * g, d * static_cast<float>(sc[g]), y + i * k_qk_k + 16 * g, 16);
    }
}

}  // namespace minigpt::quant::fast

// Scalar reference codecs for every block type: dequantisation bit-exact with ggml's
// dequantize_row_* and quantisers for writing GGUF files and for tests.
//
// These loops are the definition the SIMD kernels in kernels/matmul_*.hpp are tested
// against, so they follow the format description in docs/formats.md literally and
// evaluate each formula in the same order as ggml (e.g. Q6_K is (d * scale) * q, not
// d * (scale * q)), which makes the float results identical bit for bit. Callers
// validate sizes; these functions assume n is a multiple of the block size.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "minigpt/core/half.hpp"
#include "minigpt/quant/blocks.hpp"

namespace minigpt::quant::ref {

// Round to nearest, ties to even (the default FP environment), as an int.
inline int nearest_int(float v) { return static_cast<int>(std::nearbyint(v)); }

// ---- Q8_0 -------------------------------------------------------------------------------

inline void dequantize_q8_0(const block_q8_0* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < k_qk; ++j) y[i * k_qk + j] = static_cast<float>(b[i].qs[j]) * d;
    }
}

// As ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d); the quantised values
// are computed with the unrounded d, while the block stores d rounded to fp16.
inline void quantize_q8_0(const float* x, block_q8_0* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float* xb = x + i * k_qk;
        float amax = 0.0f;
        for (int j = 0; j < k_qk; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < k_qk; ++j) b[i].qs[j] = static_cast<std::int8_t>(nearest_int(xb[j] * id));
    }
}

// ---- Q4_0 -------------------------------------------------------------------------------

inline void dequantize_q4_0(const block_q4_0* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < k_qk / 2; ++j) {
            y[i * k_qk + j] = static_cast<float>((b[i].qs[j] & 0x0f) - 8) * d;
            y[i * k_qk + j + 16] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

// As ggml's quantize_row_q4_0_ref: the element of largest magnitude (with its sign) maps
// to q = 0, i.e. d = max / -8, so the asymmetric range -8..7 is used fully on that side;
// q = min(15, trunc(x / d + 8.5)).
inline void quantize_q4_0(const float* x, block_q4_0* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float* xb = x + i * k_qk;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < k_qk; ++j) {
            if (amax < std::fabs(xb[j])) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < k_qk / 2; ++j) {
            // The int8 truncation then min(15) mirrors ggml; x*id + 8.5 lies in [0.5, 16.5].
            const int q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>(xb[j] * id + 8.5f)));
            const int q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>(xb[j + 16] * id + 8.5f)));
            b[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
        }
    }
}

// ---- Q4_K -------------------------------------------------------------------------------

// Scale and min of sub-block s (0..7) from the 12 packed bytes. Sub-blocks 0-3 keep their
// 6 bits in the low bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 keep their low
// 4 bits in the nibbles of bytes 8-11 and their top 2 bits in the spare top bits of bytes 0-7.
inline void q4_k_scale_min(int s, const std::uint8_t* q, int& sc, int& m) {
    if (s < 4) {
        sc = q[s] & 63;
        m = q[s + 4] & 63;
    } else {
        sc = (q[s + 4] & 0x0f) | ((q[s - 4] >> 6) << 4);
        m = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
    }
}

// Inverse of q4_k_scale_min; sc and m are 6-bit values.
inline void q4_k_pack_scales(const int* sc, const int* m, std::uint8_t* q) {
    for (int s = 0; s < 4; ++s) {
        q[s] = static_cast<std::uint8_t>((sc[s] & 63) | ((sc[s + 4] >> 4) << 6));
        q[s + 4] = static_cast<std::uint8_t>((m[s] & 63) | ((m[s + 4] >> 4) << 6));
        q[s + 8] = static_cast<std::uint8_t>((sc[s + 4] & 0x0f) | ((m[s + 4] & 0x0f) << 4));
    }
}

inline void dequantize_q4_k(const block_q4_k* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        const float dmin = fp16_to_fp32(b[i].dmin);
        float* yb = y + i * k_qk_k;
        // Each 32-byte run of qs holds two sub-blocks: low nibbles then high nibbles.
        for (int c = 0; c < 4; ++c) {
            int sc0, m0, sc1, m1;
            q4_k_scale_min(2 * c, b[i].scales, sc0, m0);
            q4_k_scale_min(2 * c + 1, b[i].scales, sc1, m1);
            const float d0 = d * static_cast<float>(sc0), min0 = dmin * static_cast<float>(m0);
            const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
            const std::uint8_t* q = b[i].qs + 32 * c;
            // Fused multiply-subtract, one rounding: what ggml's `d1 * q - m1` compiles to on FMA
            // hardware, and stated explicitly so the result does not depend on -ffp-contract.
            for (int l = 0; l < 32; ++l) yb[64 * c + l] = std::fma(d0, static_cast<float>(q[l] & 0x0f), -min0);
            for (int l = 0; l < 32; ++l) yb[64 * c + 32 + l] = std::fma(d1, static_cast<float>(q[l] >> 4), -min1);
        }
    }
}

// Fits x ~ a*q - b (q in 0..nmax, a >= 0, b >= 0) to n values: start from the range, then a
// few rounds of "quantise, least-squares refit of a and b". b >= 0 keeps 0 representable-ish
// when every value is positive, as ggml's formats assume (the min is stored unsigned).
inline void fit_scale_min(const float* x, int n, int nmax, float& a, float& b) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    lo = std::min(lo, 0.0f);
    a = (hi - lo) / static_cast<float>(nmax);
    b = -lo;
    if (a <= 0.0f) { a = 0.0f; return; }
    for (int iter = 0; iter < 3; ++iter) {
        double sq = 0, sq2 = 0, sx = 0, sqx = 0;
        for (int j = 0; j < n; ++j) {
            const double q = std::clamp(nearest_int((x[j] + b) / a), 0, nmax);
            sq += q; sq2 += q * q; sx += x[j]; sqx += q * x[j];
        }
        const double det = n * sq2 - sq * sq;
        if (det <= 0) break;
        const double na = (n * sqx - sq * sx) / det;
        const double nb = (na * sq - sx) / n;
        if (!(na > 0) || nb < 0) break;  // keep the range fit when the refit leaves the format
        a = static_cast<float>(na);
        b = static_cast<float>(nb);
    }
}

// A reference quantiser (not ggml's search, same format): per sub-block scale/min fit,
// 6-bit quantisation of scales and mins against fp16 super-scales, then each element
// rounded with the scale and min actually stored.
inline void quantize_q4_k(const float* x, block_q4_k* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float* xb = x + i * k_qk_k;
        float scale[8], min[8], max_scale = 0.0f, max_min = 0.0f;
        for (int s = 0; s < 8; ++s) {
            fit_scale_min(xb + 32 * s, 32, 15, scale[s], min[s]);
            max_scale = std::max(max_scale, scale[s]);
            max_min = std::max(max_min, min[s]);
        }
        const std::uint16_t d16 = fp32_to_fp16(max_scale / 63.0f), dmin16 = fp32_to_fp16(max_min / 63.0f);
        const float d = fp16_to_fp32(d16), dmin = fp16_to_fp32(dmin16);
        int sc[8], m[8];
        for (int s = 0; s < 8; ++s) {
            sc[s] = d > 0.0f ? std::clamp(nearest_int(scale[s] / d), 0, 63) : 0;
            m[s] = dmin > 0.0f ? std::clamp(nearest_int(min[s] / dmin), 0, 63) : 0;
        }
        b[i].d = d16;
        b[i].dmin = dmin16;
        q4_k_pack_scales(sc, m, b[i].scales);
        for (int c = 0; c < 4; ++c) {
            std::uint8_t* q = b[i].qs + 32 * c;
            for (int half = 0; half < 2; ++half) {
                const int s = 2 * c + half;
                const float es = d * static_cast<float>(sc[s]), em = dmin * static_cast<float>(m[s]);
                for (int l = 0; l < 32; ++l) {
                    const int v = es > 0.0f ? std::clamp(nearest_int((xb[32 * s + l] + em) / es), 0, 15) : 0;
                    if (half == 0) q[l] = static_cast<std::uint8_t>(v);
                    else q[l] = static_cast<std::uint8_t>(q[l] | (v << 4));
                }
            }
        }
    }
}

// ---- Q6_K -------------------------------------------------------------------------------

inline void dequantize_q6_k(const block_q6_k* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        // Each half of 128 elements uses 64 bytes of ql, 32 of qh and 8 scales: element
        // h*128 + 32*k + l (k = 0..3, l = 0..31) takes its low bits from ql[64h + l + 32*(k&1)]
        // (low nibble for k < 2, high for k >= 2) and bits 2k..2k+1 of qh[32h + l].
        for (int h = 0; h < 2; ++h) {
            const std::uint8_t* ql = b[i].ql + 64 * h;
            const std::uint8_t* qh = b[i].qh + 32 * h;
            const std::int8_t* sc = b[i].scales + 8 * h;
            float* yb = y + i * k_qk_k + 128 * h;
            for (int l = 0; l < 32; ++l) {
                const int g = l / 16;
                const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                yb[l] = d * static_cast<float>(sc[g]) * static_cast<float>(q1);
                yb[l + 32] = d * static_cast<float>(sc[g + 2]) * static_cast<float>(q2);
                yb[l + 64] = d * static_cast<float>(sc[g + 4]) * static_cast<float>(q3);
                yb[l + 96] = d * static_cast<float>(sc[g + 6]) * static_cast<float>(q4);
            }
        }
    }
}

// A reference quantiser: per group of 16 a symmetric scale that maps the element of largest
// magnitude to -32 (as Q4_0 does), scales quantised to int8 against an fp16 super-scale, then
// each element rounded with the scale actually stored.
inline void quantize_q6_k(const float* x, block_q6_k* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float* xb = x + i * k_qk_k;
        float scale[16], max_abs_scale = 0.0f;
        for (int g = 0; g < 16; ++g) {
            float amax = 0.0f, max = 0.0f;
            for (int l = 0; l < 16; ++l) {
                if (amax < std::fabs(xb[16 * g + l])) {
                    amax = std::fabs(xb[16 * g + l]);
                    max = xb[16 * g + l];
                }
            }
            scale[g] = max / -32.0f;
            max_abs_scale = std::max(max_abs_scale, std::fabs(scale[g]));
        }
        const std::uint16_t d16 = fp32_to_fp16(max_abs_scale / 127.0f);
        const float d = fp16_to_fp32(d16);
        b[i].d = d16;
        int q[k_qk_k];
        for (int g = 0; g < 16; ++g) {
            const int sc = d > 0.0f ? std::clamp(nearest_int(scale[g] / d), -128, 127) : 0;
            b[i].scales[g] = static_cast<std::int8_t>(sc);
            const float es = d * static_cast<float>(sc);
            for (int l = 0; l < 16; ++l)
                q[16 * g + l] = es != 0.0f ? std::clamp(nearest_int(xb[16 * g + l] / es), -32, 31) + 32 : 32;
        }
        for (int h = 0; h < 2; ++h) {
            const int* qb = q + 128 * h;
            std::uint8_t* ql = b[i].ql + 64 * h;
            std::uint8_t* qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; ++l) {
                ql[l] = static_cast<std::uint8_t>((qb[l] & 0x0f) | ((qb[l + 64] & 0x0f) << 4));
                ql[l + 32] = static_cast<std::uint8_t>((qb[l + 32] & 0x0f) | ((qb[l + 96] & 0x0f) << 4));
                qh[l] = static_cast<std::uint8_t>((qb[l] >> 4) | ((qb[l + 32] >> 4) << 2) | ((qb[l + 64] >> 4) << 4) |
                                                  ((qb[l + 96] >> 4) << 6));
            }
        }
    }
}

// ---- activations ------------------------------------------------------------------------

// x ~ qs * d with d = max|x| / 127, so |x - qs*d| <= d/2 for every element (the bound the
// matmul tests use).
inline void quantize_act_32(const float* x, act_q8_32* a, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float* xb = x + i * k_qk;
        float amax = 0.0f;
        for (int j = 0; j < k_qk; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < k_qk; ++j) {
            const int q = nearest_int(xb[j] * id);
            a[i].qs[j] = static_cast<std::int8_t>(q);
            sum += q;
        }
        a[i].d = d;
        a[i].sum = sum;
    }
}

inline void quantize_act_256(const float* x, act_q8_256* a, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float* xb = x + i * k_qk_k;
        float amax = 0.0f;
        for (int j = 0; j < k_qk_k; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int g = 0; g < 16; ++g) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) {
                const int q = nearest_int(xb[16 * g + l] * id);
                a[i].qs[16 * g + l] = static_cast<std::int8_t>(q);
                sum += q;
            }
            a[i].bsums[g] = static_cast<std::int16_t>(sum);
        }
        a[i].d = amax / 127.0f;
    }
}

}  // namespace minigpt::quant::ref

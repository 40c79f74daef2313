// Scalar reference codecs of the 32-element block types Q4_1, Q5_0, Q5_1 and IQ4_NL.
//
// Dequantisers evaluate ggml's formulas (dequantize_row_*) in the same order; the quantisers
// follow what llama-quantize runs without an importance matrix (ggml-quants.c: the *_ref
// functions for Q4_1 / Q5_0 / Q5_1, and for IQ4_NL quantize_iq4_nl, i.e. the scale search with 7
// tries each side and x² weights), so a file written by `minigpt quantize` holds the blocks
// llama-quantize would write, up to float contraction differences of the compilers. The
// non-linear search shared by IQ4_NL and IQ4_XS lives here too. Callers validate sizes.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "minigpt/core/half.hpp"
#include "minigpt/quant/blocks.hpp"

namespace minigpt::quant::ref {

// ---- Q4_1 -------------------------------------------------------------------------------

inline void dequantize_q4_1(const block_q4_1* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int j = 0; j < k_qk / 2; ++j) {
            // Fused q * d + m, one rounding: what ggml's expression compiles to with FMA, stated
            // explicitly so the result does not depend on -ffp-contract.
            y[i * k_qk + j] = std::fma(static_cast<float>(b[i].qs[j] & 0x0f), d, m);
            y[i * k_qk + j + 16] = std::fma(static_cast<float>(b[i].qs[j] >> 4), d, m);
        }
    }
}

// As quantize_row_q4_1_ref: d = (max - min) / 15, q = min(15, trunc((x - min) / d + 0.5)).
inline void quantize_q4_1(const float* x, block_q4_1* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float* xb = x + i * k_qk;
        float lo = FLT_MAX, hi = -FLT_MAX;
        for (int j = 0; j < k_qk; ++j) lo = std::min(lo, xb[j]), hi = std::max(hi, xb[j]);
        const float d = (hi - lo) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(lo);
        for (int j = 0; j < k_qk / 2; ++j) {
            const int q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>((xb[j] - lo) * id + 0.5f)));
            const int q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>((xb[j + 16] - lo) * id + 0.5f)));
            b[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
        }
    }
}

// ---- Q5_0 / Q5_1 ------------------------------------------------------------------------

// The 5-bit values of a Q5_0 / Q5_1 block, 0..31, in element order.
inline void q5_values(const std::uint8_t* qs, const std::uint8_t* qh_bytes, int* q) {
    std::uint32_t qh;
    std::memcpy(&qh, qh_bytes, 4);
    for (int j = 0; j < k_qk / 2; ++j) {
        q[j] = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
        q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    }
}

inline void q5_pack(const int* q, std::uint8_t* qs, std::uint8_t* qh_bytes) {
    std::uint32_t qh = 0;
    for (int j = 0; j < k_qk / 2; ++j) {
        qs[j] = static_cast<std::uint8_t>((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
        qh |= static_cast<std::uint32_t>((q[j] >> 4) & 1) << j;
        qh |= static_cast<std::uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
    }
    std::memcpy(qh_bytes, &qh, 4);
}

inline void dequantize_q5_0(const block_q5_0* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        int q[k_qk];
        q5_values(b[i].qs, b[i].qh, q);
        for (int j = 0; j < k_qk; ++j) y[i * k_qk + j] = static_cast<float>(q[j] - 16) * d;
    }
}

// As quantize_row_q5_0_ref: the signed extreme maps to q = 0 (d = max / -16), q = min(31, trunc(x/d + 16.5)).
inline void quantize_q5_0(const float* x, block_q5_0* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float* xb = x + i * k_qk;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < k_qk; ++j)
            if (amax < std::fabs(xb[j])) amax = std::fabs(xb[j]), max = xb[j];
        const float d = max / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        int q[k_qk];
        for (int j = 0; j < k_qk; ++j) q[j] = std::min(31, static_cast<int>(static_cast<std::int8_t>(xb[j] * id + 16.5f)));
        q5_pack(q, b[i].qs, b[i].qh);
    }
}

inline void dequantize_q5_1(const block_q5_1* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        int q[k_qk];
        q5_values(b[i].qs, b[i].qh, q);
        for (int j = 0; j < k_qk; ++j) y[i * k_qk + j] = std::fma(static_cast<float>(q[j]), d, m);
    }
}

// As quantize_row_q5_1_ref: d = (max - min) / 31, q = trunc((x - min) / d + 0.5) (no clamp: at most 31).
inline void quantize_q5_1(const float* x, block_q5_1* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float* xb = x + i * k_qk;
        float lo = FLT_MAX, hi = -FLT_MAX;
        for (int j = 0; j < k_qk; ++j) lo = std::min(lo, xb[j]), hi = std::max(hi, xb[j]);
        const float d = (hi - lo) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(lo);
        int q[k_qk];
        for (int j = 0; j < k_qk; ++j) q[j] = std::min(31, static_cast<int>(static_cast<std::uint8_t>((xb[j] - lo) * id + 0.5f)));
        q5_pack(q, b[i].qs, b[i].qh);
    }
}

// ---- IQ4_NL -----------------------------------------------------------------------------

// Index of the level nearest to v in the 16 sorted levels; a tie goes to the upper level.
inline int iq4_nearest(float v) {
    int lo = 0;
    for (int step = 8; step > 0; step >>= 1) {
        const int j = lo + step;
        if (j < 16 && v + v >= static_cast<float>(k_iq4nl_values[j - 1] + k_iq4nl_values[j])) lo = j;
    }
    return lo;
}

// The scale search of ggml's quantize_row_iq4_nl_impl for one sub-block of 32 (no importance
// matrix: weights x²): start from d = max/127, least-squares refit, then try 2*ntry+1 other inverse
// scales (itry + values[0]) / max and keep the best weighted fit. Returns the float scale and the
// chosen levels in q (also when the sub-block is all ~zero: scale 0, levels 0).
inline float iq4_fit_block(const float* x, std::uint8_t* q, int ntry) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j)
        if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    if (amax < 1e-15f) {
        std::memset(q, 0, 32);
        return 0.0f;
    }
    const float v0 = static_cast<float>(k_iq4nl_values[0]);
    float d = ntry > 0 ? -max / v0 : max / v0;
    float id = 1.0f / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const int l = iq4_nearest(id * x[j]);
        q[j] = static_cast<std::uint8_t>(l);
        const float v = static_cast<float>(k_iq4nl_values[l]), w = x[j] * x[j];
        sumqx += w * v * x[j];
        sumq2 += w * v * v;
    }
    d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
        id = (static_cast<float>(itry) + v0) / max;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < 32; ++j) {
            const float v = static_cast<float>(k_iq4nl_values[iq4_nearest(id * x[j])]), w = x[j] * x[j];
            sumqx += w * v * x[j];
            sumq2 += w * v * v;
        }
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

inline void iq4_pack(const std::uint8_t* q, std::uint8_t* qs) {
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4));
}

inline void dequantize_iq4_nl(const block_iq4_nl* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < k_qk / 2; ++j) {
            y[i * k_qk + j] = d * static_cast<float>(k_iq4nl_values[b[i].qs[j] & 0x0f]);
            y[i * k_qk + j + 16] = d * static_cast<float>(k_iq4nl_values[b[i].qs[j] >> 4]);
        }
    }
}

// As ggml's quantize_iq4_nl without an importance matrix (what llama-quantize runs): the fitted
// scale is stored as is and every element re-picked against it.
inline void quantize_iq4_nl(const float* x, block_iq4_nl* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk; ++i) {
        const float* xb = x + i * k_qk;
        std::uint8_t q[32];
        const float d = iq4_fit_block(xb, q, 7);
        b[i].d = fp32_to_fp16(d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j) q[j] = static_cast<std::uint8_t>(iq4_nearest(id * xb[j]));
        iq4_pack(q, b[i].qs);
    }
}

}  // namespace minigpt::quant::ref

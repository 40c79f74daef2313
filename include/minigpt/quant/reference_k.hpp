// Scalar reference codecs of the K-quant types Q2_K, Q3_K, Q5_K and of IQ4_XS, and llama-quantize's
// quantisers for Q4_K and Q6_K.
//
// Dequantisers evaluate ggml's dequantize_row_* formulas in the same order. The quantisers follow
// what llama-quantize runs without an importance matrix (ggml-quants.c's quantize_row_*_ref for the
// K-quants: make_qkx2_quants' min/scale search for Q2_K / Q4_K / Q5_K, make_q3_quants' iterative
// refit for Q3_K, make_qx_quants' 19 tries for Q6_K; quantize_iq4_xs's non-linear search), written
// from the description of those functions, so `minigpt quantize` writes what llama-quantize writes
// up to compilers' float contraction. Callers validate sizes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "minigpt/core/half.hpp"
#include "minigpt/quant/blocks.hpp"
#include "minigpt/quant/reference.hpp"
#include "minigpt/quant/reference_q.hpp"

namespace minigpt::quant::ref {

// ---- the searches -------------------------------------------------------------------------

// Fit x ~ scale * L + min (min <= 0, L in 0..nmax) under weights, as make_qkx2_quants: the range
// fit, then nstep+1 inverse scales (rmin + rdelta*is + nmax) / (max - min), each refit by weighted
// least squares (min clamped to <= 0) and kept when its weighted error (|.| or ²) is lower.
// Returns the scale; *neg_min = -min.
inline float fit_qkx2(int n, int nmax, const float* x, const float* w, std::uint8_t* L, float* neg_min, float rmin, float rdelta,
                      int nstep, bool use_mad) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        min = std::min(min, x[i]);
        max = std::max(max, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        std::memset(L, 0, static_cast<std::size_t>(n));
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; ++i) {
        L[i] = static_cast<std::uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
        float diff = scale * static_cast<float>(L[i]) + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    std::uint8_t aux[32];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            aux[i] = static_cast<std::uint8_t>(l);
            const float fl = static_cast<float>(l);
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * static_cast<float>(aux[i]) + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best_error) {
                std::memcpy(L, aux, static_cast<std::size_t>(n));
                best_error = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

// Symmetric fit as make_qx_quants with rmse_type 1 (weights x²): L in 0..2*nmax-1 (value L - nmax),
// the extreme mapped to -nmax, then 18 neighbouring inverse scales kept when they fit better.
inline float fit_qx(int n, int nmax, const float* x, std::int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
    if (amax < 1e-15f) {
        std::memset(L, 0, static_cast<std::size_t>(n));
        return 0.0f;
    }
    float iscale = -static_cast<float>(nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<std::int8_t>(l + nmax);
        const float w = x[i] * x[i], fl = static_cast<float>(l);
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const float fl = static_cast<float>(std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1)), w = x[i] * x[i];
            sumlx += w * x[i] * fl;
            suml2 += w * fl * fl;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// make_q3_quants with do_rmse: symmetric start, then up to 5 passes moving single elements to the
// level that improves the weighted (x²) fit. L in 0..2*nmax-1.
inline float fit_q3(int n, int nmax, const float* x, std::int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
    if (amax < 1e-15f) {
        std::memset(L, 0, static_cast<std::size_t>(n));
        return 0.0f;
    }
    const float iscale = -static_cast<float>(nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<std::int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l * l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
            if (slx > 0) {
                float sl2 = suml2 - w * static_cast<float>(L[i] * L[i]);
                const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * static_cast<float>(new_l);
                    sl2 += w * static_cast<float>(new_l * new_l);
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<std::int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- Q2_K -------------------------------------------------------------------------------

inline void dequantize_q2_k(const block_q2_k* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
        float* yb = y + i * k_qk_k;
        for (int h = 0; h < 2; ++h)
            for (int k = 0; k < 4; ++k)
                for (int half = 0; half < 2; ++half) {
                    const int g = 8 * h + 2 * k + half;
                    const float dl = d * static_cast<float>(b[i].scales[g] & 0x0f), ml = dmin * static_cast<float>(b[i].scales[g] >> 4);
                    // Fused multiply-subtract as in dequantize_q4_k (what ggml's dl * q - ml compiles to
                    // with FMA), stated explicitly so the result does not depend on -ffp-contract.
                    for (int l = 0; l < 16; ++l)
                        yb[128 * h + 32 * k + 16 * half + l] =
                            std::fma(dl, static_cast<float>((b[i].qs[32 * h + 16 * half + l] >> (2 * k)) & 3), -ml);
                }
    }
}

// Packs 256 2-bit values in Q2_K / Q3_K's layout.
inline void pack_2bit(const std::uint8_t* L, std::uint8_t* qs) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l)
            qs[32 * h + l] = static_cast<std::uint8_t>(L[128 * h + l] | (L[128 * h + l + 32] << 2) | (L[128 * h + l + 64] << 4) |
                                                       (L[128 * h + l + 96] << 6));
}

// As quantize_row_q2_K_ref: per group a (scale, min) fit under |x| weights, both quantised to 4 bits
// against fp16 super-scales, then every element re-rounded with the stored values.
inline void quantize_q2_k(const float* x, block_q2_k* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float* xb = x + i * k_qk_k;
        std::uint8_t L[k_qk_k];
        float scales[16], mins[16], w[16], max_scale = 0, max_min = 0;
        for (int g = 0; g < 16; ++g) {
            for (int l = 0; l < 16; ++l) w[l] = std::fabs(xb[16 * g + l]);
            scales[g] = fit_qkx2(16, 3, xb + 16 * g, w, L + 16 * g, &mins[g], -0.5f, 0.1f, 15, true);
            max_scale = std::max(max_scale, scales[g]);
            max_min = std::max(max_min, mins[g]);
        }
        if (max_scale > 0) {
            const float iscale = 15.0f / max_scale;
            for (int g = 0; g < 16; ++g) b[i].scales[g] = static_cast<std::uint8_t>(nearest_int(iscale * scales[g]));
            b[i].d = fp32_to_fp16(max_scale / 15.0f);
        } else {
            for (int g = 0; g < 16; ++g) b[i].scales[g] = 0;
            b[i].d = fp32_to_fp16(0.0f);
        }
        if (max_min > 0) {
            const float iscale = 15.0f / max_min;
            for (int g = 0; g < 16; ++g) b[i].scales[g] = static_cast<std::uint8_t>(b[i].scales[g] | (nearest_int(iscale * mins[g]) << 4));
            b[i].dmin = fp32_to_fp16(max_min / 15.0f);
        } else {
            b[i].dmin = fp32_to_fp16(0.0f);
        }
        for (int g = 0; g < 16; ++g) {
            const float d = fp16_to_fp32(b[i].d) * static_cast<float>(b[i].scales[g] & 0x0f);
            if (d == 0.0f) continue;
            const float dm = fp16_to_fp32(b[i].dmin) * static_cast<float>(b[i].scales[g] >> 4);
            for (int l = 0; l < 16; ++l) L[16 * g + l] = static_cast<std::uint8_t>(std::clamp(nearest_int((xb[16 * g + l] + dm) / d), 0, 3));
        }
        pack_2bit(L, b[i].qs);
    }
}

// ---- Q3_K -------------------------------------------------------------------------------

// The 16 signed 6-bit scales (value - 32) of a Q3_K block: low 4 bits in the nibbles of bytes 0-7
// (groups 0-7 low nibbles, 8-15 high nibbles), high 2 bits in bytes 8-11 (group g at bits
// 2*(g/4) of byte 8 + g%4).
inline void q3_k_scales(const std::uint8_t* s, int* sc) {
    for (int g = 0; g < 16; ++g) {
        const int lo = g < 8 ? s[g] & 0x0f : s[g - 8] >> 4;
        const int hi = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
        sc[g] = (lo | (hi << 4)) - 32;
    }
}

inline void dequantize_q3_k(const block_q3_k* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        int sc[16];
        q3_k_scales(b[i].scales, sc);
        float* yb = y + i * k_qk_k;
        for (int h = 0; h < 2; ++h)
            for (int k = 0; k < 4; ++k)
                for (int half = 0; half < 2; ++half) {
                    const float dl = d * static_cast<float>(sc[8 * h + 2 * k + half]);
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        const int q = ((b[i].qs[32 * h + l] >> (2 * k)) & 3) - (((b[i].hmask[l] >> (4 * h + k)) & 1) ? 0 : 4);
                        yb[128 * h + 32 * k + l] = dl * static_cast<float>(q);
                    }
                }
    }
}

// As quantize_row_q3_K_ref: per group make_q3_quants' fit, scales quantised to 6 signed bits with
// the largest-magnitude one at -32, then every element re-rounded with the stored scale.
inline void quantize_q3_k(const float* x, block_q3_k* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float* xb = x + i * k_qk_k;
        std::int8_t L[k_qk_k];
        float scales[16], max_scale = 0, amax = 0;
        for (int g = 0; g < 16; ++g) {
            scales[g] = fit_q3(16, 4, xb + 16 * g, L + 16 * g);
            if (std::fabs(scales[g]) > amax) amax = std::fabs(scales[g]), max_scale = scales[g];
        }
        std::memset(b[i].scales, 0, 12);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int g = 0; g < 16; ++g) {
                int l = std::clamp(static_cast<int>(static_cast<std::int8_t>(nearest_int(iscale * scales[g]))), -32, 31) + 32;
                if (g < 8) b[i].scales[g] = static_cast<std::uint8_t>(l & 0x0f);
                else b[i].scales[g - 8] = static_cast<std::uint8_t>(b[i].scales[g - 8] | ((l & 0x0f) << 4));
                l >>= 4;
                b[i].scales[g % 4 + 8] = static_cast<std::uint8_t>(b[i].scales[g % 4 + 8] | (l << (2 * (g / 4))));
            }
            b[i].d = fp32_to_fp16(1.0f / iscale);
        } else {
            b[i].d = fp32_to_fp16(0.0f);
        }
        int sc[16];
        q3_k_scales(b[i].scales, sc);
        for (int g = 0; g < 16; ++g) {
            const float d = fp16_to_fp32(b[i].d) * static_cast<float>(sc[g]);
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; ++l) L[16 * g + l] = static_cast<std::int8_t>(std::clamp(nearest_int(xb[16 * g + l] / d), -4, 3) + 4);
        }
        std::memset(b[i].hmask, 0, sizeof b[i].hmask);
        std::uint8_t low[k_qk_k];
        for (int j = 0; j < k_qk_k; ++j) {
            // High bit of element j goes to bit j / 32 of hmask[j % 32].
            if (L[j] > 3) b[i].hmask[j % 32] = static_cast<std::uint8_t>(b[i].hmask[j % 32] | (1 << (j / 32)));
            low[j] = static_cast<std::uint8_t>(L[j] > 3 ? L[j] - 4 : L[j]);
        }
        pack_2bit(low, b[i].qs);
    }
}

// ---- Q4_K / Q5_K (llama-quantize's search) ------------------------------------------------

// Shared by Q4_K (nmax 15: rmin -1, 20 steps) and Q5_K (nmax 31: rmin -0.5, 15 steps), as
// quantize_row_q4_K_ref / q5_K_ref: per sub-block of 32 a (scale, min) fit under av|x|-weights,
// 6-bit scales and mins against fp16 super-scales, then every element re-rounded. L gets 0..nmax.
inline void fit_k_super_block(const float* xb, int nmax, float rmin, int nstep, std::uint8_t* scales12, std::uint16_t& d16,
                              std::uint16_t& dmin16, std::uint8_t* L) {
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    for (int s = 0; s < 8; ++s) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += xb[32 * s + l] * xb[32 * s + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xb[32 * s + l]);
        scales[s] = fit_qkx2(32, nmax, xb + 32 * s, w, L + 32 * s, &mins[s], rmin, 0.1f, nstep, false);
        max_scale = std::max(max_scale, scales[s]);
        max_min = std::max(max_min, mins[s]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    int sc[8], m[8];
    for (int s = 0; s < 8; ++s) {
        // ggml stores nearest_int into a uint8_t before the min(63): keep the same wrap.
        sc[s] = std::min(63, static_cast<int>(static_cast<std::uint8_t>(nearest_int(inv_scale * scales[s]))));
        m[s] = std::min(63, static_cast<int>(static_cast<std::uint8_t>(nearest_int(inv_min * mins[s]))));
    }
    q4_k_pack_scales(sc, m, scales12);
    d16 = fp32_to_fp16(max_scale / 63.0f);
    dmin16 = fp32_to_fp16(max_min / 63.0f);
    for (int s = 0; s < 8; ++s) {
        const float d = fp16_to_fp32(d16) * static_cast<float>(sc[s]);
        if (d == 0.0f) continue;
        const float dm = fp16_to_fp32(dmin16) * static_cast<float>(m[s]);
        for (int l = 0; l < 32; ++l) L[32 * s + l] = static_cast<std::uint8_t>(std::clamp(nearest_int((xb[32 * s + l] + dm) / d), 0, nmax));
    }
}

inline void quantize_q4_k_ggml(const float* x, block_q4_k* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        std::uint8_t L[k_qk_k];
        fit_k_super_block(x + i * k_qk_k, 15, -1.0f, 20, b[i].scales, b[i].d, b[i].dmin, L);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) b[i].qs[32 * c + l] = static_cast<std::uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

inline void dequantize_q5_k(const block_q5_k* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
        float* yb = y + i * k_qk_k;
        for (int c = 0; c < 4; ++c) {
            int sc0, m0, sc1, m1;
            q4_k_scale_min(2 * c, b[i].scales, sc0, m0);
            q4_k_scale_min(2 * c + 1, b[i].scales, sc1, m1);
            const float d0 = d * static_cast<float>(sc0), min0 = dmin * static_cast<float>(m0);
            const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
            const std::uint8_t* q = b[i].qs + 32 * c;
            // Fused multiply-subtract as in dequantize_q4_k (what ggml's d * q - m compiles to with FMA).
            for (int l = 0; l < 32; ++l)
                yb[64 * c + l] = std::fma(d0, static_cast<float>((q[l] & 0x0f) + (((b[i].qh[l] >> (2 * c)) & 1) << 4)), -min0);
            for (int l = 0; l < 32; ++l)
                yb[64 * c + 32 + l] = std::fma(d1, static_cast<float>((q[l] >> 4) + (((b[i].qh[l] >> (2 * c + 1)) & 1) << 4)), -min1);
        }
    }
}

inline void quantize_q5_k(const float* x, block_q5_k* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        std::uint8_t L[k_qk_k];
        fit_k_super_block(x + i * k_qk_k, 31, -0.5f, 15, b[i].scales, b[i].d, b[i].dmin, L);
        std::memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l) {
                const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
                b[i].qs[32 * c + l] = static_cast<std::uint8_t>((l1 & 0x0f) | ((l2 & 0x0f) << 4));
                b[i].qh[l] = static_cast<std::uint8_t>(b[i].qh[l] | ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
            }
    }
}

// ---- Q6_K (llama-quantize's search) ------------------------------------------------------

// As quantize_row_q6_K_ref: per group make_qx_quants (nmax 32), int8 scales with the
// largest-magnitude one at -128 (clamped to 127), then every element re-rounded.
inline void quantize_q6_k_ggml(const float* x, block_q6_k* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float* xb = x + i * k_qk_k;
        std::int8_t L[k_qk_k];
        float scales[16], max_scale = 0, max_abs = 0;
        for (int g = 0; g < 16; ++g) {
            scales[g] = fit_qx(16, 32, xb + 16 * g, L + 16 * g);
            if (std::fabs(scales[g]) > max_abs) max_abs = std::fabs(scales[g]), max_scale = scales[g];
        }
        if (max_abs < 1e-15f) {
            std::memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        b[i].d = fp32_to_fp16(1.0f / iscale);
        for (int g = 0; g < 16; ++g) b[i].scales[g] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * scales[g])));
        int q[k_qk_k];
        for (int g = 0; g < 16; ++g) {
            const float d = fp16_to_fp32(b[i].d) * static_cast<float>(b[i].scales[g]);
            for (int l = 0; l < 16; ++l)
                q[16 * g + l] = d != 0.0f ? std::clamp(nearest_int(xb[16 * g + l] / d), -32, 31) + 32 : L[16 * g + l];
        }
        for (int h = 0; h < 2; ++h) {
            const int* qb = q + 128 * h;
            std::uint8_t* ql = b[i].ql + 64 * h;
            std::uint8_t* qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; ++l) {
                ql[l] = static_cast<std::uint8_t>((qb[l] & 0x0f) | ((qb[l + 64] & 0x0f) << 4));
                ql[l + 32] = static_cast<std::uint8_t>((qb[l + 32] & 0x0f) | ((qb[l + 96] & 0x0f) << 4));
                qh[l] = static_cast<std::uint8_t>((qb[l] >> 4) | ((qb[l + 32] >> 4) << 2) | ((qb[l + 64] >> 4) << 4) | ((qb[l + 96] >> 4) << 6));
            }
        }
    }
}

// ---- IQ4_XS -----------------------------------------------------------------------------

inline int iq4_xs_scale(const block_iq4_xs& b, int s) {
    return (((b.scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((b.scales_h >> (2 * s)) & 3) << 4)) - 32;
}

inline void dequantize_iq4_xs(const block_iq4_xs* b, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int s = 0; s < 8; ++s) {
            const float dl = d * static_cast<float>(iq4_xs_scale(b[i], s));
            const std::uint8_t* qs = b[i].qs + 16 * s;
            float* yb = y + i * k_qk_k + 32 * s;
            for (int j = 0; j < 16; ++j) {
                yb[j] = dl * static_cast<float>(k_iq4nl_values[qs[j] & 0x0f]);
                yb[j + 16] = dl * static_cast<float>(k_iq4nl_values[qs[j] >> 4]);
            }
        }
    }
}

// As ggml's quantize_iq4_xs without an importance matrix: IQ4_NL's search per sub-block, then the
// scales quantised to 6 signed bits against d = -max_scale/32 and every element re-picked.
inline void quantize_iq4_xs(const float* x, block_iq4_xs* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n / k_qk_k; ++i) {
        const float* xb = x + i * k_qk_k;
        std::uint8_t L[k_qk_k];
        float scales[8], max_scale = 0, amax_scale = 0;
        for (int s = 0; s < 8; ++s) {
            scales[s] = iq4_fit_block(xb + 32 * s, L + 32 * s, 7);
            if (std::fabs(scales[s]) > amax_scale) amax_scale = std::fabs(scales[s]), max_scale = scales[s];
        }
        const float d = -max_scale / 32;
        b[i].d = fp32_to_fp16(d);
        b[i].scales_h = 0;
        std::memset(b[i].scales_l, 0, sizeof b[i].scales_l);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int s = 0; s < 8; ++s) {
            const int l = std::clamp(nearest_int(id * scales[s]), -32, 31);
            const float dl = d * static_cast<float>(l);
            const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; ++j) L[32 * s + j] = static_cast<std::uint8_t>(iq4_nearest(idl * xb[32 * s + j]));
            const int u = l + 32;
            b[i].scales_l[s / 2] = static_cast<std::uint8_t>(b[i].scales_l[s / 2] | ((u & 0x0f) << (4 * (s % 2))));
            b[i].scales_h = static_cast<std::uint16_t>(b[i].scales_h | ((u >> 4) << (2 * s)));
        }
        for (int s = 0; s < 8; ++s) iq4_pack(L + 32 * s, b[i].qs + 16 * s);
    }
}

}  // namespace minigpt::quant::ref

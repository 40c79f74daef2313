// Causal multi-head attention with grouped-query heads over a KV cache (f32 or f16).
//
// Layouts (row-major, outermost first):
//   q, out: (n_tokens, n_heads*head_dim) f32; query token t sits at position(t) (pos0+t, or
//           per-token positions for batches that mix sequences)
//   k, v:   (n_ctx, n_kv_heads*head_dim) f32, or f16 stored as uint16 bit patterns, row p
//           holding position p; one pair shared by the batch or one kv_view per token
// Query head h reads kv head h / (n_heads/n_kv_heads); token t attends to positions
// [lo, position(t)] with lo = 0, or position(t) - window + 1 under a sliding window, so
// out[t,h] = sum_j softmax_j(cap(scale * q[t,h].k[j])) v[j], cap the optional soft-cap
// c*tanh(s/c). All of this sits in attention_params rather than a dozen positional arguments.
//
// The work is split with parallel_for over items of one token and up to eight query heads
// of one KV group. Each item walks its keys in blocks of k_attn_block with an online
// ("flash") softmax: per head, the running maximum m, the running denominator l and the
// output accumulator are rescaled by exp(m_old - m_new) whenever a block raises the
// maximum, so no score matrix is ever materialised and the only scratch is a fixed stack
// block of scores. The heads of an item move through the keys in lockstep, so in decode
// each K/V block is fetched from memory once per group instead of once per query head.
// Scores are computed k_lanes keys at a time (one accumulator batch per key, folded with a
// transpose-and-add), the value rows are accumulated with several independent FMA chains;
// f16 rows are widened exactly with F16C through simd/convert.hpp. Tokens are dealt to
// threads in zig-zag order (first, last, second, second-to-last, ...) because causal rows
// grow in cost with t: contiguous chunks of that order carry nearly equal numbers of keys.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/simd/convert.hpp"
#include "minigpt/simd/vector_math.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12 false positive in AVX-512 intrinsics,
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see simd/vector_math.hpp
#endif

namespace minigpt::kernels {

// The K and V rows of one sequence, row p holding position p: (n_ctx, n_kv_heads*head_dim) each.
struct kv_view {
    const void* k = nullptr;
    const void* v = nullptr;
};

// Everything attention needs besides q and out. Query token t sits at position(t) and attends
// to the keys at positions [max(0, position(t) - window + 1), position(t)] of its sequence: the
// shared k/v, or token_kv[t] when the batch mixes sequences (each with its own cache rows).
struct attention_params {
    std::int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
    float scale = 1.0f;                         // multiplies q.k before the cap and the softmax
    float softcap = 0.0f;                       // > 0: scores become softcap * tanh(score / softcap)
    std::int64_t window = 0;                    // > 0: sliding window of this many positions
    dtype kv_type = dtype::f32;                 // f32, or f16 stored as uint16 bit patterns
    const void* k = nullptr;                    // (n_ctx, n_kv_heads*head_dim)
    const void* v = nullptr;                    // (n_ctx, n_kv_heads*head_dim)
    std::int64_t pos0 = 0;                      // position of token 0 when `positions` is null
    const std::int64_t* positions = nullptr;    // (n_tokens) per-token positions, or null: pos0 + t
    const kv_view* token_kv = nullptr;          // (n_tokens) per-token K/V, or null: k and v
    int n_threads = 0;                          // <= 0: every physical core
    // Optional record of the softmax weights for inspection (model/hooks.hpp); null costs nothing.
    // (n_tokens, n_heads, weights_stride): weights[t, h, j] of the key at position j, 0 outside
    // [first_key(t), position(t)]; weights_stride must exceed every position.
    float* weights = nullptr;
    std::int64_t weights_stride = 0;

    std::int64_t position(std::int64_t t) const { return positions ? positions[t] : pos0 + t; }
    std::int64_t first_key(std::int64_t t) const { return window > 0 ? std::max<std::int64_t>(0, position(t) - window + 1) : 0; }
};

namespace detail {

// Keys per online-softmax step: big enough to amortise the rescaling, small enough that
// the scores stay in L1 beside the value rows they weight.
inline constexpr std::int64_t k_attn_block = 128;
static_assert(k_attn_block % static_cast<std::int64_t>(simd::f32_lanes) == 0);

inline simd::f32_batch load_kv(const float* p) { return simd::f32_batch::load_unaligned(p); }
inline simd::f32_batch load_kv(const std::uint16_t* p) { return simd::load_f16<>(p); }
inline float load_kv_one(const float* p) { return *p; }
inline float load_kv_one(const std::uint16_t* p) { return simd::half_to_float(*p); }

inline bool ranges_overlap(const void* a, std::uint64_t a_bytes, const void* b, std::uint64_t b_bytes) {
    const auto a0 = reinterpret_cast<std::uintptr_t>(a), b0 = reinterpret_cast<std::uintptr_t>(b);
    return a_bytes > 0 && b_bytes > 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

inline void check_attention(const attention_params& p, const float* q, const float* out, std::int64_t n_tokens, const char* fn) {
    const std::string f(fn);
    if (n_tokens < 0) throw shape_error(f + ": negative n_tokens " + std::to_string(n_tokens));
    if (p.n_heads <= 0 || p.n_kv_heads <= 0)
        throw shape_error(f + ": n_heads and n_kv_heads must be > 0, got " + std::to_string(p.n_heads) + " and " +
                          std::to_string(p.n_kv_heads));
    if (p.n_heads % p.n_kv_heads != 0)
        throw shape_error(f + ": n_heads " + std::to_string(p.n_heads) + " is not a multiple of n_kv_heads " +
                          std::to_string(p.n_kv_heads));
    if (p.head_dim <= 0) throw shape_error(f + ": head_dim must be > 0, got " + std::to_string(p.head_dim));
    if (p.kv_type != dtype::f32 && p.kv_type != dtype::f16)
        throw shape_error(f + ": KV cache type must be f32 or f16, got " + std::string(dtype_name(p.kv_type)));
    if (!std::isfinite(p.scale)) throw error(f + ": scale must be finite");
    if (p.softcap < 0.0f || !std::isfinite(p.softcap)) throw error(f + ": softcap must be finite and >= 0");
    if (p.window < 0) throw error(f + ": negative window " + std::to_string(p.window));
    const auto q_elems = checked_mul(checked_mul(static_cast<std::uint64_t>(n_tokens), static_cast<std::uint64_t>(p.n_heads),
                                                 "attention q size"),
                                     static_cast<std::uint64_t>(p.head_dim), "attention q size");
    if (q_elems > (std::uint64_t(1) << 48)) throw shape_error(f + ": sizes too large");
    if (n_tokens == 0) return;
    // The highest position any token reads bounds the K/V rows touched.
    std::int64_t max_pos = 0;
    for (std::int64_t t = 0; t < n_tokens; ++t) {
        const std::int64_t pos = p.position(t);
        if (pos < 0) throw shape_error(f + ": negative position " + std::to_string(pos) + " for token " + std::to_string(t));
        max_pos = std::max(max_pos, pos);
    }
    const auto kv_elems = checked_mul(checked_mul(static_cast<std::uint64_t>(max_pos) + 1, static_cast<std::uint64_t>(p.n_kv_heads),
                                                  "attention KV size"),
                                      static_cast<std::uint64_t>(p.head_dim), "attention KV size");
    if (kv_elems > (std::uint64_t(1) << 48)) throw shape_error(f + ": sizes too large");
    const std::uint64_t kv_bytes = kv_elems * (p.kv_type == dtype::f32 ? 4 : 2);
    if (!q || !out) throw error(f + ": null pointer for q or out");
    const std::uint64_t q_bytes = q_elems * 4;
    if (ranges_overlap(out, q_bytes, q, q_bytes)) throw error(f + ": out must not overlap q");
    if (p.weights && p.weights_stride <= max_pos)
        throw shape_error(f + ": weights_stride " + std::to_string(p.weights_stride) + " does not cover position " + std::to_string(max_pos));
    for (std::int64_t t = 0; t < (p.token_kv ? n_tokens : 1); ++t) {
        const void* k = p.token_kv ? p.token_kv[t].k : p.k;
        const void* v = p.token_kv ? p.token_kv[t].v : p.v;
        if (!k || !v) throw error(f + ": null pointer for k or v");
        if (ranges_overlap(out, q_bytes, k, kv_bytes) || ranges_overlap(out, q_bytes, v, kv_bytes))
            throw error(f + ": out must not overlap k or v");
    }
}

// s[j] = scale * (q . k_j) for the nb (<= k_attn_block) key rows k0 + j*stride.
// L keys at a time: each row's products accumulate in one batch (column batches in order), then
// the L batches are folded with hsum_rows. Rows go four at a time (four independent FMA chains):
// L row pointers held at once lived in vector registers and pushed the accumulators to the stack,
// and one row at a time waited on its single chain.
template <class KV>
inline void attn_scores(const float* q, const KV* k0, std::int64_t stride, std::int64_t nb, std::int64_t head_dim,
                        float scale, float* s) {
    using B = simd::f32_batch;
    constexpr std::int64_t L = static_cast<std::int64_t>(simd::f32_lanes);
    const std::int64_t dv = head_dim / L * L;
    for (std::int64_t j0 = 0; j0 < nb; j0 += L) {
        B acc[L];
        const KV* row = k0 + j0 * stride;
        const std::int64_t last = nb - 1 - j0;  // rows past nb repeat the last one
        static_assert(L % 4 == 0);
        for (std::int64_t r = 0; r < L; r += 4) {  // four rows at a time: four independent FMA chains
            const KV* k_r[4];
            for (int i = 0; i < 4; ++i) k_r[i] = row + std::min<std::int64_t>(r + i, last) * stride;
            B a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
            for (std::int64_t d = 0; d < dv; d += L) {
                const B qv = B::load_unaligned(q + d);
                a0 = xsimd::fma(qv, load_kv(k_r[0] + d), a0);
                a1 = xsimd::fma(qv, load_kv(k_r[1] + d), a1);
                a2 = xsimd::fma(qv, load_kv(k_r[2] + d), a2);
                a3 = xsimd::fma(qv, load_kv(k_r[3] + d), a3);
            }
            acc[r] = a0;
            acc[r + 1] = a1;
            acc[r + 2] = a2;
            acc[r + 3] = a3;
        }
        B sums = simd::hsum_rows(acc);
        if (dv < head_dim) {
            alignas(64) float tail[L];
            for (std::int64_t r = 0; r < L; ++r) {
                const KV* kr = row + std::min<std::int64_t>(r, last) * stride;
                float t = 0.0f;
                for (std::int64_t d = dv; d < head_dim; ++d) t += q[d] * load_kv_one(kr + d);
                tail[r] = t;
            }
            sums += B::load_aligned(tail);
        }
        (sums * B(scale)).store_unaligned(s + j0);  // s has room for whole batches
    }
}

// o = c*o + sum_j p[j] v_j over the nb value rows v0 + j*stride.
template <class KV>
inline void attn_accumulate(float* o, const float* p, const KV* v0, std::int64_t stride, std::int64_t nb,
                            std::int64_t head_dim, float c) {
    using B = simd::f32_batch;
    constexpr std::int64_t L = static_cast<std::int64_t>(simd::f32_lanes);
    const std::int64_t dv = head_dim / L * L;
    const B cv(c);
    std::int64_t d = 0;
    // Four column batches at a time, even and odd keys in separate accumulators: eight
    // independent FMA chains.
    for (; d + 4 * L <= dv; d += 4 * L) {
        B a0 = B::load_unaligned(o + d) * cv, a1 = B::load_unaligned(o + d + L) * cv;
        B a2 = B::load_unaligned(o + d + 2 * L) * cv, a3 = B::load_unaligned(o + d + 3 * L) * cv;
        B b0(0.0f), b1(0.0f), b2(0.0f), b3(0.0f);
        std::int64_t j = 0;
        for (; j + 2 <= nb; j += 2) {
            const KV* r0 = v0 + j * stride + d;
            const KV* r1 = r0 + stride;
            const B p0(p[j]), p1(p[j + 1]);
            a0 = xsimd::fma(p0, load_kv(r0), a0);
            a1 = xsimd::fma(p0, load_kv(r0 + L), a1);
            a2 = xsimd::fma(p0, load_kv(r0 + 2 * L), a2);
            a3 = xsimd::fma(p0, load_kv(r0 + 3 * L), a3);
            b0 = xsimd::fma(p1, load_kv(r1), b0);
            b1 = xsimd::fma(p1, load_kv(r1 + L), b1);
            b2 = xsimd::fma(p1, load_kv(r1 + 2 * L), b2);
            b3 = xsimd::fma(p1, load_kv(r1 + 3 * L), b3);
        }
        if (j < nb) {
            const KV* r0 = v0 + j * stride + d;
            const B p0(p[j]);
            a0 = xsimd::fma(p0, load_kv(r0), a0);
            a1 = xsimd::fma(p0, load_kv(r0 + L), a1);
            a2 = xsimd::fma(p0, load_kv(r0 + 2 * L), a2);
            a3 = xsimd::fma(p0, load_kv(r0 + 3 * L), a3);
        }
        (a0 + b0).store_unaligned(o + d);
        (a1 + b1).store_unaligned(o + d + L);
        (a2 + b2).store_unaligned(o + d + 2 * L);
        (a3 + b3).store_unaligned(o + d + 3 * L);
    }
    for (; d < dv; d += L) {
        B a = B::load_unaligned(o + d) * cv, b(0.0f);
        std::int64_t j = 0;
        for (; j + 2 <= nb; j += 2) {
            a = xsimd::fma(B(p[j]), load_kv(v0 + j * stride + d), a);
            b = xsimd::fma(B(p[j + 1]), load_kv(v0 + (j + 1) * stride + d), b);
        }
        if (j < nb) a = xsimd::fma(B(p[j]), load_kv(v0 + j * stride + d), a);
        (a + b).store_unaligned(o + d);
    }
    for (; d < head_dim; ++d) {
        float a = o[d] * c;
        for (std::int64_t j = 0; j < nb; ++j) a += p[j] * load_kv_one(v0 + j * stride + d);
        o[d] = a;
    }
}

// s = cap * tanh(s / cap), as llama.cpp orders it (scale by 1/cap, tanh, scale by cap).
inline void softcap_scores(float* s, std::int64_t n, float cap) {
    const float inv = 1.0f / cap;
    for (std::int64_t j = 0; j < n; ++j) s[j] = std::tanh(s[j] * inv) * cap;
}

// Query heads of one KV group handled together by one work item (at most).
inline constexpr std::int64_t k_attn_max_heads = 8;

// One token and n_q (<= k_attn_max_heads) query heads that share a KV head, stored back to
// back from q (and o) with stride head_dim: o_g = softmax(scale * K q_g) V over n_keys rows,
// online over blocks. The heads advance through the keys in lockstep, so each block of K and
// V rows comes from far memory once and is reused from L1/L2 by the other heads.
// rec (optional, n_q rows rec_stride apart, key j of this call at column rec_lo + j) receives the
// final softmax weights: the capped scores are kept there, then normalised with the same final
// maximum and denominator that scale o.
template <class KV>
inline void attn_rows(const float* q, std::int64_t n_q, const KV* k0, const KV* v0, std::int64_t stride, std::int64_t n_keys,
                      std::int64_t head_dim, float scale, float softcap, float* o, float* rec = nullptr,
                      std::int64_t rec_stride = 0, std::int64_t rec_lo = 0) {
    using B = simd::f32_batch;
    constexpr std::int64_t L = static_cast<std::int64_t>(simd::f32_lanes);
    alignas(64) float s[k_attn_max_heads][k_attn_block];  // (n_q, k_attn_block) scores, then weights, of one block
    float m[k_attn_max_heads], l[k_attn_max_heads], c[k_attn_max_heads];
    bool live[k_attn_max_heads];
    const float ninf = -std::numeric_limits<float>::infinity();
    std::fill(o, o + n_q * head_dim, 0.0f);
    std::fill(m, m + n_q, ninf);
    std::fill(l, l + n_q, 0.0f);
    for (std::int64_t j0 = 0; j0 < n_keys; j0 += k_attn_block) {
        const std::int64_t nb = std::min(k_attn_block, n_keys - j0);
        for (std::int64_t g = 0; g < n_q; ++g) attn_scores(q + g * head_dim, k0 + j0 * stride, stride, nb, head_dim, scale, s[g]);
        if (softcap > 0.0f)  // Gemma 2: the cap is applied to the scaled scores, before the softmax
            for (std::int64_t g = 0; g < n_q; ++g) softcap_scores(s[g], nb, softcap);
        if (rec)
            for (std::int64_t g = 0; g < n_q; ++g) std::copy(s[g], s[g] + nb, rec + g * rec_stride + rec_lo + j0);
        for (std::int64_t g = 0; g < n_q; ++g) {
            float* sg = s[g];
            const float bm = max_ignore_nan(sg, nb);
            live[g] = bm != ninf;  // else every weight in this block is exp(-inf) = 0
            if (!live[g]) continue;
            const float m_new = std::max(m[g], bm);
            c[g] = simd::exp_scalar(m[g] - m_new);  // 0 on the first block (m = -inf), 1 if m is unchanged
            const B mv(m_new);
            B sum(0.0f);
            std::int64_t j = 0;
            for (; j + L <= nb; j += L) {
                const B e = simd::exp_batch(B::load_aligned(sg + j) - mv);
                e.store_aligned(sg + j);
                sum += e;
            }
            if (j < nb) {
                const auto rest = static_cast<std::size_t>(nb - j);
                const B e = simd::exp_batch(simd::load_partial(sg + j, rest, ninf) - mv);
                e.store_aligned(sg + j);
                sum += e;
            }
            l[g] = l[g] * c[g] + simd::hsum(sum);
            m[g] = m_new;
        }
        for (std::int64_t g = 0; g < n_q; ++g)
            if (live[g]) attn_accumulate(o + g * head_dim, s[g], v0 + j0 * stride, stride, nb, head_dim, c[g]);
    }
    for (std::int64_t g = 0; g < n_q; ++g) {
        const float inv = 1.0f / l[g];
        for (std::int64_t d = 0; d < head_dim; ++d) o[g * head_dim + d] *= inv;
    }
    if (rec)
        for (std::int64_t g = 0; g < n_q; ++g) {
            float* r = rec + g * rec_stride;
            std::fill(r, r + rec_lo, 0.0f);
            for (std::int64_t j = rec_lo; j < rec_lo + n_keys; ++j) r[j] = std::exp(r[j] - m[g]) / l[g];
            std::fill(r + rec_lo + n_keys, r + rec_stride, 0.0f);
        }
}

template <class KV>
inline void attention_impl(const attention_params& p, const float* q, float* out, std::int64_t n_tokens) {
    const std::int64_t n_heads = p.n_heads, n_kv_heads = p.n_kv_heads, head_dim = p.head_dim;
    const std::int64_t q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
    const std::int64_t group = n_heads / n_kv_heads;
    // Below ~64K multiply-adds per pass a parallel region costs more than it saves (tiny
    // models decode in microseconds), so such calls stay on the calling thread.
    double pairs = 0.0;
    for (std::int64_t t = 0; t < n_tokens; ++t) pairs += static_cast<double>(p.position(t) - p.first_key(t) + 1);
    const int nt = pairs * static_cast<double>(n_heads * head_dim) < 65536.0 ? 1 : resolve_threads(p.n_threads);
    // A work item is one token and `per_item` query heads of one KV group. Whole groups share
    // the most K/V traffic, but they are split when that would leave threads idle
    // (e.g. a single decode token over few KV heads).
    std::int64_t per_item = std::min(group, k_attn_max_heads);
    while (per_item > 1 && n_tokens * n_kv_heads * ((group + per_item - 1) / per_item) < 2 * nt) per_item = (per_item + 1) / 2;
    const std::int64_t chunks = (group + per_item - 1) / per_item;  // work items per (token, KV head)
    const std::int64_t per_token = n_kv_heads * chunks;
    parallel_for(n_tokens * per_token, nt, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
            const std::int64_t slot = i / per_token, r = i % per_token;
            const std::int64_t t = slot % 2 == 0 ? slot / 2 : n_tokens - 1 - slot / 2;  // zig-zag over tokens
            const std::int64_t kvh = r / chunks, h0 = kvh * group + (r % chunks) * per_item;
            const std::int64_t n_q = std::min(per_item, (kvh + 1) * group - h0);
            const std::int64_t lo = p.first_key(t), n_keys = p.position(t) - lo + 1;
            const std::int64_t kv_off = lo * kv_dim + kvh * head_dim;
            const KV* k = static_cast<const KV*>(p.token_kv ? p.token_kv[t].k : p.k);
            const KV* v = static_cast<const KV*>(p.token_kv ? p.token_kv[t].v : p.v);
            float* rec = p.weights ? p.weights + (t * n_heads + h0) * p.weights_stride : nullptr;
            attn_rows(q + t * q_dim + h0 * head_dim, n_q, k + kv_off, v + kv_off, kv_dim, n_keys, head_dim, p.scale, p.softcap,
                      out + t * q_dim + h0 * head_dim, rec, p.weights_stride, lo);
        }
    });
}

}  // namespace detail

// Causal grouped-query attention over a KV cache; see the top of this file for layouts.
// out must not overlap q, k or v.
inline void attention(const attention_params& p, const float* q, float* out, std::int64_t n_tokens) {
    detail::check_attention(p, q, out, n_tokens, "attention");
    if (n_tokens == 0) return;
    if (p.kv_type == dtype::f32) detail::attention_impl<float>(p, q, out, n_tokens);
    else detail::attention_impl<std::uint16_t>(p, q, out, n_tokens);
}

// One sequence, consecutive positions pos0.., no window or cap.
inline void attention(const float* q, const void* k, const void* v, dtype kv_type, float* out, std::int64_t n_tokens,
                      std::int64_t pos0, std::int64_t n_heads, std::int64_t n_kv_heads, std::int64_t head_dim, float scale,
                      int n_threads = 0) {
    if (pos0 < 0) throw shape_error("attention: negative pos0 " + std::to_string(pos0));
    attention_params p;
    p.n_heads = n_heads; p.n_kv_heads = n_kv_heads; p.head_dim = head_dim; p.scale = scale;
    p.kv_type = kv_type; p.k = k; p.v = v; p.pos0 = pos0; p.n_threads = n_threads;
    attention(p, q, out, n_tokens);
}

namespace ref {

// The same attention in double, one (token, head) at a time with the whole score row (and the
// same optional record of the weights).
inline void attention(const attention_params& p, const float* q, float* out, std::int64_t n_tokens) {
    detail::check_attention(p, q, out, n_tokens, "ref::attention");
    const std::int64_t head_dim = p.head_dim, q_dim = p.n_heads * head_dim, kv_dim = p.n_kv_heads * head_dim;
    const std::int64_t group = p.n_heads / p.n_kv_heads;
    auto kv_at = [&](const void* base, std::int64_t idx) -> double {
        return p.kv_type == dtype::f32 ? static_cast<double>(static_cast<const float*>(base)[idx])
                                       : static_cast<double>(fp16_to_fp32(static_cast<const std::uint16_t*>(base)[idx]));
    };
    std::vector<double> w;  // (n_keys) scores, then softmax weights
    std::vector<double> acc(static_cast<std::size_t>(head_dim));
    for (std::int64_t t = 0; t < n_tokens; ++t) {
        const std::int64_t lo = p.first_key(t), n_keys = p.position(t) - lo + 1;
        const void* k = p.token_kv ? p.token_kv[t].k : p.k;
        const void* v = p.token_kv ? p.token_kv[t].v : p.v;
        w.assign(static_cast<std::size_t>(n_keys), 0.0);
        for (std::int64_t h = 0; h < p.n_heads; ++h) {
            const float* qr = q + t * q_dim + h * head_dim;
            const std::int64_t kv_off = (h / group) * head_dim;
            double m = -std::numeric_limits<double>::infinity();
            for (std::int64_t j = 0; j < n_keys; ++j) {
                double s = 0.0;
                for (std::int64_t d = 0; d < head_dim; ++d) s += static_cast<double>(qr[d]) * kv_at(k, (lo + j) * kv_dim + kv_off + d);
                s *= p.scale;
                if (p.softcap > 0.0f) s = std::tanh(s / p.softcap) * p.softcap;
                w[static_cast<std::size_t>(j)] = s;
                m = std::max(m, s);
            }
            double sum = 0.0;
            for (auto& x : w) sum += (x = std::exp(x - m));
            if (p.weights) {
                float* r = p.weights + (t * p.n_heads + h) * p.weights_stride;
                std::fill(r, r + p.weights_stride, 0.0f);
                for (std::int64_t j = 0; j < n_keys; ++j) r[lo + j] = static_cast<float>(w[static_cast<std::size_t>(j)] / sum);
            }
            std::fill(acc.begin(), acc.end(), 0.0);
            for (std::int64_t j = 0; j < n_keys; ++j)
                for (std::int64_t d = 0; d < head_dim; ++d)
                    acc[static_cast<std::size_t>(d)] += w[static_cast<std::size_t>(j)] * kv_at(v, (lo + j) * kv_dim + kv_off + d);
            for (std::int64_t d = 0; d < head_dim; ++d)
                out[t * q_dim + h * head_dim + d] = static_cast<float>(acc[static_cast<std::size_t>(d)] / sum);
        }
    }
}

inline void attention(const float* q, const void* k, const void* v, dtype kv_type, float* out, std::int64_t n_tokens,
                      std::int64_t pos0, std::int64_t n_heads, std::int64_t n_kv_heads, std::int64_t head_dim, float scale) {
    if (pos0 < 0) throw shape_error("ref::attention: negative pos0 " + std::to_string(pos0));
    attention_params p;
    p.n_heads = n_heads; p.n_kv_heads = n_kv_heads; p.head_dim = head_dim; p.scale = scale;
    p.kv_type = kv_type; p.k = k; p.v = v; p.pos0 = pos0;
    ref::attention(p, q, out, n_tokens);
}

}  // namespace ref
}  // namespace minigpt::kernels

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

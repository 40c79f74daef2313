// Rotary position embedding (RoPE) applied in place to the query or key heads of one token.
//
// Dimension pair i (0 <= i < n_rot/2) of every head is rotated by the angle
// theta_i = pos * freq_base^(-2i/n_rot). Two layouts pair the dimensions differently:
//   adjacent_pairs: (x[2i], x[2i+1])        -- Llama weights in GGUF, llama2.c (ggml "normal" mode)
//   neox:           (x[i], x[i + n_rot/2])  -- GPT-NeoX, Qwen2, Phi (ggml "neox" mode)
// Dimensions n_rot..head_dim-1 are left as they are (partial rotary embeddings).
//
// The angles are computed in double and rounded to float once (llama.cpp accumulates
// theta by repeated float multiplication, which drifts at long positions; the exact angle
// is the reference). Each angle's cos/sin is computed once per call and shared by all
// heads; the rotation itself runs on xsimd batches. Negative positions are allowed: they
// rotate backwards, which is how a KV cache is shifted.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/error.hpp"
#include "minigpt/simd/vector_math.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"   // GCC 12 false positive in AVX-512 intrinsics,
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see simd/vector_math.hpp
#endif

namespace minigpt::kernels {

enum class rope_layout { adjacent_pairs, neox };

namespace detail {

inline void check_rope(const float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t n_rot, float freq_base,
                       rope_layout layout, const char* fn) {
    const std::string f(fn);
    if (n_heads < 0) throw shape_error(f + ": negative n_heads " + std::to_string(n_heads));
    if (head_dim <= 0) throw shape_error(f + ": head_dim must be > 0, got " + std::to_string(head_dim));
    if (n_rot < 0 || n_rot > head_dim || n_rot % 2 != 0)
        throw shape_error(f + ": n_rot must be even and within [0, head_dim=" + std::to_string(head_dim) + "], got " +
                          std::to_string(n_rot));
    if (!(freq_base > 0.0f) || !std::isfinite(freq_base))
        throw error(f + ": freq_base must be finite and > 0, got " + std::to_string(freq_base));
    if (layout != rope_layout::adjacent_pairs && layout != rope_layout::neox) throw error(f + ": unknown rope_layout");
    checked_mul(static_cast<std::uint64_t>(n_heads), static_cast<std::uint64_t>(head_dim), "rope n_heads*head_dim");
    if (x == nullptr && n_heads > 0) throw error(f + ": null pointer for 'x'");
}

// theta_i = pos * base^(-2i/n_rot) in double.
inline double rope_angle(std::int64_t pos, std::int64_t i, std::int64_t n_rot, double log_base) {
    return static_cast<double>(pos) * std::exp(-2.0 * static_cast<double>(i) / static_cast<double>(n_rot) * log_base);
}

struct swap_adjacent {
    static constexpr unsigned get(unsigned i, unsigned) { return i ^ 1u; }
};

}  // namespace detail

// Everything about a model's rotation but the position. The scaling fields follow llama.cpp's
// ggml_rope_ext without YaRN (ext_factor 0): theta_i = pos * freq_scale * base^(-2i/n_rot) / factor_i,
// and both cos and sin are multiplied by mscale (the file's rope.scaling.attn_factor).
struct rope_spec {
    std::int64_t n_rot = 0;                   // rotated dimensions per head
    float freq_base = 10000.0f;
    rope_layout layout = rope_layout::adjacent_pairs;
    float freq_scale = 1.0f;                  // 1 / rope.scaling.factor for linear scaling
    const float* freq_factors = nullptr;      // (n_rot/2) divisors: Llama 3.1 rope_freqs, LongRoPE factors
    float mscale = 1.0f;                      // LongRoPE's attention factor
};

// Rotates the first n_rot dims of each of n_heads vectors of length head_dim stored back to
// back, at position pos.
inline void rope(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, const rope_spec& r) {
    const std::int64_t n_rot = r.n_rot;
    const float freq_base = r.freq_base;
    const rope_layout layout = r.layout;
    detail::check_rope(x, n_heads, head_dim, n_rot, freq_base, layout, "rope");
    if (!(r.freq_scale > 0.0f) || !std::isfinite(r.freq_scale) || !std::isfinite(r.mscale))
        throw error("rope: freq_scale must be finite and > 0 and mscale finite");
    if (n_heads == 0 || n_rot == 0) return;
    const double log_base = std::log(static_cast<double>(freq_base));
    auto angle = [&](std::int64_t i) {
        const double th = detail::rope_angle(pos, i, n_rot, log_base) * static_cast<double>(r.freq_scale);
        return r.freq_factors ? th / static_cast<double>(r.freq_factors[i]) : th;
    };
    const auto ms = static_cast<double>(r.mscale);
    using B = simd::f32_batch;
    constexpr std::int64_t L = static_cast<std::int64_t>(simd::f32_lanes);
    // Angles are handled k_chunk pairs at a time so the tables live on the stack.
    constexpr std::int64_t k_chunk = 64;
    // Zero-filled so that whole-batch loads past the last angle read defined values.
    alignas(64) float cos_t[2 * k_chunk + simd::f32_lanes] = {};
    alignas(64) float sin_t[2 * k_chunk + simd::f32_lanes] = {};
    const std::int64_t n_pairs = n_rot / 2;
    for (std::int64_t p0 = 0; p0 < n_pairs; p0 += k_chunk) {
        const std::int64_t np = std::min(k_chunk, n_pairs - p0);
        if (layout == rope_layout::adjacent_pairs) {
            // Interleaved tables (c0 c0 c1 c1 ..) and (-s0 s0 -s1 s1 ..): with the pair-swapped
            // vector (x1 x0 x3 x2 ..) the rotation is x*cos + swap(x)*sin, lane by lane.
            for (std::int64_t i = 0; i < np; ++i) {
                const double th = angle(p0 + i);
                const auto c = static_cast<float>(std::cos(th) * ms);
                const auto s = static_cast<float>(std::sin(th) * ms);
                cos_t[2 * i] = c;
                cos_t[2 * i + 1] = c;
                sin_t[2 * i] = -s;
                sin_t[2 * i + 1] = s;
            }
            constexpr auto swap = xsimd::make_batch_constant<xsimd::batch<std::uint32_t, simd::arch>, detail::swap_adjacent>();
            const std::int64_t width = 2 * np;
            for (std::int64_t h = 0; h < n_heads; ++h) {
                float* v = x + h * head_dim + 2 * p0;
                std::int64_t j = 0;
                for (; j + L <= width; j += L) {
                    const B xv = B::load_unaligned(v + j);
                    xsimd::fma(xv, B::load_aligned(cos_t + j), xsimd::swizzle(xv, swap) * B::load_aligned(sin_t + j))
                        .store_unaligned(v + j);
                }
                if (j < width) {  // width is even, so no pair straddles the tail
                    const auto rest = static_cast<std::size_t>(width - j);
                    const B xv = simd::load_partial(v + j, rest, 0.0f);
                    simd::store_partial(xsimd::fma(xv, B::load_aligned(cos_t + j), xsimd::swizzle(xv, swap) * B::load_aligned(sin_t + j)),
                                        v + j, rest);
                }
            }
        } else {
            for (std::int64_t i = 0; i < np; ++i) {
                const double th = angle(p0 + i);
                cos_t[i] = static_cast<float>(std::cos(th) * ms);
                sin_t[i] = static_cast<float>(std::sin(th) * ms);
            }
            for (std::int64_t h = 0; h < n_heads; ++h) {
                float* a = x + h * head_dim + p0;
                float* b = a + n_pairs;
                std::int64_t j = 0;
                for (; j + L <= np; j += L) {
                    const B av = B::load_unaligned(a + j), bv = B::load_unaligned(b + j);
                    const B c = B::load_aligned(cos_t + j), s = B::load_aligned(sin_t + j);
                    xsimd::fms(av, c, bv * s).store_unaligned(a + j);
                    xsimd::fma(av, s, bv * c).store_unaligned(b + j);
                }
                if (j < np) {
                    const auto rest = static_cast<std::size_t>(np - j);
                    const B av = simd::load_partial(a + j, rest, 0.0f), bv = simd::load_partial(b + j, rest, 0.0f);
                    const B c = B::load_aligned(cos_t + j), s = B::load_aligned(sin_t + j);
                    simd::store_partial(xsimd::fms(av, c, bv * s), a + j, rest);
                    simd::store_partial(xsimd::fma(av, s, bv * c), b + j, rest);
                }
            }
        }
    }
}

// The plain rotation (no scaling), as before rope_spec existed.
inline void rope(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t n_rot, std::int64_t pos,
                 float freq_base, rope_layout layout) {
    rope(x, n_heads, head_dim, pos, rope_spec{n_rot, freq_base, layout});
}

namespace ref {

// The same rotation, one head and pair at a time, all in double.
inline void rope(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t n_rot, std::int64_t pos,
                 float freq_base, rope_layout layout) {
    detail::check_rope(x, n_heads, head_dim, n_rot, freq_base, layout, "ref::rope");
    const std::int64_t n_pairs = n_rot / 2;
    for (std::int64_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (std::int64_t i = 0; i < n_pairs; ++i) {
            const double th = static_cast<double>(pos) *
                              std::pow(static_cast<double>(freq_base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
            const std::int64_t i0 = layout == rope_layout::adjacent_pairs ? 2 * i : i;
            const std::int64_t i1 = layout == rope_layout::adjacent_pairs ? 2 * i + 1 : i + n_pairs;
            const double a = v[i0], b = v[i1];
            v[i0] = static_cast<float>(a * std::cos(th) - b * std::sin(th));
            v[i1] = static_cast<float>(a * std::sin(th) + b * std::cos(th));
        }
    }
}

}  // namespace ref
}  // namespace minigpt::kernels

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// GELU through an fp16 lookup table, bit-compatible with llama.cpp's CPU backend.
//
// ggml (GGML_GELU_FP16, on by default) evaluates GELU as fp16(gelu(fp16(x))) from a
// 65536-entry table, with x <= -10 -> 0 and x >= 10 -> x. That rounding moves GPT-2
// logits by ~1e-3 against the exact formula, which is the whole error budget when
// comparing with llama.cpp, so GPT-2 models use this form by default (see
// model_config::gelu). kernels::gelu (ops.hpp) is the exact tanh form.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>

#include "minigpt/core/half.hpp"
#include "minigpt/simd/convert.hpp"

namespace minigpt::kernels {

namespace detail {

inline const std::uint16_t* gelu_fp16_table() {
    static const auto table = [] {
        auto t = std::make_unique<std::array<std::uint16_t, 65536>>();
        for (std::uint32_t i = 0; i < 65536; ++i) {
            const float x = fp16_to_fp32(static_cast<std::uint16_t>(i));
            // GPT-2's tanh approximation evaluated in float, as ggml_gelu_f32 does.
            const float g = 0.5f * x * (1.0f + std::tanh(0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)));
            (*t)[i] = fp32_to_fp16(g);
        }
        return t;
    }();
    return table->data();
}

}  // namespace detail

// In place: x = fp16(gelu(fp16(x))) with ggml's saturation outside [-10, 10]. The conversions
// run a block at a time on the vector units (simd/convert.hpp, round to nearest even like the
// scalar ones); done one value at a time in software they made this ~1.5% of GPT-2 decode time.
inline void gelu_fp16_table(float* x, std::int64_t n) {
    const std::uint16_t* table = detail::gelu_fp16_table();
    constexpr std::int64_t block = 256;
    std::uint16_t h[block];
    float g[block];
    for (std::int64_t i0 = 0; i0 < n; i0 += block) {
        const std::int64_t m = std::min(block, n - i0);
        float* xs = x + i0;
        simd::f32_to_f16_row(xs, h, m);
        for (std::int64_t j = 0; j < m; ++j) h[j] = table[h[j]];
        simd::f16_to_f32_row(h, g, m);
        for (std::int64_t j = 0; j < m; ++j) xs[j] = xs[j] <= -10.0f ? 0.0f : (xs[j] >= 10.0f ? xs[j] : g[j]);
    }
}

// Scalar reference of the same function, without the table (for tests).
inline float gelu_fp16_reference(float v) {
    if (v <= -10.0f) return 0.0f;
    if (v >= 10.0f) return v;
    const float x = fp16_to_fp32(fp32_to_fp16(v));
    return fp16_to_fp32(fp32_to_fp16(0.5f * x * (1.0f + std::tanh(0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)))));
}

}  // namespace minigpt::kernels

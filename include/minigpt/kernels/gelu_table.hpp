// GELU through an fp16 lookup table, bit-compatible with llama.cpp's CPU backend.
//
// ggml (GGML_GELU_FP16, on by default) evaluates GELU as fp16(gelu(fp16(x))) from a
// 65536-entry table, with x <= -10 -> 0 and x >= 10 -> x. That rounding moves GPT-2
// logits by ~1e-3 against the exact formula, which is the whole error budget when
// comparing with llama.cpp, so GPT-2 models use this form by default (see
// model_config::gelu). kernels::gelu (ops.hpp) is the exact tanh form.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>

#include "minigpt/core/half.hpp"

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

// In place: x = fp16(gelu(fp16(x))) with ggml's saturation outside [-10, 10].
inline void gelu_fp16_table(float* x, std::int64_t n) {
    const std::uint16_t* table = detail::gelu_fp16_table();
    for (std::int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        if (v <= -10.0f) x[i] = 0.0f;
        else if (v >= 10.0f) x[i] = v;
        else x[i] = fp16_to_fp32(table[fp32_to_fp16(v)]);
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

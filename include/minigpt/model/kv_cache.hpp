// kv_cache: the keys and values of every past position, per layer, for one context.
//
// Layout per layer: K and V are (n_ctx, n_kv_heads*head_dim) row-major, in F32 (the
// default, as llama.cpp's F32 cache that the references use) or F16 (half the memory
// and bandwidth; values rounded to nearest even). Row p holds position p, so the
// attention kernel reads rows [0, pos] directly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

class kv_cache {
public:
    kv_cache() = default;
    kv_cache(std::int64_t n_layer, std::int64_t n_ctx, std::int64_t kv_dim, dtype type) : type_(type) {
        if (type != dtype::f32 && type != dtype::f16)
            throw error("KV cache type must be f32 or f16, got " + std::string(dtype_name(type)));
        if (n_layer <= 0 || n_ctx <= 0 || kv_dim <= 0) throw error("KV cache dimensions must be positive");
        checked_mul(checked_mul(static_cast<std::uint64_t>(n_layer), static_cast<std::uint64_t>(n_ctx), "KV cache size"),
                    static_cast<std::uint64_t>(kv_dim) * 4, "KV cache size");
        k_ = tensor::empty(type, {n_layer, n_ctx, kv_dim});  // (n_layer, n_ctx, kv_dim)
        v_ = tensor::empty(type, {n_layer, n_ctx, kv_dim});  // (n_layer, n_ctx, kv_dim)
    }

    dtype type() const noexcept { return type_; }
    std::int64_t n_layer() const { return k_.empty() ? 0 : k_.dim(0); }
    std::int64_t n_ctx() const { return k_.empty() ? 0 : k_.dim(1); }
    std::int64_t kv_dim() const { return k_.empty() ? 0 : k_.dim(2); }
    std::int64_t n_bytes() const { return k_.n_bytes() + v_.n_bytes(); }

    const void* k(std::int64_t layer) const { return k_.row_ptr(layer * n_ctx()); }
    const void* v(std::int64_t layer) const { return v_.row_ptr(layer * n_ctx()); }
    // Writable rows and their size, for restoring a saved state (generate/prompt_cache.hpp).
    void* k(std::int64_t layer) { return k_.row_ptr(layer * n_ctx()); }
    void* v(std::int64_t layer) { return v_.row_ptr(layer * n_ctx()); }
    std::int64_t row_bytes() const { return k_.empty() ? 0 : k_.row_bytes(); }

    // Writes rows [pos0, pos0+n_tokens) of one layer from f32 (n_tokens, kv_dim) arrays.
    void store(std::int64_t layer, std::int64_t pos0, std::int64_t n_tokens, const float* k, const float* v) {
        if (pos0 < 0 || n_tokens < 0 || pos0 + n_tokens > n_ctx()) throw error("KV cache store beyond the context");
        const std::int64_t d = kv_dim();
        for (std::int64_t t = 0; t < n_tokens; ++t) {
            quant::quantize_row(type_, k + t * d, k_.row_ptr(layer * n_ctx() + pos0 + t), d);
            quant::quantize_row(type_, v + t * d, v_.row_ptr(layer * n_ctx() + pos0 + t), d);
        }
    }

    // Copies positions [0, n_positions) of every layer from another cache of the same geometry.
    void copy_from(const kv_cache& other, std::int64_t n_positions) {
        if (other.type_ != type_ || other.n_layer() != n_layer() || other.kv_dim() != kv_dim() ||
            n_positions > std::min(n_ctx(), other.n_ctx()))
            throw error("KV cache copy between incompatible caches");
        const auto row = k_.row_bytes();
        for (std::int64_t l = 0; l < n_layer(); ++l) {
            std::memcpy(k_.row_ptr(l * n_ctx()), other.k_.row_ptr(l * other.n_ctx()), static_cast<std::size_t>(row * n_positions));
            std::memcpy(v_.row_ptr(l * n_ctx()), other.v_.row_ptr(l * other.n_ctx()), static_cast<std::size_t>(row * n_positions));
        }
    }

private:
    dtype type_ = dtype::f32;
    tensor k_, v_;
};

}  // namespace minigpt

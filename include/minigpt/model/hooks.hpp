// Inspection hooks: read, and where it makes sense overwrite, what a forward pass computes inside
// each layer — the feed-forward activations ("neurons"), the attention weights per head and the
// residual stream — for interpretability work (recording neurons, ablating or patching them).
//
// A context runs its hooks (context::set_hooks) during every decode(), once per layer and batch
// chunk, with the values of that chunk's tokens, row-major, one row per token:
//   on_ffn_input       (n_tokens, n_embd)  the normed input of the feed-forward block; read-only
//   on_ffn_activation  (n_tokens, n_ff)    after the nonlinearity (and the gate), the exact input of
//                                          the down projection; writable: a changed value is what
//                                          the down projection and everything after it see
//   on_attention       (n_tokens, n_heads, n_keys) softmax weights of each query head over the key
//                                          positions 0..n_keys-1 (0 outside the causal window);
//                                          writable: a (token, head) row whose weights changed has
//                                          its output recomputed as sum_j w_j v_j from the cached
//                                          values (zero a head's row to ablate the head)
//   on_residual        (n_tokens, n_embd)  the residual stream after the layer; writable: the next
//                                          layer (or the final norm) reads the changed values
// The feed-forward activation is taken where every architecture's recipe already hands it to one
// function, layer_pass::project with the ffn_down matrix, so the hook sees the same thing for
// SwiGLU, GeGLU, GELU MLPs and fused gate|up matrices. Attention weights come out of the fused
// (online-softmax) kernel itself: it writes its scores into the record and normalises them with
// the final maximum and denominator it used (kernels/attention.hpp).
//
// Cost: with no hooks set the forward pass does one null test per projection and per layer. With
// hooks it does what they ask: attention recording stores n_heads * n_keys floats per token (and
// keeps a copy to see which rows a hook changed).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt {

enum class hook_point { ffn_input, ffn_activation, attention, residual };

inline const char* hook_point_name(hook_point p) {
    switch (p) {
        case hook_point::ffn_input: return "ffn_input";
        case hook_point::ffn_activation: return "ffn_activation";
        case hook_point::attention: return "attention";
        case hook_point::residual: return "residual";
    }
    return "?";
}

// What a hook is told about the values it receives.
struct hook_site {
    hook_point point;
    std::int64_t layer;
    std::int64_t n_tokens;              // rows
    std::int64_t width;                 // values per row (n_heads * n_keys for attention)
    const std::int64_t* positions;      // (n_tokens) position of each row's token
    std::int64_t n_heads = 0, n_keys = 0;  // attention only

    std::int64_t position(std::int64_t t) const { return positions[t]; }
};

using hook_fn = std::function<void(const hook_site&, std::span<float>)>;
using read_hook_fn = std::function<void(const hook_site&, std::span<const float>)>;

struct inspection_hooks {
    read_hook_fn on_ffn_input;
    hook_fn on_ffn_activation;
    hook_fn on_attention;
    hook_fn on_residual;
    std::vector<std::int64_t> layers;   // the layers the hooks fire on; empty: every layer

    bool any() const { return on_ffn_input || on_ffn_activation || on_attention || on_residual; }
};

// A context's hooks with the scratch the attention record needs (grown on demand: recording is
// opt-in, so it may allocate).
class hook_set {
public:
    hook_set(inspection_hooks h, std::int64_t n_layer) : h_(std::move(h)), fires_(static_cast<std::size_t>(n_layer), h_.layers.empty()) {
        for (auto l : h_.layers) {
            if (l < 0 || l >= n_layer)
                throw error("set_hooks: layer " + std::to_string(l) + " out of range [0, " + std::to_string(n_layer) + ")");
            fires_[static_cast<std::size_t>(l)] = true;
        }
    }

    const inspection_hooks& hooks() const noexcept { return h_; }
    bool fires(std::int64_t layer) const { return fires_[static_cast<std::size_t>(layer)]; }
    bool records_attention(std::int64_t layer) const { return h_.on_attention && fires(layer); }

    void ffn_input(std::int64_t layer, const float* x, std::int64_t n_tokens, std::int64_t width, const std::int64_t* pos) const {
        if (!h_.on_ffn_input || !fires(layer)) return;
        h_.on_ffn_input({hook_point::ffn_input, layer, n_tokens, width, pos, 0, 0},
                        std::span<const float>(x, static_cast<std::size_t>(n_tokens * width)));
    }
    void ffn_activation(std::int64_t layer, float* x, std::int64_t n_tokens, std::int64_t width, const std::int64_t* pos) const {
        if (!h_.on_ffn_activation || !fires(layer)) return;
        h_.on_ffn_activation({hook_point::ffn_activation, layer, n_tokens, width, pos, 0, 0},
                             std::span<float>(x, static_cast<std::size_t>(n_tokens * width)));
    }
    void residual(std::int64_t layer, float* x, std::int64_t n_tokens, std::int64_t width, const std::int64_t* pos) const {
        if (!h_.on_residual || !fires(layer)) return;
        h_.on_residual({hook_point::residual, layer, n_tokens, width, pos, 0, 0}, std::span<float>(x, static_cast<std::size_t>(n_tokens * width)));
    }

    // (n_tokens, n_heads, n_keys) buffer for the attention kernel to fill.
    float* attention_buffer(std::int64_t n_tokens, std::int64_t n_heads, std::int64_t n_keys) const {
        attn_.resize(static_cast<std::size_t>(n_tokens * n_heads * n_keys));
        return attn_.data();
    }
    // Runs the hook on the filled buffer; returns the (token, head) rows it changed, in order.
    const std::vector<std::int64_t>& attention(std::int64_t layer, std::int64_t n_tokens, std::int64_t n_heads, std::int64_t n_keys,
                                               const std::int64_t* pos) const {
        const auto n = static_cast<std::size_t>(n_tokens * n_heads * n_keys);
        before_.assign(attn_.begin(), attn_.begin() + static_cast<std::ptrdiff_t>(n));
        h_.on_attention({hook_point::attention, layer, n_tokens, n_heads * n_keys, pos, n_heads, n_keys}, std::span<float>(attn_.data(), n));
        changed_.clear();
        for (std::int64_t r = 0; r < n_tokens * n_heads; ++r)
            if (!std::equal(attn_.begin() + r * n_keys, attn_.begin() + (r + 1) * n_keys, before_.begin() + r * n_keys)) changed_.push_back(r);
        return changed_;
    }
    const float* attention_weights() const noexcept { return attn_.data(); }

private:
    inspection_hooks h_;
    std::vector<bool> fires_;           // (n_layer)
    mutable std::vector<float> attn_;   // (n_tokens, n_heads, n_keys) the last attention record
    mutable std::vector<float> before_; // (n_tokens, n_heads, n_keys) the record before the hook ran
    mutable std::vector<std::int64_t> changed_;  // (token, head) rows the hook changed: t * n_heads + h
};

}  // namespace minigpt

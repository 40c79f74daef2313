// model_weights: every tensor of a model, by role, checked against the config.
//
// Tensors are zero-copy views into the memory-mapped file, in whatever element type
// the file uses (real files mix types per tensor). Only 1-D tensors (norm weights and
// biases, a few KB) are converted to owned F32 at load, so kernels can take them as
// plain float arrays. Names are GGUF's; llama2.c checkpoints are presented under the
// same names by io/llama2c.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

struct layer_weights {
    tensor attn_norm, attn_norm_b;         // (n_embd) f32; _b only for gpt2
    tensor attn_q, attn_k, attn_v;         // (q_dim, n_embd), (kv_dim, n_embd), (kv_dim, n_embd); llama
    tensor attn_q_b, attn_k_b, attn_v_b;   // (q_dim), (kv_dim), (kv_dim) f32; optional (Qwen2)
    tensor attn_qkv, attn_qkv_b;           // (q_dim + 2*kv_dim, n_embd), its bias; gpt2 (fused)
    tensor attn_output, attn_output_b;     // (n_embd, q_dim); bias gpt2 only
    tensor ffn_norm, ffn_norm_b;           // (n_embd) f32
    tensor ffn_gate, ffn_up, ffn_down;     // (n_ff, n_embd), (n_ff, n_embd), (n_embd, n_ff); no gate in gpt2
    tensor ffn_up_b, ffn_down_b;           // (n_ff), (n_embd) f32; gpt2 only
};

struct model_weights {
    tensor token_embd;                     // (n_vocab, n_embd)
    tensor position_embd;                  // (n_ctx_train, n_embd); gpt2 only
    tensor output_norm, output_norm_b;     // (n_embd) f32; _b gpt2 only
    tensor output;                         // (n_vocab, n_embd); the token_embd view when tied
    std::vector<layer_weights> layers;     // n_layer
};

// Looks a tensor up by GGUF name; nullopt when the file has no such tensor.
using tensor_source = std::function<std::optional<tensor>(const std::string& name)>;

namespace detail {

inline std::string shape_of(std::initializer_list<std::int64_t> s) {
    std::string r = "(";
    bool first = true;
    for (auto d : s) { r += (first ? "" : ", ") + std::to_string(d); first = false; }
    return r + ")";
}

class weight_loader {
public:
    weight_loader(const tensor_source& source, std::string file) : source_(source), file_(std::move(file)) {}

    tensor require(const std::string& name, std::initializer_list<std::int64_t> shape) {
        auto t = find(name, shape);
        if (!t) throw lookup_error(file_ + ": missing tensor '" + name + "' " + shape_of(shape));
        return *t;
    }

    std::optional<tensor> find(const std::string& name, std::initializer_list<std::int64_t> shape) {
        auto t = source_(name);
        if (!t) return std::nullopt;
        const auto s = t->shape();
        bool ok = s.size() == shape.size();
        std::size_t i = 0;
        for (auto d : shape) ok = ok && s[i++] == d;
        // A 1-D tensor may be stored as (1, n) by some converters.
        if (!ok && shape.size() == 1 && s.size() == 2 && s[0] == 1 && s[1] == *shape.begin()) ok = true;
        if (!ok)
            throw shape_error(file_ + ": tensor '" + name + "' has shape " + t->shape_string() + ", expected " + shape_of(shape));
        return t;
    }

    // 1-D tensors become owned F32 so kernels can read them as float arrays.
    tensor require_vector(const std::string& name, std::int64_t n) { return to_f32(require(name, {n}), n); }
    tensor find_vector(const std::string& name, std::int64_t n) {
        auto t = find(name, {n});
        return t ? to_f32(*t, n) : tensor();
    }

private:
    static tensor to_f32(const tensor& t, std::int64_t n) {
        auto out = tensor::empty(dtype::f32, {n});
        quant::dequantize_row(t.type(), t.raw(), out.data<float>(), n);
        return out;
    }

    const tensor_source& source_;
    std::string file_;
};

}  // namespace detail

// Fetches and shape-checks every tensor the config's architecture needs.
inline model_weights load_weights(const model_config& c, const tensor_source& source, const std::string& file) {
    detail::weight_loader w(source, file);
    model_weights m;
    const bool gpt2 = c.arch == architecture::gpt2;
    m.token_embd = w.require("token_embd.weight", {c.n_vocab, c.n_embd});
    if (gpt2) m.position_embd = w.require("position_embd.weight", {c.n_ctx_train, c.n_embd});
    m.output_norm = w.require_vector("output_norm.weight", c.n_embd);
    if (gpt2) m.output_norm_b = w.require_vector("output_norm.bias", c.n_embd);
    if (auto out = w.find("output.weight", {c.n_vocab, c.n_embd}); out && !c.tied_output) m.output = *out;
    else m.output = m.token_embd;

    m.layers.resize(static_cast<std::size_t>(c.n_layer));
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
        auto& L = m.layers[static_cast<std::size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        L.attn_norm = w.require_vector(p + "attn_norm.weight", c.n_embd);
        L.ffn_norm = w.require_vector(p + "ffn_norm.weight", c.n_embd);
        L.attn_output = w.require(p + "attn_output.weight", {c.n_embd, c.q_dim()});
        L.ffn_up = w.require(p + "ffn_up.weight", {c.n_ff, c.n_embd});
        L.ffn_down = w.require(p + "ffn_down.weight", {c.n_embd, c.n_ff});
        if (gpt2) {
            const std::int64_t n_qkv = c.q_dim() + 2 * c.kv_dim();
            L.attn_norm_b = w.require_vector(p + "attn_norm.bias", c.n_embd);
            L.ffn_norm_b = w.require_vector(p + "ffn_norm.bias", c.n_embd);
            L.attn_qkv = w.require(p + "attn_qkv.weight", {n_qkv, c.n_embd});
            L.attn_qkv_b = w.require_vector(p + "attn_qkv.bias", n_qkv);
            L.attn_output_b = w.require_vector(p + "attn_output.bias", c.n_embd);
            L.ffn_up_b = w.require_vector(p + "ffn_up.bias", c.n_ff);
            L.ffn_down_b = w.require_vector(p + "ffn_down.bias", c.n_embd);
        } else {
            L.attn_q = w.require(p + "attn_q.weight", {c.q_dim(), c.n_embd});
            L.attn_k = w.require(p + "attn_k.weight", {c.kv_dim(), c.n_embd});
            L.attn_v = w.require(p + "attn_v.weight", {c.kv_dim(), c.n_embd});
            L.attn_q_b = w.find_vector(p + "attn_q.bias", c.q_dim());
            L.attn_k_b = w.find_vector(p + "attn_k.bias", c.kv_dim());
            L.attn_v_b = w.find_vector(p + "attn_v.bias", c.kv_dim());
            L.ffn_gate = w.require(p + "ffn_gate.weight", {c.n_ff, c.n_embd});
        }
    }
    return m;
}

}  // namespace minigpt

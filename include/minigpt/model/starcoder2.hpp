// StarCoder2: pre-LayerNorm with bias, separate Q/K/V projections with biases, NeoX RoPE,
// grouped-query attention, a GELU MLP (GELU through llama.cpp's fp16 table) with biases, and
// biases on the attention output and the final norm.
#pragma once

#include <algorithm>
#include <cstdint>

#include "minigpt/kernels/gelu_table.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/arch.hpp"
#include "minigpt/model/gpt2.hpp"  // attn_residual_gelu_mlp

namespace minigpt {

inline void starcoder2_tensors(const model_config& c, model_weights& w, tensor_list& v) {
    v.table(w.token_embd, "token_embd.weight", c.n_vocab, c.n_embd);
    v.norm(w.output_norm, -1, "output_norm.weight", c.n_embd);
    v.bias(w.output_norm_b, -1, "output_norm.bias", c.n_embd);
    v.output(c, w);
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
        auto& L = w.layers[static_cast<std::size_t>(i)];
        v.norm(L.attn_norm, i, "attn_norm.weight", c.n_embd);
        v.bias(L.attn_norm_b, i, "attn_norm.bias", c.n_embd);
        v.matrix(L.attn_q, i, "attn_q.weight", matrix_role::attn_q, c.q_dim(), c.n_embd);
        v.matrix(L.attn_k, i, "attn_k.weight", matrix_role::attn_k, c.kv_dim(), c.n_embd);
        v.matrix(L.attn_v, i, "attn_v.weight", matrix_role::attn_v, c.kv_dim(), c.n_embd);
        v.bias(L.attn_q_b, i, "attn_q.bias", c.q_dim());
        v.bias(L.attn_k_b, i, "attn_k.bias", c.kv_dim());
        v.bias(L.attn_v_b, i, "attn_v.bias", c.kv_dim());
        v.matrix(L.attn_output, i, "attn_output.weight", matrix_role::attn_output, c.n_embd, c.q_dim());
        v.bias(L.attn_output_b, i, "attn_output.bias", c.n_embd);
        v.norm(L.ffn_norm, i, "ffn_norm.weight", c.n_embd);
        v.bias(L.ffn_norm_b, i, "ffn_norm.bias", c.n_embd);
        v.matrix(L.ffn_up, i, "ffn_up.weight", matrix_role::ffn_up, c.n_ff, c.n_embd);
        v.bias(L.ffn_up_b, i, "ffn_up.bias", c.n_ff);
        v.matrix(L.ffn_down, i, "ffn_down.weight", matrix_role::ffn_down, c.n_embd, c.n_ff);
        v.bias(L.ffn_down_b, i, "ffn_down.bias", c.n_embd);
    }
}

// x += Wo · attention(rope(Wq·n + bq), rope(Wk·n + bk), Wv·n + bv) + bo,   n = layernorm(x)
// x += W2 · gelu(W1·n + b1) + b2,                                       n = layernorm(x)
inline void starcoder2_layer(const layer_pass& p) {
    using namespace kernels;
    const auto& c = p.c;
    const auto& L = p.L;
    const std::int64_t n_embd = c.n_embd;
    float *x = p.s.x.data<float>(), *xb = p.s.xb.data<float>();
    float *q = p.s.q.data<float>(), *k = p.s.k.data<float>(), *v = p.s.v.data<float>();
    float* att = p.s.att.data<float>();
    auto norm = [&](const tensor& w, const tensor& b, std::int64_t t) {
        layernorm(xb + t * n_embd, x + t * n_embd, w.data<float>(), b.data<float>(), n_embd, c.norm_eps);
    };

    p.per_token([&](std::int64_t t) { norm(L.attn_norm, L.attn_norm_b, t); });
    p.qkv(xb, q, k, v);
    p.attend(q, k, v, att);
    p.project({{matrix_role::attn_output, xb}}, att);

    attn_residual_gelu_mlp(p);
}

inline const arch_descriptor& starcoder2_arch() {
    static const arch_descriptor d{
        "starcoder2", {}, norm_kind::layer, true, 1,
        [](model_config& c) { c.rope = kernels::rope_layout::neox; },
        starcoder2_tensors, starcoder2_layer};
    return d;
}

}  // namespace minigpt

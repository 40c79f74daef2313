// GPT-2: pre-LayerNorm (with bias), fused QKV projection with bias, multi-head attention,
// GELU MLP with biases. Positions are learned embeddings added to the input (context.hpp),
// so there is no RoPE, and a context cannot be longer than context_length.
#pragma once

#include <algorithm>
#include <cstdint>

#include "minigpt/kernels/gelu_table.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/arch.hpp"

namespace minigpt {

inline void gpt2_tensors(const model_config& c, model_weights& w, tensor_list& v) {
    const std::int64_t n_qkv = c.q_dim() + 2 * c.kv_dim();
    v.table(w.token_embd, "token_embd.weight", c.n_vocab, c.n_embd);
    v.table(w.position_embd, "position_embd.weight", c.n_ctx_train, c.n_embd, synth_init::position);
    v.norm(w.output_norm, -1, "output_norm.weight", c.n_embd);
    v.bias(w.output_norm_b, -1, "output_norm.bias", c.n_embd);
    v.output(c, w);
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
        auto& L = w.layers[static_cast<std::size_t>(i)];
        v.norm(L.attn_norm, i, "attn_norm.weight", c.n_embd);
        v.bias(L.attn_norm_b, i, "attn_norm.bias", c.n_embd);
        v.matrix(L.attn_qkv, i, "attn_qkv.weight", matrix_role::attn_qkv, n_qkv, c.n_embd);
        v.bias(L.attn_qkv_b, i, "attn_qkv.bias", n_qkv);
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

// The second half of a GPT-2-style block (also StarCoder2's): with xb (n_tokens, n_embd) holding
// the attention output projection,
//   x += xb + bo;   x += W2 · gelu(W1 · layernorm(x) + b1) + b2
inline void attn_residual_gelu_mlp(const layer_pass& p) {
    using namespace kernels;
    const auto& c = p.c;
    const auto& L = p.L;
    const std::int64_t n_embd = c.n_embd, n_ff = c.n_ff;
    float *x = p.s.x.data<float>(), *xb = p.s.xb.data<float>(), *hb = p.s.hb.data<float>();
    p.per_token([&](std::int64_t t) {
        minigpt::detail::add_bias(xb + t * n_embd, L.attn_output_b, n_embd);
        add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd);  // the attention residual
        layernorm(xb + t * n_embd, x + t * n_embd, L.ffn_norm.data<float>(), L.ffn_norm_b.data<float>(), n_embd, c.norm_eps);
    });
    if (p.ffn_input_out) std::copy(xb, xb + p.n_tokens * n_embd, p.ffn_input_out);
    p.project({{matrix_role::ffn_up, hb}}, xb);
    p.per_token([&](std::int64_t t) {
        minigpt::detail::add_bias(hb + t * n_ff, L.ffn_up_b, n_ff);
        if (c.gelu == gelu_mode::fp16_table) gelu_fp16_table(hb + t * n_ff, n_ff);
        else gelu(hb + t * n_ff, n_ff);
    });
    p.project({{matrix_role::ffn_down, xb}}, hb);
    p.per_token([&](std::int64_t t) {
        minigpt::detail::add_bias(xb + t * n_embd, L.ffn_down_b, n_embd);
        add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd);
    });
}

// x += Wo · attention(split(Wqkv · n + b)) + bo,   n = layernorm(x)
// x += W2 · gelu(W1 · n + b1) + b2,               n = layernorm(x)
inline void gpt2_layer(const layer_pass& p) {
    using namespace kernels;
    const auto& c = p.c;
    const auto& L = p.L;
    const std::int64_t n_embd = c.n_embd, q_dim = c.q_dim(), kv_dim = c.kv_dim();
    const std::int64_t n_qkv = q_dim + 2 * kv_dim;
    float *x = p.s.x.data<float>(), *xb = p.s.xb.data<float>(), *qkv = p.s.q.data<float>();  // qkv: (n_tokens, n_qkv)
    float *k = p.s.k.data<float>(), *v = p.s.v.data<float>(), *att = p.s.att.data<float>();
    auto norm = [&](const tensor& w, const tensor& b, std::int64_t t) {
        layernorm(xb + t * n_embd, x + t * n_embd, w.data<float>(), b.data<float>(), n_embd, c.norm_eps);
    };

    p.per_token([&](std::int64_t t) { norm(L.attn_norm, L.attn_norm_b, t); });
    p.project({{matrix_role::attn_qkv, qkv}}, xb);
    p.per_token([&](std::int64_t t) {  // de-interleave: q stays packed in att, k and v in their buffers
        float* row = qkv + t * n_qkv;
        minigpt::detail::add_bias(row, L.attn_qkv_b, n_qkv);
        std::copy(row, row + q_dim, att + t * q_dim);
        std::copy(row + q_dim, row + q_dim + kv_dim, k + t * kv_dim);
        std::copy(row + q_dim + kv_dim, row + n_qkv, v + t * kv_dim);
    });
    // The query rows now live in att; attention writes its output into qkv's storage (q_dim wide rows).
    p.attend(att, k, v, qkv);
    p.project({{matrix_role::attn_output, xb}}, qkv);

    attn_residual_gelu_mlp(p);
}

inline const arch_descriptor& gpt2_arch() {
    static const arch_descriptor d{
        "gpt2", {}, norm_kind::layer, false, 1,
        [](model_config& c) { c.learned_positions = true; },
        gpt2_tensors, gpt2_layer};
    return d;
}

}  // namespace minigpt

// Llama (and Mistral, SmolLM, TinyLlama) and Qwen2: pre-RMSNorm, RoPE, grouped-query
// attention, SwiGLU.
//
// Llama rotates adjacent pairs (as GGUF stores its Q/K rows), may carry `rope_freqs.weight`
// (Llama 3.1/3.2 frequency divisors) and optional Q/K/V biases. Qwen2 is the same block with
// required Q/K/V biases and NeoX-style (half-split) RoPE, as llama.cpp's rope type per
// architecture says.
#pragma once

#include <algorithm>
#include <cstdint>

#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/arch.hpp"

namespace minigpt {

namespace detail {

inline void llama_like_tensors(const model_config& c, model_weights& w, tensor_list& v, bool qkv_bias_required) {
    v.table(w.token_embd, "token_embd.weight", c.n_vocab, c.n_embd);
    v.norm(w.output_norm, -1, "output_norm.weight", c.n_embd);
    v.output(c, w);
    v.factors(w.rope_freqs, "rope_freqs.weight", c.n_rot / 2);
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
        auto& L = w.layers[static_cast<std::size_t>(i)];
        v.norm(L.attn_norm, i, "attn_norm.weight", c.n_embd);
        v.matrix(L.attn_q, i, "attn_q.weight", matrix_role::attn_q, c.q_dim(), c.n_embd);
        v.matrix(L.attn_k, i, "attn_k.weight", matrix_role::attn_k, c.kv_dim(), c.n_embd);
        v.matrix(L.attn_v, i, "attn_v.weight", matrix_role::attn_v, c.kv_dim(), c.n_embd);
        v.bias(L.attn_q_b, i, "attn_q.bias", c.q_dim(), qkv_bias_required);
        v.bias(L.attn_k_b, i, "attn_k.bias", c.kv_dim(), qkv_bias_required);
        v.bias(L.attn_v_b, i, "attn_v.bias", c.kv_dim(), qkv_bias_required);
        v.matrix(L.attn_output, i, "attn_output.weight", matrix_role::attn_output, c.n_embd, c.q_dim());
        v.norm(L.ffn_norm, i, "ffn_norm.weight", c.n_embd);
        v.matrix(L.ffn_gate, i, "ffn_gate.weight", matrix_role::ffn_gate, c.n_ff, c.n_embd);
        v.matrix(L.ffn_up, i, "ffn_up.weight", matrix_role::ffn_up, c.n_ff, c.n_embd);
        v.matrix(L.ffn_down, i, "ffn_down.weight", matrix_role::ffn_down, c.n_embd, c.n_ff);
    }
}

}  // namespace detail

// The second half of a Llama-style block (also Qwen3's): with xb (n_tokens, n_embd) holding the
// attention output projection,
//   x += xb;   x += W2 · (silu(W1·n) * W3·n),   n = rmsnorm(x)
inline void attn_residual_swiglu_ffn(const layer_pass& p) {
    using namespace kernels;
    const auto& c = p.c;
    const auto& L = p.L;
    const std::int64_t n_embd = c.n_embd, n_ff = c.n_ff;
    float *x = p.s.x.data<float>(), *xb = p.s.xb.data<float>(), *hb = p.s.hb.data<float>(), *hb2 = p.s.hb2.data<float>();
    p.per_token([&](std::int64_t t) {
        add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd);  // the attention residual
        rmsnorm(xb + t * n_embd, x + t * n_embd, L.ffn_norm.data<float>(), n_embd, c.norm_eps);
    });
    if (p.ffn_input_out) std::copy(xb, xb + p.n_tokens * n_embd, p.ffn_input_out);
    p.project({{matrix_role::ffn_gate, hb}, {matrix_role::ffn_up, hb2}}, xb);
    p.per_token([&](std::int64_t t) { swiglu(hb + t * n_ff, hb + t * n_ff, hb2 + t * n_ff, n_ff); });
    p.project({{matrix_role::ffn_down, xb}}, hb);
    p.per_token([&](std::int64_t t) { add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd); });
}

// x += Wo · attention(rope(Wq·n + bq), rope(Wk·n + bk), Wv·n + bv), n = rmsnorm(x)
// x += W2 · (silu(W1·n) * W3·n),                                      n = rmsnorm(x)
// (biases: Qwen2; QK-norm of q and k before RoPE: Qwen3)
inline void llama_layer(const layer_pass& p) {
    using namespace kernels;
    const auto& c = p.c;
    const auto& L = p.L;
    const std::int64_t n_embd = c.n_embd;
    float *x = p.s.x.data<float>(), *xb = p.s.xb.data<float>();
    float *q = p.s.q.data<float>(), *k = p.s.k.data<float>(), *v = p.s.v.data<float>();
    float* att = p.s.att.data<float>();

    p.per_token([&](std::int64_t t) { rmsnorm(xb + t * n_embd, x + t * n_embd, L.attn_norm.data<float>(), n_embd, c.norm_eps); });
    p.qkv(xb, q, k, v);
    p.attend(q, k, v, att);
    p.project({{matrix_role::attn_output, xb}}, att);

    attn_residual_swiglu_ffn(p);
}

inline const arch_descriptor& llama_arch() {
    static const arch_descriptor d{
        "llama", {"mistral", "smollm"}, norm_kind::rms, true, 1,
        [](model_config& c) { c.rope = kernels::rope_layout::adjacent_pairs; },
        [](const model_config& c, model_weights& w, tensor_list& v) { detail::llama_like_tensors(c, w, v, false); },
        llama_layer};
    return d;
}

inline const arch_descriptor& qwen2_arch() {
    static const arch_descriptor d{
        "qwen2", {}, norm_kind::rms, true, 1,
        [](model_config& c) { c.rope = kernels::rope_layout::neox; },
        [](const model_config& c, model_weights& w, tensor_list& v) { detail::llama_like_tensors(c, w, v, true); },
        llama_layer};
    return d;
}

}  // namespace minigpt

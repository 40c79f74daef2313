// Phi-3: the Llama block with a fused Q|K|V matrix (attn_qkv), a fused gate|up matrix
// (ffn_up holds 2*n_ff rows: SiLU of the first half times the second), NeoX RoPE and
// LongRoPE: `rope_factors_long` / `rope_factors_short` divide the frequencies, the long ones
// when the context is longer than rope.scaling.original_context_length (llama.cpp's
// get_rope_factors; the choice is the context's, see context.hpp), and
// rope.scaling.attn_factor multiplies cos and sin.
#pragma once

#include <algorithm>
#include <cstdint>

#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/arch.hpp"

namespace minigpt {

inline void phi3_tensors(const model_config& c, model_weights& w, tensor_list& v) {
    v.table(w.token_embd, "token_embd.weight", c.n_vocab, c.n_embd);
    v.norm(w.output_norm, -1, "output_norm.weight", c.n_embd);
    v.output(c, w);
    v.factors(w.rope_long, "rope_factors_long.weight", c.n_rot / 2);
    v.factors(w.rope_short, "rope_factors_short.weight", c.n_rot / 2);
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
        auto& L = w.layers[static_cast<std::size_t>(i)];
        v.norm(L.attn_norm, i, "attn_norm.weight", c.n_embd);
        v.matrix(L.attn_qkv, i, "attn_qkv.weight", matrix_role::attn_qkv, c.q_dim() + 2 * c.kv_dim(), c.n_embd);
        v.matrix(L.attn_output, i, "attn_output.weight", matrix_role::attn_output, c.n_embd, c.q_dim());
        v.norm(L.ffn_norm, i, "ffn_norm.weight", c.n_embd);
        v.matrix(L.ffn_up, i, "ffn_up.weight", matrix_role::ffn_up, 2 * c.n_ff, c.n_embd);
        v.matrix(L.ffn_down, i, "ffn_down.weight", matrix_role::ffn_down, c.n_embd, c.n_ff);
    }
}

// x += Wo · attention(rope(q), rope(k), v), q|k|v = Wqkv · rmsnorm(x)
// x += W2 · (silu(g) * u),                g|u = Wup · rmsnorm(x)
inline void phi3_layer(const layer_pass& p) {
    using namespace kernels;
    const auto& c = p.c;
    const auto& L = p.L;
    const std::int64_t n_embd = c.n_embd, q_dim = c.q_dim(), kv_dim = c.kv_dim(), n_ff = c.n_ff;
    const std::int64_t n_qkv = q_dim + 2 * kv_dim;
    float *x = p.s.x.data<float>(), *xb = p.s.xb.data<float>(), *qkv = p.s.q.data<float>();  // qkv: (n_tokens, n_qkv)
    float *k = p.s.k.data<float>(), *v = p.s.v.data<float>(), *att = p.s.att.data<float>();
    float *gu = p.s.hb.data<float>(), *h = p.s.hb2.data<float>();  // gu: (n_tokens, 2*n_ff), h: (n_tokens, n_ff)

    p.per_token([&](std::int64_t t) { rmsnorm(xb + t * n_embd, x + t * n_embd, L.attn_norm.data<float>(), n_embd, c.norm_eps); });
    p.project({{matrix_role::attn_qkv, qkv}}, xb);
    p.per_token([&](std::int64_t t) {  // q goes to att, k and v to their buffers
        const float* row = qkv + t * n_qkv;
        std::copy(row, row + q_dim, att + t * q_dim);
        std::copy(row + q_dim, row + q_dim + kv_dim, k + t * kv_dim);
        std::copy(row + q_dim + kv_dim, row + n_qkv, v + t * kv_dim);
        p.rope(att + t * q_dim, c.n_head, t);
        p.rope(k + t * kv_dim, c.n_head_kv, t);
    });
    p.attend(att, k, v, qkv);  // output into qkv's storage, rows q_dim wide
    p.project({{matrix_role::attn_output, xb}}, qkv);

    p.per_token([&](std::int64_t t) {
        add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd);
        rmsnorm(xb + t * n_embd, x + t * n_embd, L.ffn_norm.data<float>(), n_embd, c.norm_eps);
    });
    if (p.ffn_input_out) std::copy(xb, xb + p.n_tokens * n_embd, p.ffn_input_out);
    p.project({{matrix_role::ffn_up, gu}}, xb);
    p.per_token([&](std::int64_t t) { swiglu(h + t * n_ff, gu + t * 2 * n_ff, gu + t * 2 * n_ff + n_ff, n_ff); });
    p.project({{matrix_role::ffn_down, xb}}, h);
    p.per_token([&](std::int64_t t) { add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd); });
}

inline const arch_descriptor& phi3_arch() {
    static const arch_descriptor d{
        "phi3", {}, norm_kind::rms, true, 2,
        [](model_config& c) { c.rope = kernels::rope_layout::neox; },
        phi3_tensors, phi3_layer};
    return d;
}

}  // namespace minigpt

// Gemma and Gemma 2: the Llama block with embeddings scaled by sqrt(n_embd), NeoX RoPE, a
// GELU-gated feed-forward (GELU through llama.cpp's fp16 table), always-tied output, and
// head_dim (attention.key_length) free of n_embd / n_head.
//
// Gemma 2 adds RMSNorms of the attention and feed-forward outputs (post_attention_norm,
// post_ffw_norm), soft-capping of the attention scores and of the final logits
// (cap * tanh(x / cap); llama.cpp's defaults 50 and 30 when the keys are absent), a sliding
// window (default 4096) on the even layers, and llama.cpp's query scale per model size:
// 1/sqrt(n_embd / n_head) for the 46-layer 27B, 1/sqrt(head_dim) otherwise. The norm weights
// are used as stored: the GGUF converter already added Gemma's +1. Gemma 3 is at the end.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "minigpt/kernels/gelu_table.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/arch.hpp"

namespace minigpt {

namespace detail {

inline void gemma_tensors(const model_config& c, model_weights& w, tensor_list& v, bool post_norms, bool qk_norms = false) {
    v.table(w.token_embd, "token_embd.weight", c.n_vocab, c.n_embd);
    v.norm(w.output_norm, -1, "output_norm.weight", c.n_embd);
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
        auto& L = w.layers[static_cast<std::size_t>(i)];
        v.norm(L.attn_norm, i, "attn_norm.weight", c.n_embd);
        v.matrix(L.attn_q, i, "attn_q.weight", matrix_role::attn_q, c.q_dim(), c.n_embd);
        v.matrix(L.attn_k, i, "attn_k.weight", matrix_role::attn_k, c.kv_dim(), c.n_embd);
        v.matrix(L.attn_v, i, "attn_v.weight", matrix_role::attn_v, c.kv_dim(), c.n_embd);
        if (qk_norms) v.norm(L.attn_q_norm, i, "attn_q_norm.weight", c.head_dim);
        if (qk_norms) v.norm(L.attn_k_norm, i, "attn_k_norm.weight", c.head_dim);
        v.matrix(L.attn_output, i, "attn_output.weight", matrix_role::attn_output, c.n_embd, c.q_dim());
        if (post_norms) v.norm(L.attn_post_norm, i, "post_attention_norm.weight", c.n_embd);
        v.norm(L.ffn_norm, i, "ffn_norm.weight", c.n_embd);
        v.matrix(L.ffn_gate, i, "ffn_gate.weight", matrix_role::ffn_gate, c.n_ff, c.n_embd);
        v.matrix(L.ffn_up, i, "ffn_up.weight", matrix_role::ffn_up, c.n_ff, c.n_embd);
        v.matrix(L.ffn_down, i, "ffn_down.weight", matrix_role::ffn_down, c.n_embd, c.n_ff);
        if (post_norms) v.norm(L.ffn_post_norm, i, "post_ffw_norm.weight", c.n_embd);
    }
}

inline void gemma_configure(model_config& c) {
    c.rope = kernels::rope_layout::neox;
    c.embd_scale = std::sqrt(static_cast<float>(c.n_embd));
    c.tied_output = true;  // llama.cpp never reads output.weight for Gemma: one in the file is left over
}

}  // namespace detail

// x += post(Wo · attention(rope(qn(Wq·n)), rope(kn(Wk·n)), Wv·n)),   n = rmsnorm(x)
// x += post(W2 · (gelu(W1·n) * W3·n)),                     n = rmsnorm(x)
// post = rmsnorm with the post-norm weights when the layer has them (Gemma 2, 3), else identity;
// qn, kn = per-head RMSNorm when the layer has attn_q_norm / attn_k_norm (Gemma 3), else identity.
inline void gemma_layer(const layer_pass& p) {
    using namespace kernels;
    const auto& c = p.c;
    const auto& L = p.L;
    const std::int64_t n_embd = c.n_embd, n_ff = c.n_ff;
    float *x = p.s.x.data<float>(), *xb = p.s.xb.data<float>();
    float *q = p.s.q.data<float>(), *k = p.s.k.data<float>(), *v = p.s.v.data<float>();
    float *att = p.s.att.data<float>(), *hb = p.s.hb.data<float>(), *hb2 = p.s.hb2.data<float>();
    auto residual = [&](const tensor& post_norm, std::int64_t t) {  // x += post(xb)
        float* o = xb + t * n_embd;
        if (!post_norm.empty()) rmsnorm(o, o, post_norm.data<float>(), n_embd, c.norm_eps);
        add(x + t * n_embd, x + t * n_embd, o, n_embd);
    };

    p.per_token([&](std::int64_t t) { rmsnorm(xb + t * n_embd, x + t * n_embd, L.attn_norm.data<float>(), n_embd, c.norm_eps); });
    p.qkv(xb, q, k, v);  // QK-norm in Gemma 3
    p.attend(q, k, v, att);
    p.project({{matrix_role::attn_output, xb}}, att);

    p.per_token([&](std::int64_t t) {
        residual(L.attn_post_norm, t);
        rmsnorm(xb + t * n_embd, x + t * n_embd, L.ffn_norm.data<float>(), n_embd, c.norm_eps);
    });
    if (p.ffn_input_out) std::copy(xb, xb + p.n_tokens * n_embd, p.ffn_input_out);
    p.project({{matrix_role::ffn_gate, hb}, {matrix_role::ffn_up, hb2}}, xb);
    p.per_token([&](std::int64_t t) {
        if (c.gelu == gelu_mode::fp16_table) gelu_fp16_table(hb + t * n_ff, n_ff);
        else gelu(hb + t * n_ff, n_ff);
        mul(hb + t * n_ff, hb + t * n_ff, hb2 + t * n_ff, n_ff);
    });
    p.project({{matrix_role::ffn_down, xb}}, hb);
    p.per_token([&](std::int64_t t) { residual(L.ffn_post_norm, t); });
}

inline const arch_descriptor& gemma_arch() {
    static const arch_descriptor d{
        "gemma", {}, norm_kind::rms, true, 1, detail::gemma_configure,
        [](const model_config& c, model_weights& w, tensor_list& v) { detail::gemma_tensors(c, w, v, false); },
        gemma_layer};
    return d;
}

inline const arch_descriptor& gemma2_arch() {
    static const arch_descriptor d{
        "gemma2", {}, norm_kind::rms, true, 1,
        [](model_config& c) {
            detail::gemma_configure(c);
            if (c.attn_softcap == 0.0f) c.attn_softcap = 50.0f;
            if (c.final_softcap == 0.0f) c.final_softcap = 30.0f;
            if (c.sliding_window == 0) c.sliding_window = 4096;
            c.swa_period = 2;
            c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.n_layer == 46 ? c.n_embd / c.n_head : c.head_dim));
        },
        [](const model_config& c, model_weights& w, tensor_list& v) { detail::gemma_tensors(c, w, v, true); },
        gemma_layer};
    return d;
}

// Gemma 3 (text), by its published definition and llama.cpp's reading of it: Gemma 2 without the
// soft-caps (unless the file declares them) and with QK-norm, a 5-local-to-1-global window pattern
// (layers with il % 6 < 5 slide), local layers rotating with base 10000 and no scaling.
inline const arch_descriptor& gemma3_arch() {
    static const arch_descriptor d{
        "gemma3", {}, norm_kind::rms, true, 1,
        [](model_config& c) {
            detail::gemma_configure(c);
            c.swa_period = 6;
            c.rope_freq_base_swa = 10000.0f;
            c.rope_freq_scale_swa = 1.0f;
            c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.n_layer == 62 ? c.n_embd / c.n_head : c.head_dim));
        },
        [](const model_config& c, model_weights& w, tensor_list& v) { detail::gemma_tensors(c, w, v, true, true); },
        gemma_layer};
    return d;
}

}  // namespace minigpt

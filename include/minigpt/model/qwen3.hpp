// Qwen3: the Qwen2 block without Q/K/V biases and with QK-norm: each query and key head is
// RMS-normalised (weights attn_q_norm / attn_k_norm, head_dim wide) before RoPE (NeoX).
#pragma once

#include <algorithm>
#include <cstdint>

#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/arch.hpp"
#include "minigpt/model/llama.hpp"  // llama_layer

namespace minigpt {

inline void qwen3_tensors(const model_config& c, model_weights& w, tensor_list& v) {
    v.table(w.token_embd, "token_embd.weight", c.n_vocab, c.n_embd);
    v.norm(w.output_norm, -1, "output_norm.weight", c.n_embd);
    v.output(c, w);
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
        auto& L = w.layers[static_cast<std::size_t>(i)];
        v.norm(L.attn_norm, i, "attn_norm.weight", c.n_embd);
        v.matrix(L.attn_q, i, "attn_q.weight", matrix_role::attn_q, c.q_dim(), c.n_embd);
        v.matrix(L.attn_k, i, "attn_k.weight", matrix_role::attn_k, c.kv_dim(), c.n_embd);
        v.matrix(L.attn_v, i, "attn_v.weight", matrix_role::attn_v, c.kv_dim(), c.n_embd);
        v.norm(L.attn_q_norm, i, "attn_q_norm.weight", c.head_dim);
        v.norm(L.attn_k_norm, i, "attn_k_norm.weight", c.head_dim);
        v.matrix(L.attn_output, i, "attn_output.weight", matrix_role::attn_output, c.n_embd, c.q_dim());
        v.norm(L.ffn_norm, i, "ffn_norm.weight", c.n_embd);
        v.matrix(L.ffn_gate, i, "ffn_gate.weight", matrix_role::ffn_gate, c.n_ff, c.n_embd);
        v.matrix(L.ffn_up, i, "ffn_up.weight", matrix_role::ffn_up, c.n_ff, c.n_embd);
        v.matrix(L.ffn_down, i, "ffn_down.weight", matrix_role::ffn_down, c.n_embd, c.n_ff);
    }
}

// The layer is llama_layer: layer_pass::qkv applies the QK-norm when the layer has its weights,
//   x += Wo · attention(rope(qnorm(Wq·n)), rope(knorm(Wk·n)), Wv·n),   n = rmsnorm(x)
//   x += W2 · (silu(W1·n) * W3·n),                                    n = rmsnorm(x)
inline const arch_descriptor& qwen3_arch() {
    static const arch_descriptor d{
        "qwen3", {}, norm_kind::rms, true, 1,
        [](model_config& c) { c.rope = kernels::rope_layout::neox; },
        qwen3_tensors, llama_layer};
    return d;
}

}  // namespace minigpt

// The Llama transformer block: pre-RMSNorm, RoPE, grouped-query attention, SwiGLU.
//
// Serves Llama 1/2/3, TinyLlama, Mistral, SmolLM (adjacent-pair RoPE as GGUF stores
// them) and Qwen2 (the same plus Q/K/V biases and NeoX RoPE). One call runs one
// layer over a batch of n_tokens at positions pos0.., appending to the KV cache.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "minigpt/kernels/attention.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/kernels/rope.hpp"
#include "minigpt/model/forward_state.hpp"
#include "minigpt/model/kv_cache.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

// L holds the layer's norms and biases, M its matrices as matmul reads them (forward_state.hpp).
// `ffn_input_out`, when non-null, receives the normed feed-forward input (n_tokens, n_embd).
inline void llama_layer(const model_config& c, const layer_weights& L, const layer_matrices& M, std::int64_t layer,
                        kv_cache& kv, forward_state& s, std::int64_t n_tokens, std::int64_t pos0, int n_threads,
                        float* ffn_input_out = nullptr) {
    using namespace kernels;
    using minigpt::detail::add_bias;
    using minigpt::detail::for_each_token;
    const std::int64_t n_embd = c.n_embd, q_dim = c.q_dim(), kv_dim = c.kv_dim();
    const float* attn_norm = L.attn_norm.data<float>();
    const float* ffn_norm = L.ffn_norm.data<float>();
    float* x = s.x.data<float>();
    float* xb = s.xb.data<float>();
    float* q = s.q.data<float>();
    float* k = s.k.data<float>();
    float* v = s.v.data<float>();
    float* hb = s.hb.data<float>();
    float* hb2 = s.hb2.data<float>();

    // Attention: x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) { rmsnorm(xb + t * n_embd, x + t * n_embd, attn_norm, n_embd, c.norm_eps); });
    matmul_shared({{M.attn_q, q}, {M.attn_k, k}, {M.attn_v, v}}, xb, n_tokens, n_threads);
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) {
        add_bias(q + t * q_dim, L.attn_q_b, 1, q_dim);
        add_bias(k + t * kv_dim, L.attn_k_b, 1, kv_dim);
        add_bias(v + t * kv_dim, L.attn_v_b, 1, kv_dim);
        rope(q + t * q_dim, c.n_head, c.head_dim, c.n_rot, pos0 + t, c.rope_freq_base, c.rope);
        rope(k + t * kv_dim, c.n_head_kv, c.head_dim, c.n_rot, pos0 + t, c.rope_freq_base, c.rope);
    });
    kv.store(layer, pos0, n_tokens, k, v);
    attention(q, kv.k(layer), kv.v(layer), kv.type(), s.att.data<float>(), n_tokens, pos0, c.n_head, c.n_head_kv,
              c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim)), n_threads);
    matmul(M.attn_output, s.att.data<float>(), xb, n_tokens, n_threads);

    // Feed-forward: x += W2 · (silu(W1·norm(x)) * W3·norm(x))
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) {
        add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd);  // the attention residual
        rmsnorm(xb + t * n_embd, x + t * n_embd, ffn_norm, n_embd, c.norm_eps);
    });
    if (ffn_input_out) std::copy(xb, xb + n_tokens * n_embd, ffn_input_out);
    matmul_shared({{M.ffn_gate, hb}, {M.ffn_up, hb2}}, xb, n_tokens, n_threads);
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) { swiglu(hb + t * c.n_ff, hb + t * c.n_ff, hb2 + t * c.n_ff, c.n_ff); });
    matmul(M.ffn_down, hb, xb, n_tokens, n_threads);
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) { add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd); });
}

}  // namespace minigpt

// The GPT-2 transformer block: pre-LayerNorm (with bias), fused QKV projection with
// bias, multi-head attention, GELU MLP with biases. Positions are learned embeddings
// added to the input (context.hpp), so there is no RoPE here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "minigpt/kernels/attention.hpp"
#include "minigpt/kernels/gelu_table.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/forward_state.hpp"
#include "minigpt/model/kv_cache.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

// L holds the layer's norms and biases, M its matrices as matmul reads them (forward_state.hpp).
inline void gpt2_layer(const model_config& c, const layer_weights& L, const layer_matrices& M, std::int64_t layer,
                       kv_cache& kv, forward_state& s, std::int64_t n_tokens, std::int64_t pos0, int n_threads,
                       float* ffn_input_out = nullptr) {
    using namespace kernels;
    using minigpt::detail::add_bias;
    using minigpt::detail::for_each_token;
    const std::int64_t n_embd = c.n_embd, q_dim = c.q_dim(), kv_dim = c.kv_dim();
    const std::int64_t n_qkv = q_dim + 2 * kv_dim, n_ff = c.n_ff;
    float* x = s.x.data<float>();
    float* xb = s.xb.data<float>();
    float* qkv = s.q.data<float>();  // (n_tokens, q_dim | kv_dim | kv_dim)
    float* k = s.k.data<float>();
    float* v = s.v.data<float>();
    float* att = s.att.data<float>();
    float* hb = s.hb.data<float>();
    auto norm = [&](const tensor& w, const tensor& b, std::int64_t t) {
        layernorm(xb + t * n_embd, x + t * n_embd, w.data<float>(), b.data<float>(), n_embd, c.norm_eps);
    };

    // Attention: x += Wo · attention(split(Wqkv · layernorm(x) + b)) + bo
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) { norm(L.attn_norm, L.attn_norm_b, t); });
    matmul(M.attn_qkv, xb, qkv, n_tokens, n_threads);
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) {  // de-interleave: q stays packed in att, k and v in their buffers
        float* row = qkv + t * n_qkv;
        add_bias(row, L.attn_qkv_b, 1, n_qkv);
        std::copy(row, row + q_dim, att + t * q_dim);
        std::copy(row + q_dim, row + q_dim + kv_dim, k + t * kv_dim);
        std::copy(row + q_dim + kv_dim, row + n_qkv, v + t * kv_dim);
    });
    kv.store(layer, pos0, n_tokens, k, v);
    // The query rows now live in att; attention writes its output into qkv's storage (q_dim wide rows).
    attention(att, kv.k(layer), kv.v(layer), kv.type(), qkv, n_tokens, pos0, c.n_head, c.n_head_kv, c.head_dim,
              1.0f / std::sqrt(static_cast<float>(c.head_dim)), n_threads);
    matmul(M.attn_output, qkv, xb, n_tokens, n_threads);

    // MLP: x += W2 · gelu(W1 · layernorm(x) + b1) + b2
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) {
        add_bias(xb + t * n_embd, L.attn_output_b, 1, n_embd);
        add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd);  // the attention residual
        norm(L.ffn_norm, L.ffn_norm_b, t);
    });
    if (ffn_input_out) std::copy(xb, xb + n_tokens * n_embd, ffn_input_out);
    matmul(M.ffn_up, xb, hb, n_tokens, n_threads);
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) {
        add_bias(hb + t * n_ff, L.ffn_up_b, 1, n_ff);
        if (c.gelu == gelu_mode::fp16_table) gelu_fp16_table(hb + t * n_ff, n_ff);
        else gelu(hb + t * n_ff, n_ff);
    });
    matmul(M.ffn_down, hb, xb, n_tokens, n_threads);
    for_each_token(n_tokens, n_threads, [&](std::int64_t t) {
        add_bias(xb + t * n_embd, L.ffn_down_b, 1, n_embd);
        add(x + t * n_embd, x + t * n_embd, xb + t * n_embd, n_embd);
    });
}

}  // namespace minigpt

// forward_state: the scratch activations of one forward pass over a batch of tokens.
//
// Allocated once per context for n_batch tokens, so decoding never allocates. Every
// buffer is row-major with one row per token of the batch. The architecture files
// (llama.hpp, gpt2.hpp) read and write these; context.hpp drives them.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "minigpt/core/memory.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

// Where a hidden state can be captured for kNN-LM or inspection.
enum class hidden_tap {
    none,
    ffn_input,   // the input to the last layer's feed-forward block, after its norm (Khandelwal et al.)
    final_norm,  // the final normed state that the output matrix turns into logits
};

// Called after each layer with the residual stream (n_tokens, n_embd) of the current batch.
using layer_callback = std::function<void(std::int64_t layer, std::span<const float> residual, std::int64_t n_tokens)>;

struct forward_state {
    std::int64_t n_batch = 0;
    tensor x;     // (n_batch, n_embd) residual stream
    tensor xb;    // (n_batch, n_embd) normed input of a block / output of a projection
    tensor q;     // (n_batch, q_dim); gpt2: (n_batch, q_dim + 2*kv_dim) fused q|k|v
    tensor k;     // (n_batch, kv_dim)
    tensor v;     // (n_batch, kv_dim)
    tensor att;   // (n_batch, q_dim) attention output before attn_output
    tensor hb;    // (n_batch, n_ff) feed-forward hidden (gate)
    tensor hb2;   // (n_batch, n_ff) feed-forward hidden (up)

    forward_state() = default;
    forward_state(const model_config& c, std::int64_t n_batch_) : n_batch(n_batch_) {
        const std::int64_t n_q = c.arch == architecture::gpt2 ? c.q_dim() + 2 * c.kv_dim() : c.q_dim();
        x = tensor::empty(dtype::f32, {n_batch, c.n_embd});
        xb = tensor::empty(dtype::f32, {n_batch, c.n_embd});
        q = tensor::empty(dtype::f32, {n_batch, n_q});
        k = tensor::empty(dtype::f32, {n_batch, c.kv_dim()});
        v = tensor::empty(dtype::f32, {n_batch, c.kv_dim()});
        att = tensor::empty(dtype::f32, {n_batch, c.q_dim()});
        hb = tensor::empty(dtype::f32, {n_batch, c.n_ff});
        hb2 = tensor::empty(dtype::f32, {n_batch, c.n_ff});
    }
};

// The weight matrices of a model prepared for kernels::matmul (Q4_0 / Q8_0 repacked for the
// integer kernels, other types as they are), by role as in layer_weights. Built once per model
// and shared by its contexts (context.hpp); absent roles stay empty. Repacking is the one
// load-time conversion (the 185 MiB of Llama 360M Q4_0 take under 0.5 s on one core; a
// 7B model several seconds), so it reports progress on a terminal.
struct layer_matrices {
    kernels::packed_matrix attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, ffn_up, ffn_down;

    // Each matrix role and the layer_weights tensor it is prepared from: the one list that both
    // sizes the packed arena and fills it (model_matrices).
    static constexpr std::pair<tensor layer_weights::*, kernels::packed_matrix layer_matrices::*> roles[] = {
        {&layer_weights::attn_q, &layer_matrices::attn_q},           {&layer_weights::attn_k, &layer_matrices::attn_k},
        {&layer_weights::attn_v, &layer_matrices::attn_v},           {&layer_weights::attn_qkv, &layer_matrices::attn_qkv},
        {&layer_weights::attn_output, &layer_matrices::attn_output}, {&layer_weights::ffn_gate, &layer_matrices::ffn_gate},
        {&layer_weights::ffn_up, &layer_matrices::ffn_up},           {&layer_weights::ffn_down, &layer_matrices::ffn_down}};
};

struct model_matrices {
    std::vector<layer_matrices> layers;
    kernels::packed_matrix output;

    model_matrices() = default;
    model_matrices(const model_weights& w, int n_threads, kernels::pack_policy policy = kernels::pack_policy::when_faster) {
        // One buffer for every packed copy, so the whole model's repacked weights sit in 2 MiB pages
        // (core/memory.hpp) even though most single matrices are smaller than a huge page.
        auto packed_bytes = [policy](const tensor& t) { return t.empty() ? 0 : kernels::packed_matrix::packed_bytes(t, policy); };
        std::size_t n_bytes = packed_bytes(w.output);
        for (const auto& L : w.layers)
            for (const auto& [weight, matrix] : layer_matrices::roles) n_bytes += packed_bytes(L.*weight);
        const std::shared_ptr<std::byte> arena = n_bytes ? heap_buffer(n_bytes, fill::none) : nullptr;
        std::size_t offset = 0;
        auto prepare = [&](const tensor& t) {
            if (t.empty()) return kernels::packed_matrix();
            const std::size_t n = packed_bytes(t);
            std::shared_ptr<std::byte> slice = n ? std::shared_ptr<std::byte>(arena, arena.get() + offset) : nullptr;
            offset += n;
            return kernels::packed_matrix(t, policy, n_threads, std::move(slice));
        };
        progress bar("preparing weights (layers)", static_cast<std::int64_t>(w.layers.size()) + 1);
        for (const auto& L : w.layers) {
            layer_matrices& M = layers.emplace_back();
            for (const auto& [weight, matrix] : layer_matrices::roles) M.*matrix = prepare(L.*weight);
            bar.update(static_cast<std::int64_t>(layers.size()));
        }
        output = prepare(w.output);
        bar.update(static_cast<std::int64_t>(layers.size()) + 1);
    }
};

namespace detail {

// Runs fn(t) for every token t of a batch. A prefill batch is spread over the threads: the per-token
// work between the matmuls (norms, biases, activations, RoPE) otherwise runs on one thread while the
// others wait, which was ~10% of GPT-2 prefill time. A few tokens (decoding) stay on the caller.
template <class Fn>
inline void for_each_token(std::int64_t n_tokens, int n_threads, Fn&& fn) {
    parallel_for(n_tokens, n_tokens >= 8 ? n_threads : 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) fn(t);
    });
}

// y[t] += b for every row t of y (n_tokens, width); no-op for an absent bias.
inline void add_bias(float* y, const tensor& b, std::int64_t n_tokens, std::int64_t width) {
    if (b.empty()) return;
    for (std::int64_t t = 0; t < n_tokens; ++t) kernels::add(y + t * width, y + t * width, b.data<float>(), width);
}

inline void add_rows(float* x, const float* y, std::int64_t n_tokens, std::int64_t width) {
    kernels::add(x, x, y, n_tokens * width);
}

}  // namespace detail

}  // namespace minigpt

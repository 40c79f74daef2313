// forward_state, model_matrices and layer_pass: what an architecture's layer function works with.
//
// forward_state holds the scratch activations of one forward pass over a batch of tokens,
// allocated once per context for n_batch tokens so decoding never allocates; every buffer is
// row-major with one row per token. model_matrices holds the weight matrices prepared for
// kernels::matmul, by role. layer_pass is the one argument of a layer function: the config,
// the layer's weights, the buffers, the KV cache, and the three operations the recipes are
// written in: project() (every weight-matrix product of the forward pass goes through it, so
// adapters can attach at one place), rope() and attend().
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/attention.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/kernels/rope.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/model/hooks.hpp"
#include "minigpt/model/kv_cache.hpp"
#include "minigpt/model/taps.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

struct forward_state {
    std::int64_t n_batch = 0;
    tensor x;     // (n_batch, n_embd) residual stream
    tensor xb;    // (n_batch, n_embd) normed input of a block / output of a projection
    tensor q;     // (n_batch, q_dim + 2*kv_dim) queries, or a fused q|k|v row
    tensor k;     // (n_batch, kv_dim)
    tensor v;     // (n_batch, kv_dim)
    tensor att;   // (n_batch, q_dim) attention output before attn_output
    tensor hb;    // (n_batch, n_ff_up) feed-forward hidden (gate, or the fused gate|up)
    tensor hb2;   // (n_batch, n_ff) feed-forward hidden (up)
    std::vector<std::int64_t> pos;  // (n_batch) position of each token of the batch

    forward_state() = default;
    // n_ff_up: rows of ffn_up (2*n_ff when gate and up are fused).
    forward_state(const model_config& c, std::int64_t n_batch_, std::int64_t n_ff_up) : n_batch(n_batch_) {
        x = tensor::empty(dtype::f32, {n_batch, c.n_embd});
        xb = tensor::empty(dtype::f32, {n_batch, c.n_embd});
        q = tensor::empty(dtype::f32, {n_batch, c.q_dim() + 2 * c.kv_dim()});
        k = tensor::empty(dtype::f32, {n_batch, c.kv_dim()});
        v = tensor::empty(dtype::f32, {n_batch, c.kv_dim()});
        att = tensor::empty(dtype::f32, {n_batch, c.q_dim()});
        hb = tensor::empty(dtype::f32, {n_batch, std::max(c.n_ff, n_ff_up)});
        hb2 = tensor::empty(dtype::f32, {n_batch, c.n_ff});
        pos.resize(static_cast<std::size_t>(n_batch));
    }
};

// The weight matrices of a model prepared for kernels::matmul (Q4_0 / Q8_0 repacked for the
// integer kernels, other types as they are), by role (weights.hpp). Built once per model and
// shared by its contexts (context.hpp); absent roles stay empty. Repacking is the one
// load-time conversion (the 185 MiB of Llama 360M Q4_0 take under 0.5 s on one core; a
// 7B model several seconds), so it reports progress on a terminal.
struct layer_matrices {
    std::array<kernels::packed_matrix, n_layer_roles> by_role;
    const kernels::packed_matrix& operator[](matrix_role r) const { return by_role[static_cast<std::size_t>(r)]; }
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
            for (std::size_t r = 0; r < n_layer_roles; ++r) n_bytes += packed_bytes(L.matrix(static_cast<matrix_role>(r)));
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
            for (std::size_t r = 0; r < n_layer_roles; ++r) M.by_role[r] = prepare(L.matrix(static_cast<matrix_role>(r)));
            bar.update(static_cast<std::int64_t>(layers.size()));
        }
        output = prepare(w.output);
        bar.update(static_cast<std::int64_t>(layers.size()) + 1);
    }

    const kernels::packed_matrix& at(std::int64_t layer, matrix_role r) const {
        return r == matrix_role::output ? output : layers[static_cast<std::size_t>(layer)][r];
    }
};

// One product of project(): y (n_tokens, rows of the role's matrix) = X · Wᵀ.
struct projection {
    matrix_role role;
    float* y;
};

// A low-rank term added to one matrix's product (LoRA, model/lora.hpp): y += scale · B (A x),
// A (r, n_in) and B (n_out, r) as matmul reads them.
struct low_rank_delta {
    const kernels::packed_matrix* a;
    const kernels::packed_matrix* b;
    float scale;
};

// The low-rank terms of one context, by (layer, role); the output matrix is layer -1. Owns the
// scratch the terms are computed in, so a context's decode still allocates nothing.
class projection_deltas {
public:
    projection_deltas() = default;
    explicit projection_deltas(std::int64_t n_layer) : by_layer_(static_cast<std::size_t>(n_layer) + 1) {}

    void add(std::int64_t layer, matrix_role role, low_rank_delta d) {
        if (layer < -1 || layer + 1 >= static_cast<std::int64_t>(by_layer_.size()))
            throw error("projection_deltas: layer " + std::to_string(layer) + " out of range");
        slot(layer, role).push_back(d);
        max_rank_ = std::max(max_rank_, d.a->n_out());
        max_out_ = std::max(max_out_, d.b->n_out());
        empty_ = false;
    }
    bool empty() const noexcept { return empty_; }
    const std::vector<low_rank_delta>& at(std::int64_t layer, matrix_role role) const {
        return const_cast<projection_deltas*>(this)->slot(layer, role);
    }

    // Sizes the scratch for batches of up to n_tokens (call before decoding).
    void reserve(std::int64_t n_tokens) {
        scratch_.resize(static_cast<std::size_t>(n_tokens * (max_rank_ + max_out_)));
        n_tokens_ = n_tokens;
    }

    // y (n_tokens, n_out) += the role's terms applied to x (n_tokens, n_in).
    void apply(std::int64_t layer, matrix_role role, const float* x, float* y, std::int64_t n_tokens, int n_threads) const {
        const auto& terms = at(layer, role);
        if (terms.empty()) return;
        if (n_tokens > n_tokens_) throw error("projection_deltas: batch larger than the reserved scratch");
        float* ax = scratch_.data();                   // (n_tokens, r)
        float* bax = scratch_.data() + n_tokens * max_rank_;  // (n_tokens, n_out)
        for (const auto& d : terms) {
            const std::int64_t n_out = d.b->n_out();
            kernels::matmul(*d.a, x, ax, n_tokens, n_threads);
            kernels::matmul(*d.b, ax, bax, n_tokens, n_threads);
            for (std::int64_t i = 0; i < n_tokens * n_out; ++i) y[i] += d.scale * bax[i];
        }
    }

private:
    using roles = std::array<std::vector<low_rank_delta>, n_layer_roles + 1>;
    std::vector<low_rank_delta>& slot(std::int64_t layer, matrix_role role) {
        return by_layer_[static_cast<std::size_t>(layer + 1)][static_cast<std::size_t>(role)];
    }
    std::vector<roles> by_layer_;            // (n_layer + 1): index 0 is the output matrix
    std::int64_t max_rank_ = 0, max_out_ = 0, n_tokens_ = 0;
    bool empty_ = true;
    mutable std::vector<float> scratch_;     // (n_tokens, max_rank + max_out)
};

// Every weight-matrix product of the forward pass: the products of one input X (n_tokens, n_in)
// with the matrices of `outs` (layer < 0 for the output matrix). Products of one input share one
// parallel region (kernels::matmul_shared). Adapters (LoRA, hooks on neurons) attach here.
inline void project(const model_matrices& mm, std::int64_t layer, std::initializer_list<projection> outs, const float* x,
                    std::int64_t n_tokens, int n_threads, const projection_deltas* deltas = nullptr) {
    const projection* o = outs.begin();
    auto w = [&](std::size_t i) -> const kernels::packed_matrix& { return mm.at(layer, o[i].role); };
    switch (outs.size()) {
        case 1: kernels::matmul(w(0), x, o[0].y, n_tokens, n_threads); break;
        case 2: kernels::matmul_shared({{w(0), o[0].y}, {w(1), o[1].y}}, x, n_tokens, n_threads); break;
        case 3: kernels::matmul_shared({{w(0), o[0].y}, {w(1), o[1].y}, {w(2), o[2].y}}, x, n_tokens, n_threads); break;
        default:
            for (const auto& p : outs) kernels::matmul(mm.at(layer, p.role), x, p.y, n_tokens, n_threads);
    }
    if (deltas && !deltas->empty())
        for (const auto& p : outs) deltas->apply(layer, p.role, x, p.y, n_tokens, n_threads);
}

namespace detail {

// o (head_dim) = sum_j w[j] v_j over the cached value rows j < n_keys (row stride kv_dim, this
// head's columns from `offset`): one attention output recomputed from weights a hook changed.
inline void attend_row_from_weights(const float* w, std::int64_t n_keys, const void* v, dtype kv_type, std::int64_t kv_dim,
                                    std::int64_t offset, std::int64_t head_dim, float* o) {
    std::vector<double> acc(static_cast<std::size_t>(head_dim), 0.0);  // (head_dim)
    for (std::int64_t j = 0; j < n_keys; ++j) {
        if (w[j] == 0.0f) continue;
        for (std::int64_t d = 0; d < head_dim; ++d) {
            const std::int64_t i = j * kv_dim + offset + d;
            const float x = kv_type == dtype::f32 ? static_cast<const float*>(v)[i] : fp16_to_fp32(static_cast<const std::uint16_t*>(v)[i]);
            acc[static_cast<std::size_t>(d)] += static_cast<double>(w[j]) * x;
        }
    }
    for (std::int64_t d = 0; d < head_dim; ++d) o[d] = static_cast<float>(acc[static_cast<std::size_t>(d)]);
}

}  // namespace detail

namespace detail {

// RMSNorm of each of n_heads head_dim-wide vectors stored back to back, in place (QK-norm).
inline void head_rmsnorm(float* x, const tensor& w, std::int64_t n_heads, std::int64_t head_dim, float eps) {
    for (std::int64_t h = 0; h < n_heads; ++h) kernels::rmsnorm(x + h * head_dim, x + h * head_dim, w.data<float>(), head_dim, eps);
}

// y += b for one row; no-op for an absent bias.
inline void add_bias(float* y, const tensor& b, std::int64_t width) {
    if (!b.empty()) kernels::add(y, y, b.data<float>(), width);
}

}  // namespace detail

struct layer_pass;

// Stores a layer's keys and values and runs its attention somewhere other than the
// one-sequence kv_cache: batch_context's paged cache of many sequences (model/batch_context.hpp).
class kv_attention {
public:
    virtual ~kv_attention() = default;
    virtual void attend(const layer_pass& p, const float* q, const float* k, const float* v, float* out) const = 0;
};

// The argument of an architecture's layer function: one layer over a batch of n_tokens
// consecutive tokens of one sequence at positions pos[0].., appending to the KV cache (or,
// with other_kv, tokens of many sequences at their own positions pos[t]).
struct layer_pass {
    const model_config& c;
    const layer_weights& L;         // norms, biases (f32) and the matrices as stored
    const model_matrices& mm;       // the matrices as matmul reads them
    std::int64_t layer;
    kv_cache& kv;
    forward_state& s;
    std::int64_t n_tokens;
    int n_threads;
    const float* rope_factors;      // (n_rot/2) frequency divisors chosen for this context, or null
    float* ffn_input_out;           // when non-null: receives the normed feed-forward input (n_tokens, n_embd)
    const projection_deltas* deltas; // the context's adapters (LoRA), or null
    const hook_set* hooks = nullptr; // the context's inspection hooks (model/hooks.hpp), or null
    const kv_attention* other_kv = nullptr;  // when set, attend() stores and attends through it instead of kv

    std::int64_t pos0() const { return s.pos[0]; }

    // y = W_role · x for every token; several roles of one input in one call. The inspection
    // hooks attach here: the input of ffn_gate / ffn_up is the normed feed-forward input, the
    // input of ffn_down is the activation (in the state's scratch, so a hook may overwrite it).
    void project(std::initializer_list<projection> outs, const float* x) const {
        if (hooks) {
            const matrix_role r = outs.begin()->role;
            if (r == matrix_role::ffn_gate || r == matrix_role::ffn_up) hooks->ffn_input(layer, x, n_tokens, c.n_embd, s.pos.data());
            else if (r == matrix_role::ffn_down) hooks->ffn_activation(layer, const_cast<float*>(x), n_tokens, c.n_ff, s.pos.data());
        }
        minigpt::project(mm, layer, outs, x, n_tokens, n_threads, deltas);
    }

    // q, k, v (n_tokens rows each) = Wq·x + bq, Wk·x + bk, Wv·x + bv (biases where the layer has
    // them); each head of q and k RMS-normed where it has QK-norm weights (Qwen 3, Gemma 3); then
    // RoPE on q and k.
    void qkv(const float* x, float* q, float* k, float* v) const {
        project({{matrix_role::attn_q, q}, {matrix_role::attn_k, k}, {matrix_role::attn_v, v}}, x);
        const std::int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
        per_token([&](std::int64_t t) {
            float *qt = q + t * q_dim, *kt = k + t * kv_dim;
            detail::add_bias(qt, L.attn_q_b, q_dim);
            detail::add_bias(kt, L.attn_k_b, kv_dim);
            detail::add_bias(v + t * kv_dim, L.attn_v_b, kv_dim);
            if (!L.attn_q_norm.empty()) detail::head_rmsnorm(qt, L.attn_q_norm, c.n_head, c.head_dim, c.norm_eps);
            if (!L.attn_k_norm.empty()) detail::head_rmsnorm(kt, L.attn_k_norm, c.n_head_kv, c.head_dim, c.norm_eps);
            rope(qt, c.n_head, t);
            rope(kt, c.n_head_kv, t);
        });
    }

    // fn(t) for every token t. A prefill batch is spread over the threads: the per-token work
    // between the matmuls (norms, biases, activations, RoPE) otherwise runs on one thread while
    // the others wait (~10% of GPT-2 prefill time). A few tokens (decoding) stay on the caller.
    template <class Fn>
    void per_token(Fn&& fn) const {
        parallel_for(n_tokens, n_tokens >= 8 ? n_threads : 1, [&](std::int64_t begin, std::int64_t end) {
            for (std::int64_t t = begin; t < end; ++t) fn(t);
        });
    }

    // RoPE of token t's n_heads heads (back to back in row) with the model's rotation.
    // Sliding-window layers may have their own base and scale (Gemma 3's local layers).
    void rope(float* row, std::int64_t n_heads, std::int64_t t) const {
        const bool local = c.rope_freq_base_swa > 0.0f && c.window(layer) > 0;
        kernels::rope(row, n_heads, c.head_dim, s.pos[static_cast<std::size_t>(t)],
                      kernels::rope_spec{c.n_rot, local ? c.rope_freq_base_swa : c.rope_freq_base, c.rope,
                                         local ? c.rope_freq_scale_swa : c.rope_freq_scale, rope_factors, c.rope_attn_factor});
    }

    // Stores k, v (n_tokens, kv_dim) in the cache, then out = attention(q) over this layer's keys
    // with the model's scale, soft-cap and this layer's window.
    void attend(const float* q, const float* k, const float* v, float* out) const {
        if (other_kv) return other_kv->attend(*this, q, k, v, out);
        kv.store(layer, pos0(), n_tokens, k, v);
        kernels::attention_params p;
        p.n_heads = c.n_head;
        p.n_kv_heads = c.n_head_kv;
        p.head_dim = c.head_dim;
        p.scale = c.query_scale();
        p.softcap = c.attn_softcap;
        p.window = c.window(layer);
        p.kv_type = kv.type();
        p.k = kv.k(layer);
        p.v = kv.v(layer);
        p.positions = s.pos.data();
        p.n_threads = n_threads;
        if (hooks && hooks->records_attention(layer)) {
            const std::int64_t n_keys = *std::max_element(s.pos.begin(), s.pos.begin() + n_tokens) + 1;
            p.weights = hooks->attention_buffer(n_tokens, c.n_head, n_keys);
            p.weights_stride = n_keys;
            kernels::attention(p, q, out, n_tokens);
            for (const std::int64_t r : hooks->attention(layer, n_tokens, c.n_head, n_keys, s.pos.data()))
                minigpt::detail::attend_row_from_weights(hooks->attention_weights() + r * n_keys, n_keys, kv.v(layer), kv.type(),
                                                         c.kv_dim(), (r % c.n_head) / (c.n_head / c.n_head_kv) * c.head_dim, c.head_dim,
                                                         out + (r / c.n_head) * c.q_dim() + (r % c.n_head) * c.head_dim);
            return;
        }
        kernels::attention(p, q, out, n_tokens);
    }

    // Row t of a (n_tokens, width) buffer.
    static float* row(const tensor& buf, std::int64_t t) { return const_cast<float*>(buf.data<float>()) + t * buf.dim(1); }
};


}  // namespace minigpt

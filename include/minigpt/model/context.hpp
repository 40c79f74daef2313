// minigpt::context's definitions (the class is declared in model/context_decl.hpp): the state the
// forward pass works in — KV cache, scratch buffers, LoRA adapters, inspection hooks — and
// decode(), which runs the architecture's layers over a chunk of tokens.
//
// Header-only programs get everything here inline. With MINIGPT_SEPARATE_COMPILATION
// (core/api.hpp) the types below are still visible to whoever includes this header, and the
// MINIGPT_API functions are compiled once, in the translation unit that includes <minigpt/src.hpp>.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/api.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/model/context_decl.hpp"
#include "minigpt/model/forward_state.hpp"
#include "minigpt/model/hooks.hpp"
#include "minigpt/model/kv_cache.hpp"
#include "minigpt/model/lora.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

namespace detail {

// The prepared matrices of a model, built by the first context that needs them and shared by every
// context of that model alive at the same time (freed with the last one). A live entry's contexts hold
// the model, so its address cannot have been reused by another model.
inline std::shared_ptr<const model_matrices> shared_matrices(const std::shared_ptr<const model>& m, int n_threads,
                                                            kernels::pack_policy policy) {
    struct entry {
        const model* key;
        kernels::pack_policy policy;
        std::weak_ptr<const model_matrices> matrices;
    };
    static std::mutex mutex;
    static std::vector<entry> cache;
    std::lock_guard<std::mutex> lock(mutex);
    std::erase_if(cache, [](const entry& e) { return e.matrices.expired(); });
    for (const auto& e : cache)
        if (auto p = e.matrices.lock(); p && e.key == m.get() && e.policy == policy) return p;
    auto p = std::make_shared<const model_matrices>(m->weights(), n_threads, policy);
    cache.push_back({m.get(), policy, p});
    return p;
}

}  // namespace detail

// Refuses a KV cache larger than the memory available now (`available_bytes`, 0: unknown): its pages
// are only committed when written, so the allocation would succeed and the process be killed later.
// The message says which n_ctx (-c) fits.
inline void check_kv_fits_memory(const model_config& c, const context_params& p, std::uint64_t available_bytes) {
    if (available_bytes == 0 || (p.kv_type != dtype::f32 && p.kv_type != dtype::f16)) return;  // kv_cache names a bad type
    const std::uint64_t per_position = checked_mul(2 * static_cast<std::uint64_t>(c.n_layer),
                                                   row_bytes(p.kv_type, static_cast<std::uint64_t>(c.kv_dim())), "KV cache size");
    const std::uint64_t need = checked_mul(per_position, static_cast<std::uint64_t>(p.n_ctx), "KV cache size");
    if (need <= available_bytes) return;
    const std::uint64_t fits = available_bytes / per_position / 256 * 256;  // a round number of positions
    constexpr double mib = 1024.0 * 1024.0;
    throw error("context: a KV cache of " + std::to_string(p.n_ctx) + " positions needs " +
                std::to_string(static_cast<long long>(need / mib)) + " MiB but only " +
                std::to_string(static_cast<long long>(available_bytes / mib)) + " MiB of memory is available; " +
                (fits > 0 ? "n_ctx (-c) " + std::to_string(fits) + " or less fits"
                          : std::string("not even 256 positions fit")) +
                (p.kv_type == dtype::f32 ? " (an f16 cache takes half)" : ""));
}

namespace detail {

// What a context's forward pass works in, behind context::state_ so that the class's declaration
// needs none of these types.
struct context_state {
    std::shared_ptr<const model_matrices> matrices;  // the model's weights as matmul reads them
    kv_cache kv;
    forward_state fwd;
    tensor final_norm;                      // (n_batch, n_embd) final normed state
    std::unique_ptr<hook_set> hooks;        // inspection hooks, or null
    adapter_set adapters;                   // LoRA adapters with their scales and low-rank terms (model/lora.hpp)
    const float* rope_factors = nullptr;    // (n_rot/2) chosen at construction, or null
};

}  // namespace detail

#if MINIGPT_API_DEFINITIONS

MINIGPT_API context::context(std::shared_ptr<const model> m, context_params p)
    : model_(std::move(m)), params_(p), state_(std::make_unique<detail::context_state>()) {
    if (!model_) throw error("context: null model");
    const auto& c = model_->config();
    n_vocab_ = c.n_vocab;
    // Default as llama.cpp's (n_ctx 4096): a file's context_length alone (up to 2^24) must not
    // reserve gigabytes of KV cache nobody asked for.
    if (params_.n_ctx <= 0) params_.n_ctx = c.n_ctx_train > 0 ? std::min(c.n_ctx_train, k_default_n_ctx) : k_default_n_ctx;
    if (c.learned_positions && params_.n_ctx > c.n_ctx_train)
        throw error("context: n_ctx " + std::to_string(params_.n_ctx) + " exceeds the " +
                    std::to_string(c.n_ctx_train) + " learned positions of this " + c.arch_name + " model");
    if (params_.n_ctx > (1 << 24)) throw error("context: n_ctx too large");
    check_kv_fits_memory(c, params_, available_memory_bytes());
    params_.n_batch = std::clamp<std::int64_t>(params_.n_batch, 1, params_.n_ctx);
    auto& s = *state_;
    s.kv = kv_cache(c.n_layer, params_.n_ctx, c.kv_dim(), params_.kv_type);
    s.matrices = detail::shared_matrices(model_, params_.n_threads,
                                         params_.repack ? kernels::pack_policy::when_faster : kernels::pack_policy::never);
    s.fwd = forward_state(c, params_.n_batch, model_->arch().ffn_up_mult * c.n_ff);
    // RoPE frequency factors as llama.cpp's get_rope_factors chooses them: rope_freqs when the
    // file has it, else LongRoPE's long factors when this context is longer than the original
    // training context, else the short ones.
    const auto& w = model_->weights();
    const tensor& factors = !w.rope_freqs.empty() ? w.rope_freqs
                            : params_.n_ctx > (c.n_ctx_orig > 0 ? c.n_ctx_orig : c.n_ctx_train) ? w.rope_long
                                                                                                    : w.rope_short;
    s.rope_factors = factors.empty() ? nullptr : factors.data<float>();
    s.final_norm = tensor::empty(dtype::f32, {params_.n_batch, c.n_embd});  // (n_batch, n_embd)
    logits_.reserve(static_cast<std::size_t>(c.n_vocab));
}

MINIGPT_API context::~context() = default;
MINIGPT_API context::context(context&&) noexcept = default;
MINIGPT_API context& context::operator=(context&&) noexcept = default;

MINIGPT_API std::unique_ptr<context> context::fork() const {
    auto c = std::make_unique<context>(model_, params_);
    c->copy_state_from(*this);
    c->logits_ = logits_;
    c->n_logits_rows_ = n_logits_rows_;
    c->layer_callback_ = layer_callback_;
    if (state_->hooks) c->set_hooks(state_->hooks->hooks());
    if (!state_->adapters.empty()) c->set_adapters(state_->adapters.bindings());
    return c;
}

MINIGPT_API void context::set_hooks(inspection_hooks h) {
    if (!h.any()) { state_->hooks.reset(); return; }
    state_->hooks = std::make_unique<hook_set>(std::move(h), model_->config().n_layer);
}
MINIGPT_API void context::clear_hooks() noexcept { state_->hooks.reset(); }
MINIGPT_API const inspection_hooks* context::hooks() const noexcept {
    return state_->hooks ? &state_->hooks->hooks() : nullptr;
}

MINIGPT_API void context::set_adapters(std::vector<lora_binding> adapters) {
    state_->adapters.set(*model_, std::move(adapters), params_.n_batch);
}
MINIGPT_API const std::vector<lora_binding>& context::adapters() const noexcept { return state_->adapters.bindings(); }

MINIGPT_API void context::decode(std::span<const std::int32_t> tokens, logits_for which) {
    const auto& c = model_->config();
    const auto n = static_cast<std::int64_t>(tokens.size());
    if (n == 0) throw error("decode: no tokens");
    if (n_past_ + n > params_.n_ctx)
        throw error("decode: context full: " + std::to_string(n_past_) + " + " + std::to_string(n) +
                    " tokens exceed n_ctx " + std::to_string(params_.n_ctx));
    for (auto id : tokens)
        if (id < 0 || id >= c.n_vocab)
            throw error("decode: token id " + std::to_string(id) + " out of range [0, " + std::to_string(c.n_vocab) + ")");
    const std::int64_t n_out = which == logits_for::all ? n : which == logits_for::last ? 1 : 0;
    logits_.resize(static_cast<std::size_t>(n_out * c.n_vocab));  // grows once, then reuses capacity
    n_logits_rows_ = n_out;
    tap_.resize(params_.tap == hidden_tap::none ? 0 : static_cast<std::size_t>(n * c.n_embd));
    for (std::int64_t done = 0; done < n; done += params_.n_batch) {
        const std::int64_t chunk = std::min(params_.n_batch, n - done);
        float* logits_out = nullptr;
        bool all_rows = false;
        if (which == logits_for::all) { logits_out = logits_.data() + done * c.n_vocab; all_rows = true; }
        else if (which == logits_for::last && done + chunk == n) logits_out = logits_.data();
        forward_chunk(tokens.subspan(static_cast<std::size_t>(done), static_cast<std::size_t>(chunk)),
                      logits_out, all_rows,
                      tap_.empty() ? nullptr : tap_.data() + done * c.n_embd);
        n_past_ += chunk;
    }
}

MINIGPT_API void context::copy_state_from(const context& other) {
    if (other.model_ != model_) throw error("copy_state_from: contexts use different models");
    if (other.n_past_ > params_.n_ctx) throw error("copy_state_from: the other context holds more positions than n_ctx");
    state_->kv.copy_from(other.state_->kv, other.n_past_);
    n_past_ = other.n_past_;
}

MINIGPT_API std::int64_t context::kv_bytes() const { return state_->kv.n_bytes(); }
MINIGPT_API const kv_cache& context::kv() const noexcept { return state_->kv; }
MINIGPT_API kv_cache& context::kv() noexcept { return state_->kv; }

MINIGPT_API void context::forward_chunk(std::span<const std::int32_t> tokens, float* logits_out, bool all_rows, float* tap_out) {
    const auto& c = model_->config();
    const auto& w = model_->weights();
    auto& s = *state_;
    const auto n = static_cast<std::int64_t>(tokens.size());
    const int nt = params_.n_threads;
    float* x = s.fwd.x.data<float>();  // (n, n_embd)

    // x[t] = token_embd[id] (* embd_scale) (+ position_embd[pos]).
    for (std::int64_t t = 0; t < n; ++t) {
        s.fwd.pos[static_cast<std::size_t>(t)] = n_past_ + t;
        float* row = x + t * c.n_embd;
        quant::dequantize_row(w.token_embd.type(), w.token_embd.row_ptr(tokens[static_cast<std::size_t>(t)]), row, c.n_embd);
        if (c.embd_scale > 0.0f) kernels::scale(row, c.embd_scale, c.n_embd);
        if (!w.position_embd.empty()) {
            float* pos = s.fwd.xb.data<float>();
            quant::dequantize_row(w.position_embd.type(), w.position_embd.row_ptr(n_past_ + t), pos, c.n_embd);
            kernels::add(row, row, pos, c.n_embd);
        }
    }

    float* ffn_tap = params_.tap == hidden_tap::ffn_input ? tap_out : nullptr;
    for (std::int64_t l = 0; l < c.n_layer; ++l) {
        const layer_pass pass{c, w.layers[static_cast<std::size_t>(l)], *s.matrices, l, s.kv, s.fwd, n, nt, s.rope_factors,
                              l == c.n_layer - 1 ? ffn_tap : nullptr, s.adapters.deltas(), s.hooks.get()};
        model_->arch().layer(pass);
        if (s.hooks) s.hooks->residual(l, x, n, c.n_embd, s.fwd.pos.data());
        if (layer_callback_) layer_callback_(l, std::span<const float>(x, static_cast<std::size_t>(n * c.n_embd)), n);
    }

    // Final norm, only for the rows someone needs, then the output projection.
    const bool need_all_final = all_rows || params_.tap == hidden_tap::final_norm;
    const std::int64_t first = need_all_final ? 0 : n - 1;
    if (!logits_out && params_.tap != hidden_tap::final_norm) return;
    float* fin = s.final_norm.data<float>();
    for (std::int64_t t = first; t < n; ++t) {
        if (c.norm == norm_kind::layer)
            kernels::layernorm(fin + t * c.n_embd, x + t * c.n_embd, w.output_norm.data<float>(),
                               w.output_norm_b.empty() ? nullptr : w.output_norm_b.data<float>(), c.n_embd, c.norm_eps);
        else
            kernels::rmsnorm(fin + t * c.n_embd, x + t * c.n_embd, w.output_norm.data<float>(), c.n_embd, c.norm_eps);
    }
    if (params_.tap == hidden_tap::final_norm) std::copy(fin, fin + n * c.n_embd, tap_out);
    if (!logits_out) return;
    const std::int64_t rows = all_rows ? n : 1;
    project(*s.matrices, -1, {{matrix_role::output, logits_out}}, all_rows ? fin : fin + (n - 1) * c.n_embd, rows, nt,
            s.adapters.deltas());
    if (c.final_softcap > 0.0f) kernels::softcap(logits_out, c.final_softcap, rows * c.n_vocab);
}

#endif  // MINIGPT_API_DEFINITIONS

}  // namespace minigpt

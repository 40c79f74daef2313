// minigpt::context: one conversation's state over a shared model — the KV cache,
// scratch buffers, the logits of the last call and optional hidden-state taps.
//
// decode() feeds tokens at the next positions: many tokens at once (prefill, run as
// matrix-matrix products in chunks of n_batch) or one (generation, matrix-vector).
// Buffers are sized at construction, so decoding one token at a time allocates
// nothing. A context is not thread-safe; use one per thread (they can share a model).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/kernels/ops.hpp"
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

// The context size when none is given and the model was trained on more (llama.cpp's default n_ctx).
inline constexpr std::int64_t k_default_n_ctx = 4096;

struct context_params {
    std::int64_t n_ctx = 0;            // positions the KV cache holds; 0: the training context, at most k_default_n_ctx
    std::int64_t n_batch = 512;        // tokens per forward chunk during prefill
    dtype kv_type = dtype::f32;        // f32 or f16
    int n_threads = 0;                 // 0: physical cores
    hidden_tap tap = hidden_tap::none; // hidden state captured for every token fed
    // Q4_0 / Q8_0 matrices repacked 16 rows at a time for the AVX-512 VNNI kernels (a copy of those
    // weights, made once per model; faster decode and ~3x faster prefill). false: every weight is
    // used in place from the file (llama.cpp's --no-repack).
    bool repack = true;
};

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

// Which positions of a decode() call get logits.
enum class logits_for { last, all, none };

class context {
public:
    explicit context(std::shared_ptr<const model> m, context_params p = {}) : model_(std::move(m)), params_(p) {
        if (!model_) throw error("context: null model");
        const auto& c = model_->config();
        // Default as llama.cpp's (n_ctx 4096): a file's context_length alone (up to 2^24) must not
        // reserve gigabytes of KV cache nobody asked for.
        if (params_.n_ctx <= 0) params_.n_ctx = c.n_ctx_train > 0 ? std::min(c.n_ctx_train, k_default_n_ctx) : k_default_n_ctx;
        if (c.learned_positions && params_.n_ctx > c.n_ctx_train)
            throw error("context: n_ctx " + std::to_string(params_.n_ctx) + " exceeds the " +
                        std::to_string(c.n_ctx_train) + " learned positions of this " + c.arch_name + " model");
        if (params_.n_ctx > (1 << 24)) throw error("context: n_ctx too large");
        check_kv_fits_memory(c, params_, available_memory_bytes());
        params_.n_batch = std::clamp<std::int64_t>(params_.n_batch, 1, params_.n_ctx);
        kv_ = kv_cache(c.n_layer, params_.n_ctx, c.kv_dim(), params_.kv_type);
        matrices_ = detail::shared_matrices(model_, params_.n_threads,
                                            params_.repack ? kernels::pack_policy::when_faster : kernels::pack_policy::never);
        state_ = forward_state(c, params_.n_batch, model_->arch().ffn_up_mult * c.n_ff);
        // RoPE frequency factors as llama.cpp's get_rope_factors chooses them: rope_freqs when the
        // file has it, else LongRoPE's long factors when this context is longer than the original
        // training context, else the short ones.
        const auto& w = model_->weights();
        const tensor& factors = !w.rope_freqs.empty() ? w.rope_freqs
                                : params_.n_ctx > (c.n_ctx_orig > 0 ? c.n_ctx_orig : c.n_ctx_train) ? w.rope_long
                                                                                                        : w.rope_short;
        rope_factors_ = factors.empty() ? nullptr : factors.data<float>();
        final_ = tensor::empty(dtype::f32, {params_.n_batch, c.n_embd});  // (n_batch, n_embd) final normed state
        logits_.reserve(static_cast<std::size_t>(c.n_vocab));
    }

    // Contexts own large buffers: copy one explicitly with fork().
    context(const context&) = delete;
    context& operator=(const context&) = delete;
    context(context&&) noexcept = default;
    context& operator=(context&&) noexcept = default;

    // A new context on the same model with a copy of this one's KV cache, position and last logits.
    std::unique_ptr<context> fork() const {
        auto c = std::make_unique<context>(model_, params_);
        c->copy_state_from(*this);
        c->logits_ = logits_;
        c->n_logits_rows_ = n_logits_rows_;
        c->layer_callback_ = layer_callback_;
        if (hooks_) c->set_hooks(hooks_->hooks());
        if (!adapters_.empty()) c->set_adapters(adapters_.bindings());
        return c;
    }

    const model& get_model() const noexcept { return *model_; }
    std::shared_ptr<const model> model_ptr() const noexcept { return model_; }
    const context_params& params() const noexcept { return params_; }
    std::int64_t n_ctx() const noexcept { return params_.n_ctx; }
    std::int64_t n_past() const noexcept { return n_past_; }
    std::int64_t n_vocab() const noexcept { return model_->config().n_vocab; }
    void set_threads(int n_threads) noexcept { params_.n_threads = n_threads; }
    void set_tap(hidden_tap tap) noexcept { params_.tap = tap; }
    void set_layer_callback(layer_callback cb) { layer_callback_ = std::move(cb); }
    bool has_layer_callback() const noexcept { return static_cast<bool>(layer_callback_); }

    // Runs these inspection hooks (model/hooks.hpp: feed-forward activations, attention weights,
    // residual stream; read, and patch where writable) in every following decode(). Throws for a
    // layer out of range. Hooks with no callback set remove them, as clear_hooks() does.
    void set_hooks(inspection_hooks h) {
        if (!h.any()) { hooks_.reset(); return; }
        hooks_ = std::make_unique<hook_set>(std::move(h), model_->config().n_layer);
    }
    void clear_hooks() noexcept { hooks_.reset(); }
    const inspection_hooks* hooks() const noexcept { return hooks_ ? &hooks_->hooks() : nullptr; }

    // Runs this context's next decodes with these LoRA adapters added to the base model's matrices
    // (model/lora.hpp); an empty list returns to the base. The base is shared, never copied, so other
    // contexts of the model keep their own adapters. The KV cache already filled is kept as it is.
    void set_adapters(std::vector<lora_binding> adapters) {
        adapters_.set(*model_, std::move(adapters), params_.n_batch);
    }
    const std::vector<lora_binding>& adapters() const noexcept { return adapters_.bindings(); }

    // Runs the model over `tokens` at positions n_past().., adding them to the KV cache.
    void decode(std::span<const std::int32_t> tokens, logits_for which = logits_for::last) {
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

    // Logits of the last decode(): (rows, n_vocab) flattened; one row for logits_for::last.
    std::span<const float> logits() const noexcept { return logits_; }
    std::span<const float> logits(std::int64_t row) const {
        if (row < 0 || row >= n_logits_rows_) throw error("logits: row " + std::to_string(row) + " not computed");
        return std::span<const float>(logits_).subspan(static_cast<std::size_t>(row * n_vocab()), static_cast<std::size_t>(n_vocab()));
    }
    std::int64_t n_logits_rows() const noexcept { return n_logits_rows_; }

    // Hidden states captured at params().tap for every token of the last decode(): (n_tokens, n_embd).
    std::span<const float> tap_output() const noexcept { return tap_; }

    // Forgets positions >= n_past (e.g. to rewind a shared prefix).
    void truncate(std::int64_t n_past) {
        if (n_past < 0 || n_past > n_past_) throw error("truncate: position out of range");
        n_past_ = n_past;
    }

    // Copies another context's KV cache and position (same model and cache type; the prefix is not recomputed).
    void copy_state_from(const context& other) {
        if (other.model_ != model_) throw error("copy_state_from: contexts use different models");
        if (other.n_past_ > params_.n_ctx) throw error("copy_state_from: the other context holds more positions than n_ctx");
        kv_.copy_from(other.kv_, other.n_past_);
        n_past_ = other.n_past_;
    }

    std::int64_t kv_bytes() const { return kv_.n_bytes(); }

    // The KV cache itself and a position count set after writing rows into it, for saving and
    // restoring a prompt's state (generate/prompt_cache.hpp). A restore leaves no logits: decode at
    // least one token before sampling.
    const kv_cache& kv() const noexcept { return kv_; }
    kv_cache& kv() noexcept { return kv_; }
    void set_restored_positions(std::int64_t n_past) {
        if (n_past < 0 || n_past > params_.n_ctx) throw error("set_restored_positions: position out of range");
        n_past_ = n_past;
        n_logits_rows_ = 0;
    }

private:
    void forward_chunk(std::span<const std::int32_t> tokens, float* logits_out, bool all_rows, float* tap_out) {
        const auto& c = model_->config();
        const auto& w = model_->weights();
        const auto n = static_cast<std::int64_t>(tokens.size());
        const int nt = params_.n_threads;
        float* x = state_.x.data<float>();  // (n, n_embd)

        // x[t] = token_embd[id] (* embd_scale) (+ position_embd[pos]).
        for (std::int64_t t = 0; t < n; ++t) {
            state_.pos[static_cast<std::size_t>(t)] = n_past_ + t;
            float* row = x + t * c.n_embd;
            quant::dequantize_row(w.token_embd.type(), w.token_embd.row_ptr(tokens[static_cast<std::size_t>(t)]), row, c.n_embd);
            if (c.embd_scale > 0.0f) kernels::scale(row, c.embd_scale, c.n_embd);
            if (!w.position_embd.empty()) {
                float* pos = state_.xb.data<float>();
                quant::dequantize_row(w.position_embd.type(), w.position_embd.row_ptr(n_past_ + t), pos, c.n_embd);
                kernels::add(row, row, pos, c.n_embd);
            }
        }

        float* ffn_tap = params_.tap == hidden_tap::ffn_input ? tap_out : nullptr;
        for (std::int64_t l = 0; l < c.n_layer; ++l) {
            const layer_pass pass{c, w.layers[static_cast<std::size_t>(l)], *matrices_, l, kv_, state_, n, nt, rope_factors_,
                                  l == c.n_layer - 1 ? ffn_tap : nullptr, adapters_.deltas(), hooks_.get()};
            model_->arch().layer(pass);
            if (hooks_) hooks_->residual(l, x, n, c.n_embd, state_.pos.data());
            if (layer_callback_) layer_callback_(l, std::span<const float>(x, static_cast<std::size_t>(n * c.n_embd)), n);
        }

        // Final norm, only for the rows someone needs, then the output projection.
        const bool need_all_final = all_rows || params_.tap == hidden_tap::final_norm;
        const std::int64_t first = need_all_final ? 0 : n - 1;
        if (!logits_out && params_.tap != hidden_tap::final_norm) return;
        float* fin = final_.data<float>();
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
        project(*matrices_, -1, {{matrix_role::output, logits_out}}, all_rows ? fin : fin + (n - 1) * c.n_embd, rows, nt,
                adapters_.deltas());
        if (c.final_softcap > 0.0f) kernels::softcap(logits_out, c.final_softcap, rows * c.n_vocab);
    }

    std::shared_ptr<const model> model_;
    std::shared_ptr<const model_matrices> matrices_;  // the model's weights as matmul reads them
    context_params params_;
    kv_cache kv_;
    forward_state state_;
    tensor final_;                 // (n_batch, n_embd)
    std::vector<float> logits_;    // (n_logits_rows, n_vocab)
    std::int64_t n_logits_rows_ = 0;
    std::vector<float> tap_;       // (n_tokens of last decode, n_embd)
    std::int64_t n_past_ = 0;
    layer_callback layer_callback_;
    std::unique_ptr<hook_set> hooks_;      // inspection hooks, or null
    adapter_set adapters_;                 // LoRA adapters with their scales and low-rank terms (model/lora.hpp)
    const float* rope_factors_ = nullptr;  // (n_rot/2) chosen at construction, or null
};

}  // namespace minigpt

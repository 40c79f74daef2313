// minigpt::context as a program sees it: one conversation's state over a shared model — the KV
// cache, scratch buffers, the logits of the last call and optional hidden-state taps.
//
// decode() feeds tokens at the next positions: many tokens at once (prefill, run as
// matrix-matrix products in chunks of n_batch) or one (generation, matrix-vector).
// Buffers are sized at construction, so decoding one token at a time allocates
// nothing. A context is not thread-safe; use one per thread (they can share a model).
//
// This header declares the class and needs no kernels: the buffers the forward pass works in live
// behind `state_`, defined with the functions that use them in model/context.hpp (included by every
// header-only program, compiled once by a program that uses MINIGPT_SEPARATE_COMPILATION; core/api.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/api.hpp"
#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/model/taps.hpp"

namespace minigpt {

class model;
class kv_cache;
struct inspection_hooks;
struct lora_binding;
namespace detail {
struct context_state;
}

// The context size when none is given and the model was trained on more (llama.cpp's default n_ctx).
inline constexpr std::int64_t k_default_n_ctx = 4096;

struct context_params {
    std::int64_t n_ctx = 0;            // positions the KV cache holds; 0: the training context, at most k_default_n_ctx
    std::int64_t n_batch = 512;        // tokens per forward chunk during prefill
    dtype kv_type = dtype::f32;        // f32 or f16
    int n_threads = 0;                 // 0: physical cores
    hidden_tap tap = hidden_tap::none; // hidden state captured for every token fed
    // Q4_0 / Q8_0 matrices repacked 16 rows at a time for the AVX2 / AVX-512 VNNI kernels (a copy of those
    // weights, made once per model; faster decode and ~3x faster prefill). false: every weight is
    // used in place from the file (llama.cpp's --no-repack).
    bool repack = true;
};

// Which positions of a decode() call get logits.
enum class logits_for { last, all, none };

class context {
public:
    MINIGPT_API explicit context(std::shared_ptr<const model> m, context_params p = {});
    MINIGPT_API ~context();

    // Contexts own large buffers: copy one explicitly with fork().
    context(const context&) = delete;
    context& operator=(const context&) = delete;
    MINIGPT_API context(context&&) noexcept;
    MINIGPT_API context& operator=(context&&) noexcept;

    // A new context on the same model with a copy of this one's KV cache, position and last logits.
    MINIGPT_API std::unique_ptr<context> fork() const;

    const model& get_model() const noexcept { return *model_; }
    std::shared_ptr<const model> model_ptr() const noexcept { return model_; }
    const context_params& params() const noexcept { return params_; }
    std::int64_t n_ctx() const noexcept { return params_.n_ctx; }
    std::int64_t n_past() const noexcept { return n_past_; }
    std::int64_t n_vocab() const noexcept { return n_vocab_; }
    void set_threads(int n_threads) noexcept { params_.n_threads = n_threads; }
    void set_tap(hidden_tap tap) noexcept { params_.tap = tap; }
    void set_layer_callback(layer_callback cb) { layer_callback_ = std::move(cb); }
    bool has_layer_callback() const noexcept { return static_cast<bool>(layer_callback_); }

    // Runs these inspection hooks (model/hooks.hpp: feed-forward activations, attention weights,
    // residual stream; read, and patch where writable) in every following decode(). Throws for a
    // layer out of range. Hooks with no callback set remove them, as clear_hooks() does.
    MINIGPT_API void set_hooks(inspection_hooks h);
    MINIGPT_API void clear_hooks() noexcept;
    MINIGPT_API const inspection_hooks* hooks() const noexcept;

    // Runs this context's next decodes with these LoRA adapters added to the base model's matrices
    // (model/lora.hpp); an empty list returns to the base. The base is shared, never copied, so other
    // contexts of the model keep their own adapters. The KV cache already filled is kept as it is.
    MINIGPT_API void set_adapters(std::vector<lora_binding> adapters);
    MINIGPT_API const std::vector<lora_binding>& adapters() const noexcept;

    // Runs the model over `tokens` at positions n_past().., adding them to the KV cache.
    MINIGPT_API void decode(std::span<const std::int32_t> tokens, logits_for which = logits_for::last);

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
    MINIGPT_API void copy_state_from(const context& other);

    MINIGPT_API std::int64_t kv_bytes() const;

    // The KV cache itself and a position count set after writing rows into it, for saving and
    // restoring a prompt's state (generate/prompt_cache.hpp). A restore leaves no logits: decode at
    // least one token before sampling.
    MINIGPT_API const kv_cache& kv() const noexcept;
    MINIGPT_API kv_cache& kv() noexcept;
    void set_restored_positions(std::int64_t n_past) {
        if (n_past < 0 || n_past > params_.n_ctx) throw error("set_restored_positions: position out of range");
        n_past_ = n_past;
        n_logits_rows_ = 0;
    }

private:
    MINIGPT_API void forward_chunk(std::span<const std::int32_t> tokens, float* logits_out, bool all_rows, float* tap_out);

    std::shared_ptr<const model> model_;
    context_params params_;
    std::int64_t n_vocab_ = 0;
    std::vector<float> logits_;    // (n_logits_rows, n_vocab)
    std::int64_t n_logits_rows_ = 0;
    std::vector<float> tap_;       // (n_tokens of last decode, n_embd)
    std::int64_t n_past_ = 0;
    layer_callback layer_callback_;
    std::unique_ptr<detail::context_state> state_;  // KV cache, forward buffers, adapters, hooks (model/context.hpp)
};

}  // namespace minigpt

// A header-only program gets the definitions with the declarations.
#if !defined(MINIGPT_SEPARATE_COMPILATION)
#include "minigpt/model/context.hpp"
#endif

// model_config: the hyper-parameters of a model, read from GGUF metadata (by the
// architecture's descriptor, model/arch.hpp) or a llama2.c header, validated before anything
// is allocated.
//
// The fields are the union of what the supported architectures need (llama.cpp's hparams in
// spirit): sizes, norm kind, RoPE and its scaling, attention scale, soft-caps, sliding windows.
// Keys follow llama.cpp's names: `{arch}.embedding_length`, etc. Which recipe runs is
// `arch_name`, looked up in the registry (model/architectures.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "minigpt/core/error.hpp"
#include "minigpt/kernels/rope.hpp"

namespace minigpt {

// Coarse family kept for code written before the registry: gpt2 (learned positions, LayerNorm)
// or llama (everything else). New code reads arch_name.
enum class architecture { llama, gpt2 };

// How GELU is evaluated: llama.cpp's fp16 lookup table (the default, so logits match
// llama.cpp on the same file to ~1e-4 instead of ~1e-3) or the exact tanh formula.
enum class gelu_mode { fp16_table, exact };

enum class norm_kind { rms, layer };

struct model_config {
    std::string arch_name = "llama";   // general.architecture as written in the file ("llama", "qwen2", "gpt2", ...)
    architecture arch = architecture::llama;
    std::string name;                  // general.name, if any
    std::int64_t n_vocab = 0;
    std::int64_t n_ctx_train = 0;      // context length the model was trained with
    std::int64_t n_embd = 0;
    std::int64_t n_layer = 0;
    std::int64_t n_head = 0;
    std::int64_t n_head_kv = 0;
    std::int64_t head_dim = 0;         // per head (key_length); n_embd / n_head unless the file says otherwise
    std::int64_t n_ff = 0;             // feed-forward hidden width
    std::int64_t n_rot = 0;            // rotated dimensions per head (0: no RoPE)
    norm_kind norm = norm_kind::rms;
    float norm_eps = 1e-5f;            // RMSNorm / LayerNorm epsilon
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;      // 1 / rope.scaling.factor (linear scaling)
    float rope_freq_base_swa = 0.0f;   // base and scale of sliding-window layers (Gemma 3: 10000, 1); 0: as above
    float rope_freq_scale_swa = 1.0f;
    float rope_attn_factor = 1.0f;     // rope.scaling.attn_factor: multiplies cos and sin (LongRoPE)
    std::int64_t n_ctx_orig = 0;       // rope.scaling.original_context_length: long vs short LongRoPE factors
    kernels::rope_layout rope = kernels::rope_layout::adjacent_pairs;
    float attn_scale = 0.0f;           // query scale; 0: 1/sqrt(head_dim)
    float attn_softcap = 0.0f;         // attn_logit_softcapping (Gemma 2), 0: none
    float final_softcap = 0.0f;        // final_logit_softcapping (Gemma 2), 0: none
    std::int64_t sliding_window = 0;   // attention.sliding_window, 0: none
    int swa_period = 0;                // window on layers with il % swa_period < swa_period - 1 (llama.cpp's
                                       // swa pattern; Gemma 2: 2, even layers); 0: on every layer
    float embd_scale = 0.0f;           // token embeddings multiplied by this (Gemma: sqrt(n_embd)); 0: none
    bool learned_positions = false;    // position_embd is added to the input (GPT-2): n_ctx <= n_ctx_train
    bool tied_output = false;          // logits use token_embd when there is no output.weight
    gelu_mode gelu = gelu_mode::fp16_table;

    std::int64_t q_dim() const { return n_head * head_dim; }      // width of all query heads
    std::int64_t kv_dim() const { return n_head_kv * head_dim; }  // width of all key (or value) heads
    float query_scale() const { return attn_scale > 0.0f ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim)); }
    // The sliding window of layer il (0: the layer sees the whole context).
    std::int64_t window(std::int64_t il) const {
        if (sliding_window <= 0) return 0;
        return swa_period == 0 || il % swa_period < swa_period - 1 ? sliding_window : 0;
    }

    // Throws minigpt::error naming the first field that is missing or absurd.
    void validate() const {
        auto need = [this](bool ok, const std::string& what) {
            if (!ok) throw error("invalid model config (" + arch_name + "): " + what);
        };
        // Generous bounds: large enough for any real model, small enough that a hostile file cannot
        // make us allocate or multiply our way into overflow.
        need(n_vocab > 0 && n_vocab <= (1 << 24), "n_vocab " + std::to_string(n_vocab));
        need(n_embd > 0 && n_embd <= (1 << 17), "n_embd " + std::to_string(n_embd));
        need(n_layer > 0 && n_layer <= 4096, "n_layer " + std::to_string(n_layer));
        need(n_head > 0 && n_head <= 4096, "n_head " + std::to_string(n_head));
        need(n_head_kv > 0 && n_head_kv <= n_head && n_head % n_head_kv == 0,
             "n_head_kv " + std::to_string(n_head_kv) + " must divide n_head " + std::to_string(n_head));
        need(head_dim > 0 && head_dim <= 4096, "head_dim " + std::to_string(head_dim));
        need(n_ff > 0 && n_ff <= (1 << 20), "n_ff " + std::to_string(n_ff));
        need(n_ctx_train >= 0 && n_ctx_train <= (1 << 24), "context_length " + std::to_string(n_ctx_train));
        need(norm_eps >= 0.0f && norm_eps < 1.0f, "norm epsilon");
        need(n_rot >= 0 && n_rot <= head_dim && n_rot % 2 == 0, "rope.dimension_count " + std::to_string(n_rot));
        need(rope_freq_base > 0.0f && std::isfinite(rope_freq_base), "rope.freq_base");
        need(rope_freq_scale > 0.0f && std::isfinite(rope_freq_scale), "rope.scaling.factor");
        need(std::isfinite(rope_attn_factor) && rope_attn_factor > 0.0f, "rope.scaling.attn_factor");
        need(n_ctx_orig >= 0, "rope.scaling.original_context_length");
        need(attn_scale >= 0.0f && std::isfinite(attn_scale), "attention scale");
        need(attn_softcap >= 0.0f && std::isfinite(attn_softcap), "attn_logit_softcapping");
        need(final_softcap >= 0.0f && std::isfinite(final_softcap), "final_logit_softcapping");
        need(sliding_window >= 0 && sliding_window <= (1 << 24), "attention.sliding_window");
        need(swa_period >= 0, "sliding window period");
        need(embd_scale >= 0.0f && std::isfinite(embd_scale), "embedding scale");
        if (learned_positions) need(n_ctx_train > 0, "learned positions need context_length > 0");
    }

    std::string summary() const {
        return arch_name + ": n_vocab=" + std::to_string(n_vocab) + " n_ctx_train=" + std::to_string(n_ctx_train) +
               " n_embd=" + std::to_string(n_embd) + " n_layer=" + std::to_string(n_layer) +
               " n_head=" + std::to_string(n_head) + " n_head_kv=" + std::to_string(n_head_kv) +
               " head_dim=" + std::to_string(head_dim) + " n_ff=" + std::to_string(n_ff) +
               (n_rot > 0 ? " n_rot=" + std::to_string(n_rot) : std::string()) +
               (sliding_window > 0 ? " window=" + std::to_string(sliding_window) : std::string()) +
               (tied_output ? " tied-output" : "");
    }
};

}  // namespace minigpt

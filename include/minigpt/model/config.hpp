// model_config: the hyper-parameters of a GPT model, read from GGUF metadata or a
// llama2.c header, and validated before anything is allocated.
//
// Two forward recipes exist: `llama` (RMSNorm, RoPE, grouped-query attention,
// SwiGLU; also Mistral, TinyLlama, SmolLM, and Qwen2 = llama + QKV biases + NeoX
// RoPE) and `gpt2` (LayerNorm with bias, learned positions, fused QKV with bias,
// GELU MLP). Keys follow llama.cpp's names: `{arch}.embedding_length`, etc.
#pragma once

#include <cstdint>
#include <string>

#include "minigpt/core/error.hpp"
#include "minigpt/kernels/rope.hpp"

namespace minigpt {

enum class architecture { llama, gpt2 };

// How GPT-2's GELU is evaluated: llama.cpp's fp16 lookup table (the default, so logits match
// llama.cpp on the same file to ~1e-4 instead of ~1e-3) or the exact tanh formula.
enum class gelu_mode { fp16_table, exact };

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
    std::int64_t head_dim = 0;         // per head; n_embd / n_head unless the file says otherwise
    std::int64_t n_ff = 0;             // feed-forward hidden width
    std::int64_t n_rot = 0;            // rotated dimensions per head (llama only)
    float norm_eps = 1e-5f;            // RMSNorm / LayerNorm epsilon
    float rope_freq_base = 10000.0f;
    kernels::rope_layout rope = kernels::rope_layout::adjacent_pairs;
    bool tied_output = false;          // logits use token_embd when there is no output.weight
    gelu_mode gelu = gelu_mode::fp16_table;

    std::int64_t q_dim() const { return n_head * head_dim; }      // width of all query heads
    std::int64_t kv_dim() const { return n_head_kv * head_dim; }  // width of all key (or value) heads

    // Throws minigpt::error naming the first field that is missing or absurd.
    void validate() const {
        auto need = [](bool ok, const std::string& what) {
            if (!ok) throw error("invalid model config: " + what);
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
        if (arch == architecture::llama) {
            need(n_rot > 0 && n_rot <= head_dim && n_rot % 2 == 0, "rope.dimension_count " + std::to_string(n_rot));
            need(rope_freq_base > 0.0f, "rope.freq_base");
        } else {
            need(n_head * head_dim == n_embd, "gpt2 needs n_head * head_dim == n_embd");
        }
    }

    std::string summary() const {
        return arch_name + ": n_vocab=" + std::to_string(n_vocab) + " n_ctx_train=" + std::to_string(n_ctx_train) +
               " n_embd=" + std::to_string(n_embd) + " n_layer=" + std::to_string(n_layer) +
               " n_head=" + std::to_string(n_head) + " n_head_kv=" + std::to_string(n_head_kv) +
               " head_dim=" + std::to_string(head_dim) + " n_ff=" + std::to_string(n_ff) +
               (arch == architecture::llama ? " n_rot=" + std::to_string(n_rot) : std::string()) +
               (tied_output ? " tied-output" : "");
    }
};

}  // namespace minigpt

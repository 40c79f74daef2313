// Random-weight models with the standard GGUF keys and tensor names, for tests and
// benchmarks: `minigpt synth --arch gpt2|llama --preset NAME --type TYPE -o out.gguf`.
//
// Presets copy the shapes of real models (gpt2-124m: GPT-2 small; llama-360m: a
// SmolLM-360M-like Llama with GQA and tied embeddings) so speed measured on them is
// the speed on the real thing. Weights are drawn from a seeded uniform distribution
// with GPT-2's initialisation scale (std 0.02), norms near 1; every 2-D weight is
// stored in the requested type, 1-D tensors (norms, biases) in F32 as llama.cpp does.
// Tokenizer metadata is added by the caller (text/ sits above this layer).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

struct synth_preset {
    std::string name;
    architecture arch;
    std::int64_t n_vocab, n_ctx, n_embd, n_layer, n_head, n_head_kv, n_ff;
    bool tied_output;
};

inline const std::vector<synth_preset>& synth_presets() {
    static const std::vector<synth_preset> presets = {
        {"tiny", architecture::llama, 512, 256, 64, 2, 4, 2, 192, false},
        {"tiny", architecture::gpt2, 512, 256, 64, 2, 4, 4, 256, false},
        {"small", architecture::llama, 32000, 1024, 256, 4, 8, 4, 768, true},
        {"gpt2-124m", architecture::gpt2, 50257, 1024, 768, 12, 12, 12, 3072, true},
        {"llama-360m", architecture::llama, 32000, 2048, 960, 32, 15, 5, 2560, true},
    };
    return presets;
}

inline synth_preset find_synth_preset(architecture arch, const std::string& name) {
    std::string names;
    for (const auto& p : synth_presets()) {
        if (p.arch == arch && p.name == name) return p;
        if (p.arch == arch) names += (names.empty() ? "" : ", ") + p.name;
    }
    throw error("unknown preset '" + name + "' for this architecture (available: " + names + ")");
}

// llama.cpp's general.file_type for a model that is "mostly" of one type.
inline std::uint32_t llama_file_type(dtype t) {
    switch (t) {
        case dtype::f32: return 0;
        case dtype::f16: return 1;
        case dtype::q4_0: return 2;
        case dtype::q8_0: return 7;
        case dtype::q4_k: return 15;  // Q4_K_M
        case dtype::q6_k: return 18;
        case dtype::bf16: return 32;
        case dtype::q4_1: return 3;
        case dtype::q5_0: return 8;
        case dtype::q5_1: return 9;
        case dtype::q2_k: return 10;
        case dtype::q3_k: return 12;  // Q3_K_M
        case dtype::q5_k: return 17;  // Q5_K_M
        case dtype::iq4_nl: return 25;
        case dtype::iq4_xs: return 30;
    }
    return 0;
}

namespace detail {

// splitmix64: tiny, seedable, identical everywhere.
struct splitmix64 {
    std::uint64_t s;
    std::uint64_t next() {
        std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
};

// A (rows, cols) tensor of `type` with values center + U(-amp, amp); rows drawn in parallel,
// each from its own stream so the result does not depend on the thread count.
inline tensor random_tensor(dtype type, std::int64_t rows, std::int64_t cols, float center, float amp, std::uint64_t seed,
                            int n_threads) {
    tensor t = rows == 1 ? tensor::empty(type, {cols}) : tensor::empty(type, {rows, cols});
    parallel_for(rows, n_threads, [&](std::int64_t r0, std::int64_t r1) {
        std::vector<float> row(static_cast<std::size_t>(cols));
        for (std::int64_t r = r0; r < r1; ++r) {
            splitmix64 rng{seed * 0x100000001b3ull + static_cast<std::uint64_t>(r)};
            for (auto& v : row) v = center + amp * (2.0f * rng.uniform() - 1.0f);
            quant::quantize_row(type, row.data(), t.row_ptr(r), cols);
        }
    }, 16);
    return t;
}

}  // namespace detail

// Writes architecture metadata and random tensors into `w`. Tokenizer keys are the caller's.
inline model_config synthesize(io::gguf_writer& w, const synth_preset& p, dtype type, std::uint64_t seed = 1,
                               std::int64_t n_vocab_override = 0, int n_threads = 0) {
    model_config c;
    c.arch = p.arch;
    c.arch_name = p.arch == architecture::gpt2 ? "gpt2" : "llama";
    c.name = "minigpt-synth-" + p.name;
    c.n_vocab = n_vocab_override > 0 ? n_vocab_override : p.n_vocab;
    c.n_ctx_train = p.n_ctx;
    c.n_embd = p.n_embd;
    c.n_layer = p.n_layer;
    c.n_head = p.n_head;
    c.n_head_kv = p.n_head_kv;
    c.head_dim = p.n_embd / p.n_head;
    c.n_ff = p.n_ff;
    c.n_rot = c.head_dim;
    c.tied_output = p.tied_output;
    c.validate();
    for (std::int64_t width : {c.n_embd, c.n_ff})
        if (width % block_size(type) != 0)
            throw error("synth: width " + std::to_string(width) + " of preset '" + p.name + "' is not a multiple of the " +
                        std::string(dtype_name(type)) + " block size");

    const std::string a = c.arch_name;
    w.set("general.architecture", a);
    w.set("general.name", c.name);
    w.set("general.file_type", llama_file_type(type));
    w.set(a + ".context_length", static_cast<std::uint32_t>(c.n_ctx_train));
    w.set(a + ".embedding_length", static_cast<std::uint32_t>(c.n_embd));
    w.set(a + ".block_count", static_cast<std::uint32_t>(c.n_layer));
    w.set(a + ".feed_forward_length", static_cast<std::uint32_t>(c.n_ff));
    w.set(a + ".attention.head_count", static_cast<std::uint32_t>(c.n_head));
    w.set(a + ".attention.head_count_kv", static_cast<std::uint32_t>(c.n_head_kv));
    if (c.arch == architecture::gpt2) {
        w.set(a + ".attention.layer_norm_epsilon", 1e-5f);
    } else {
        w.set(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
        w.set(a + ".rope.dimension_count", static_cast<std::uint32_t>(c.n_rot));
        w.set(a + ".rope.freq_base", c.rope_freq_base);
        w.set(a + ".vocab_size", static_cast<std::uint32_t>(c.n_vocab));
    }

    std::uint64_t stream = seed * 1000003ull;
    progress bar("synthesising " + c.name + " (" + std::string(dtype_name(type)) + ")", 3 + c.n_layer);
    std::int64_t n_done = 0;
    const float std_amp = 0.02f * std::sqrt(3.0f);  // uniform with standard deviation 0.02
    auto matrix = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
        w.add_tensor(name, detail::random_tensor(type, rows, cols, 0.0f, std_amp, ++stream, n_threads));
    };
    auto vector = [&](const std::string& name, std::int64_t n, float center, float amp) {
        w.add_tensor(name, detail::random_tensor(dtype::f32, 1, n, center, amp, ++stream, n_threads));
    };
    matrix("token_embd.weight", c.n_vocab, c.n_embd);
    if (c.arch == architecture::gpt2)
        w.add_tensor("position_embd.weight", detail::random_tensor(dtype::f32, c.n_ctx_train, c.n_embd, 0.0f, 0.01f * std::sqrt(3.0f), ++stream, n_threads));
    vector("output_norm.weight", c.n_embd, 1.0f, 0.1f);
    if (c.arch == architecture::gpt2) vector("output_norm.bias", c.n_embd, 0.0f, 0.02f);
    if (!c.tied_output) matrix("output.weight", c.n_vocab, c.n_embd);
    const std::int64_t n_qkv = c.q_dim() + 2 * c.kv_dim();
    bar.update(n_done += 3);
    for (std::int64_t i = 0; i < c.n_layer; ++i, bar.update(++n_done)) {
        const std::string b = "blk." + std::to_string(i) + ".";
        vector(b + "attn_norm.weight", c.n_embd, 1.0f, 0.1f);
        vector(b + "ffn_norm.weight", c.n_embd, 1.0f, 0.1f);
        if (c.arch == architecture::gpt2) {
            vector(b + "attn_norm.bias", c.n_embd, 0.0f, 0.02f);
            matrix(b + "attn_qkv.weight", n_qkv, c.n_embd);
            vector(b + "attn_qkv.bias", n_qkv, 0.0f, 0.02f);
            matrix(b + "attn_output.weight", c.n_embd, c.q_dim());
            vector(b + "attn_output.bias", c.n_embd, 0.0f, 0.02f);
            vector(b + "ffn_norm.bias", c.n_embd, 0.0f, 0.02f);
            matrix(b + "ffn_up.weight", c.n_ff, c.n_embd);
            vector(b + "ffn_up.bias", c.n_ff, 0.0f, 0.02f);
            matrix(b + "ffn_down.weight", c.n_embd, c.n_ff);
            vector(b + "ffn_down.bias", c.n_embd, 0.0f, 0.02f);
        } else {
            matrix(b + "attn_q.weight", c.q_dim(), c.n_embd);
            matrix(b + "attn_k.weight", c.kv_dim(), c.n_embd);
            matrix(b + "attn_v.weight", c.kv_dim(), c.n_embd);
            matrix(b + "attn_output.weight", c.n_embd, c.q_dim());
            matrix(b + "ffn_gate.weight", c.n_ff, c.n_embd);
            matrix(b + "ffn_up.weight", c.n_ff, c.n_embd);
            matrix(b + "ffn_down.weight", c.n_embd, c.n_ff);
        }
    }
    return c;
}

}  // namespace minigpt

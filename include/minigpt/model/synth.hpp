// Random-weight models with the standard GGUF keys and tensor names, for tests and
// benchmarks: `minigpt synth --arch ARCH --preset NAME --type TYPE -o out.gguf`, for every
// architecture of the registry (the tensors are those its descriptor lists).
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
#include <memory>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model/architectures.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

struct synth_preset {
    std::string name;
    architecture arch;                 // family, used when arch_name is empty
    std::int64_t n_vocab, n_ctx, n_embd, n_layer, n_head, n_head_kv, n_ff;
    bool tied_output;
    std::string arch_name = {};        // general.architecture ("gemma2", ...); empty: "llama" or "gpt2" from arch
    std::int64_t head_dim = 0;         // attention.key_length; 0: n_embd / n_head
    std::int64_t sliding_window = 0;   // attention.sliding_window; 0: none (Gemma 2: llama.cpp's default)
    float attn_softcap = 0.0f, final_softcap = 0.0f;
    bool optional_tensors = false;     // also write the tensors the architecture may omit (biases, rope_freqs)

    std::string architecture_name() const { return !arch_name.empty() ? arch_name : arch == architecture::gpt2 ? "gpt2" : "llama"; }
};

inline const std::vector<synth_preset>& synth_presets() {
    using A = architecture;
    static const std::vector<synth_preset> presets = {
        {"tiny", A::llama, 512, 256, 64, 2, 4, 2, 192, false},
        {"tiny", A::gpt2, 512, 256, 64, 2, 4, 4, 256, false},
        {"small", A::llama, 32000, 1024, 256, 4, 8, 4, 768, true},
        {"gpt2-124m", A::gpt2, 50257, 1024, 768, 12, 12, 12, 3072, true},
        {"llama-360m", A::llama, 32000, 2048, 960, 32, 15, 5, 2560, true},
        {"tiny", A::llama, 512, 256, 64, 2, 4, 2, 128, false, "qwen2"},
        {"tiny", A::llama, 512, 256, 64, 2, 4, 4, 128, false, "phi3"},
        {"tiny", A::llama, 512, 256, 64, 2, 4, 1, 128, true, "gemma", 32},
        {"tiny", A::llama, 512, 256, 64, 4, 4, 2, 128, true, "gemma2", 32, 8, 3.0f, 0.5f},
        {"tiny", A::llama, 512, 256, 64, 2, 4, 2, 128, false, "starcoder2"},
        {"tiny", A::llama, 512, 256, 64, 2, 4, 2, 128, false, "qwen3", 32},
        {"tiny", A::llama, 512, 256, 64, 7, 4, 2, 128, true, "gemma3", 32, 8},
    };
    return presets;
}

// The preset `name` of the architecture general.architecture = arch_name.
inline synth_preset find_synth_preset(const std::string& arch_name, const std::string& name) {
    std::string names;
    for (const auto& p : synth_presets()) {
        if (p.architecture_name() != arch_name) continue;
        if (p.name == name) return p;
        names += (names.empty() ? "" : ", ") + p.name;
    }
    if (names.empty()) throw error("synth: no presets for architecture '" + arch_name + "'");
    throw error("unknown preset '" + name + "' for architecture '" + arch_name + "' (available: " + names + ")");
}

inline synth_preset find_synth_preset(architecture arch, const std::string& name) {
    return find_synth_preset(std::string(arch == architecture::gpt2 ? "gpt2" : "llama"), name);
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

// Writes architecture metadata and random tensors into `w`, the tensors being those the
// architecture's descriptor lists (so whatever loads, synth can write). Tokenizer keys are the caller's.
inline model_config synthesize(io::gguf_writer& w, const synth_preset& p, dtype type, std::uint64_t seed = 1,
                               std::int64_t n_vocab_override = 0, int n_threads = 0) {
    const std::string a = p.architecture_name();
    const arch_descriptor& d = require_architecture(a, "synth");
    model_config c;
    c.arch = p.arch;
    c.arch_name = a;
    c.name = "minigpt-synth-" + p.name;
    c.n_vocab = n_vocab_override > 0 ? n_vocab_override : p.n_vocab;
    c.n_ctx_train = p.n_ctx;
    c.n_embd = p.n_embd;
    c.n_layer = p.n_layer;
    c.n_head = p.n_head;
    c.n_head_kv = p.n_head_kv;
    c.head_dim = p.head_dim > 0 ? p.head_dim : p.n_embd / p.n_head;
    c.n_ff = p.n_ff;
    c.n_rot = d.rope ? c.head_dim : 0;
    c.norm = d.norm;
    c.tied_output = p.tied_output;
    c.sliding_window = p.sliding_window;
    c.attn_softcap = p.attn_softcap;
    c.final_softcap = p.final_softcap;
    d.configure(c);
    c.validate();

    w.set("general.architecture", a);
    w.set("general.name", c.name);
    w.set("general.file_type", llama_file_type(type));
    const std::string k = a + ".";
    auto u32 = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
    w.set(k + "context_length", u32(c.n_ctx_train));
    w.set(k + "embedding_length", u32(c.n_embd));
    w.set(k + "block_count", u32(c.n_layer));
    w.set(k + "feed_forward_length", u32(c.n_ff));
    w.set(k + "attention.head_count", u32(c.n_head));
    w.set(k + "attention.head_count_kv", u32(c.n_head_kv));
    w.set(k + (c.norm == norm_kind::rms ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon"), 1e-5f);
    if (c.head_dim != c.n_embd / c.n_head) {
        w.set(k + "attention.key_length", u32(c.head_dim));
        w.set(k + "attention.value_length", u32(c.head_dim));
    }
    if (d.rope) {
        w.set(k + "rope.dimension_count", u32(c.n_rot));
        w.set(k + "rope.freq_base", c.rope_freq_base);
    }
    if (c.sliding_window > 0) w.set(k + "attention.sliding_window", u32(c.sliding_window));
    if (c.attn_softcap > 0.0f) w.set(k + "attn_logit_softcapping", c.attn_softcap);
    if (c.final_softcap > 0.0f) w.set(k + "final_logit_softcapping", c.final_softcap);
    if (!c.learned_positions) w.set(k + "vocab_size", u32(c.n_vocab));

    std::uint64_t stream = seed * 1000003ull;
    progress bar("synthesising " + c.name + " (" + std::string(dtype_name(type)) + ")", 1 + c.n_layer);
    const float std_amp = 0.02f * std::sqrt(3.0f);  // uniform with standard deviation 0.02
    model_weights scratch;                          // the descriptor's list names these; synth fills the file instead
    scratch.layers.resize(static_cast<std::size_t>(c.n_layer));
    const tensor_visitor write = [&](const tensor_spec& s) {
        if (!s.required && !p.optional_tensors) return;
        if (s.layer >= 0) bar.update(1 + s.layer);
        const std::int64_t rows = s.shape.size() == 2 ? s.shape[0] : 1, cols = s.shape.back();
        ++stream;
        switch (s.init) {
            case synth_init::weight:
                if (cols % block_size(type) != 0)
                    throw error("synth: tensor '" + s.name + "' has rows of " + std::to_string(cols) + ", not a multiple of the " +
                                std::string(dtype_name(type)) + " block size");
                w.add_tensor(s.name, detail::random_tensor(type, rows, cols, 0.0f, std_amp, stream, n_threads));
                break;
            case synth_init::position:
                w.add_tensor(s.name, detail::random_tensor(dtype::f32, rows, cols, 0.0f, 0.01f * std::sqrt(3.0f), stream, n_threads));
                break;
            case synth_init::norm: w.add_tensor(s.name, detail::random_tensor(dtype::f32, 1, cols, 1.0f, 0.1f, stream, n_threads)); break;
            case synth_init::bias: w.add_tensor(s.name, detail::random_tensor(dtype::f32, 1, cols, 0.0f, 0.02f, stream, n_threads)); break;
            case synth_init::factor: w.add_tensor(s.name, detail::random_tensor(dtype::f32, 1, cols, 2.5f, 1.5f, stream, n_threads)); break;
        }
    };
    tensor_list list(write);
    d.tensors(c, scratch, list);
    bar.update(1 + c.n_layer);
    return c;
}

// A random-weight model of preset p built in memory, no file written: what tests, benchmarks and
// examples load when they need a model of some shape. `name` is the file name errors would show.
inline std::shared_ptr<const model> synthesize_model(const synth_preset& p, dtype type, std::uint64_t seed = 1,
                                                     const std::string& name = "synth", std::int64_t n_vocab_override = 0) {
    io::gguf_writer w;
    synthesize(w, p, type, seed, n_vocab_override);
    auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    return model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::from_memory(bytes, name)));
}

}  // namespace minigpt

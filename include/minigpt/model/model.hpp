// minigpt::model: an immutable, thread-safe loaded model (config + weights + file).
//
// Loading maps the file and builds views of its tensors; nothing is copied but the
// small 1-D tensors. A model is shared (std::shared_ptr<const model>) by any number
// of contexts (model/context.hpp), each holding its own KV cache and scratch, so
// several threads can run one model at once. GGUF files keep their metadata
// reachable through gguf() (the tokenizer is built from it one layer up, in text/).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "minigpt/core/error.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/llama2c.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

// Reads the hyper-parameters of a GGUF model. Unknown architectures are an error naming them.
inline model_config config_from_gguf(const io::gguf_file& f) {
    model_config c;
    c.arch_name = f.get<std::string>("general.architecture");
    const std::string& a = c.arch_name;
    if (a == "gpt2") {
        c.arch = architecture::gpt2;
    } else if (a == "llama" || a == "mistral" || a == "qwen2" || a == "smollm") {
        c.arch = architecture::llama;
    } else {
        throw error(f.path() + ": unsupported architecture '" + a + "' (supported: llama, mistral, qwen2, gpt2)");
    }
    c.name = f.get_or<std::string>("general.name", "");
    c.n_embd = f.get<std::int64_t>(a + ".embedding_length");
    c.n_layer = f.get<std::int64_t>(a + ".block_count");
    c.n_head = f.get<std::int64_t>(a + ".attention.head_count");
    c.n_head_kv = f.get_or<std::int64_t>(a + ".attention.head_count_kv", c.n_head);
    c.n_ff = f.get<std::int64_t>(a + ".feed_forward_length");
    c.n_ctx_train = f.get<std::int64_t>(a + ".context_length");
    if (c.n_head <= 0) throw error(f.path() + ": " + a + ".attention.head_count must be positive");
    c.head_dim = f.get_or<std::int64_t>(a + ".attention.key_length", c.n_embd / c.n_head);
    if (c.arch == architecture::gpt2) {
        c.norm_eps = f.get<float>(a + ".attention.layer_norm_epsilon");
    } else {
        c.norm_eps = f.get<float>(a + ".attention.layer_norm_rms_epsilon");
        c.n_rot = f.get_or<std::int64_t>(a + ".rope.dimension_count", c.head_dim);
        c.rope_freq_base = f.get_or<float>(a + ".rope.freq_base", 10000.0f);
        // llama.cpp's rope type per architecture: Qwen2 rotates NeoX-style halves, Llama-family adjacent pairs.
        c.rope = a == "qwen2" ? kernels::rope_layout::neox : kernels::rope_layout::adjacent_pairs;
    }
    const auto* embd = f.find_tensor("token_embd.weight");
    if (!embd || embd->shape.size() != 2) throw lookup_error(f.path() + ": missing 2-D tensor 'token_embd.weight'");
    c.n_vocab = f.get_or<std::int64_t>(a + ".vocab_size", embd->shape[0]);
    c.tied_output = f.find_tensor("output.weight") == nullptr;
    c.validate();
    return c;
}

inline model_config config_from_llama2c(const io::llama2c_checkpoint& ck) {
    model_config c;
    c.arch_name = "llama";
    c.arch = architecture::llama;
    c.name = "llama2.c";
    c.n_vocab = ck.config.vocab_size;
    c.n_ctx_train = ck.config.seq_len;
    c.n_embd = ck.config.dim;
    c.n_layer = ck.config.n_layers;
    c.n_head = ck.config.n_heads;
    c.n_head_kv = ck.config.n_kv_heads;
    c.head_dim = c.n_embd / c.n_head;
    c.n_ff = ck.config.hidden_dim;
    c.n_rot = c.head_dim;
    c.norm_eps = 1e-5f;  // llama2.c's run.c hard-codes this epsilon and freq base
    c.rope_freq_base = 10000.0f;
    c.rope = kernels::rope_layout::adjacent_pairs;
    c.tied_output = ck.config.shared_classifier;
    c.validate();
    return c;
}

// Numerics choices made at load time.
struct model_options {
    gelu_mode gelu = gelu_mode::fp16_table;  // GPT-2 only: llama.cpp's table (default) or exact tanh GELU
};

class model {
public:
    // Opens a GGUF file or a llama2.c checkpoint (told apart by the GGUF magic).
    // A file that fits in the memory available is read in at once, front to back (see
    // io::access_hint::populate: the weights then sit in 2 MiB pages); a larger one is paged in as
    // it is used.
    static std::shared_ptr<const model> load(const std::string& path, const model_options& options = {}) {
        auto file = io::mapped_file::open(path);
        const std::uint64_t available = available_memory_bytes();
        const auto hint = available == 0 || file->size() <= available ? io::access_hint::populate : io::access_hint::normal;
        if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0)
            return from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::open(path, hint)), options);
        return from_llama2c(std::make_shared<const io::llama2c_checkpoint>(io::llama2c_checkpoint::open(path, hint)));
    }

    static std::shared_ptr<const model> from_gguf(std::shared_ptr<const io::gguf_file> f, const model_options& options = {}) {
        auto m = std::shared_ptr<model>(new model());
        m->config_ = config_from_gguf(*f);
        m->config_.gelu = options.gelu;
        const io::gguf_file* fp = f.get();
        m->weights_ = load_weights(m->config_, [fp](const std::string& name) -> std::optional<tensor> {
            if (!fp->find_tensor(name)) return std::nullopt;
            return fp->get_tensor(name);
        }, f->path());
        m->path_ = f->path();
        m->format_ = "gguf";
        m->gguf_ = std::move(f);
        return m;
    }

    static std::shared_ptr<const model> from_llama2c(std::shared_ptr<const io::llama2c_checkpoint> ck) {
        auto m = std::shared_ptr<model>(new model());
        m->config_ = config_from_llama2c(*ck);
        const io::llama2c_checkpoint* cp = ck.get();
        m->weights_ = load_weights(m->config_, [cp](const std::string& name) { return cp->find_tensor(name); }, ck->path());
        m->path_ = ck->path();
        m->format_ = "llama2c";
        m->llama2c_ = std::move(ck);
        return m;
    }

    const model_config& config() const noexcept { return config_; }
    const model_weights& weights() const noexcept { return weights_; }
    const std::string& path() const noexcept { return path_; }
    const std::string& format() const noexcept { return format_; }  // "gguf" or "llama2c"
    // The GGUF file (metadata, tokenizer keys), or nullptr for a llama2.c checkpoint.
    const io::gguf_file* gguf() const noexcept { return gguf_.get(); }

    // Parameter count and bytes of the weights as stored (tied output counted once).
    std::uint64_t n_params() const { return count(false); }
    std::uint64_t n_bytes() const { return count(true); }

    // The element type most weights use ("q4_0", "f32", ...), as llama-bench's "type" column.
    dtype main_type() const {
        return weights_.layers.empty() ? weights_.token_embd.type() : weights_.layers[0].ffn_up.type();
    }

    // Identifies the model for kNN stores and caches: architecture, shape and a sample of weight bits.
    std::string fingerprint() const {
        std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the first row of every layer's attn_output
        auto mix = [&h](const std::byte* p, std::int64_t n) {
            for (std::int64_t i = 0; i < n; ++i) { h ^= static_cast<std::uint8_t>(p[i]); h *= 1099511628211ull; }
        };
        mix(weights_.token_embd.row_ptr(0), weights_.token_embd.row_bytes());
        for (const auto& L : weights_.layers) mix(L.attn_output.row_ptr(0), L.attn_output.row_bytes());
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
        return config_.summary() + " weights=" + hex;
    }

private:
    model() = default;

    std::uint64_t count(bool bytes) const {
        std::uint64_t n = 0;
        auto add = [&](const tensor& t) {
            if (!t.empty()) n += bytes ? static_cast<std::uint64_t>(t.n_bytes()) : static_cast<std::uint64_t>(t.n_elements());
        };
        const auto& w = weights_;
        for (const tensor* t : {&w.token_embd, &w.position_embd, &w.output_norm, &w.output_norm_b}) add(*t);
        if (w.output.raw() != w.token_embd.raw()) add(w.output);
        for (const auto& L : w.layers)
            for (const tensor* t : {&L.attn_norm, &L.attn_norm_b, &L.attn_q, &L.attn_k, &L.attn_v, &L.attn_q_b,
                                    &L.attn_k_b, &L.attn_v_b, &L.attn_qkv, &L.attn_qkv_b, &L.attn_output,
                                    &L.attn_output_b, &L.ffn_norm, &L.ffn_norm_b, &L.ffn_gate, &L.ffn_up,
                                    &L.ffn_down, &L.ffn_up_b, &L.ffn_down_b})
                add(*t);
        return n;
    }

    model_config config_;
    model_weights weights_;
    std::string path_;
    std::string format_;
    std::shared_ptr<const io::gguf_file> gguf_;
    std::shared_ptr<const io::llama2c_checkpoint> llama2c_;
};

}  // namespace minigpt

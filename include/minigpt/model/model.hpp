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
#include "minigpt/model/architectures.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

// Reads the hyper-parameters of a GGUF model through its architecture's descriptor. Unknown
// architectures and keys that would change the computation but are not implemented are errors
// naming them.
inline model_config config_from_gguf(const io::gguf_file& f) {
    const auto name = f.get<std::string>("general.architecture");
    return detail::read_config(f, require_architecture(name, f.path()), name);
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
    c.tied_output = ck.config.shared_classifier;
    llama_arch().configure(c);
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
        m->arch_ = &require_architecture(m->config_.arch_name, f->path());
        const io::gguf_file* fp = f.get();
        std::vector<std::string> names;
        for (const auto& t : fp->tensors()) names.push_back(t.name);
        m->weights_ = load_weights(m->config_, m->arch_->tensors, [fp](const std::string& name) -> std::optional<tensor> {
            if (!fp->find_tensor(name)) return std::nullopt;
            return fp->get_tensor(name);
        }, names, f->path());
        m->path_ = f->path();
        m->format_ = "gguf";
        m->gguf_ = std::move(f);
        return m;
    }

    static std::shared_ptr<const model> from_llama2c(std::shared_ptr<const io::llama2c_checkpoint> ck) {
        auto m = std::shared_ptr<model>(new model());
        m->config_ = config_from_llama2c(*ck);
        m->arch_ = &llama_arch();
        const io::llama2c_checkpoint* cp = ck.get();
        m->weights_ = load_weights(m->config_, m->arch_->tensors, [cp](const std::string& name) { return cp->find_tensor(name); },
                                   cp->tensor_names(), ck->path());
        m->path_ = ck->path();
        m->format_ = "llama2c";
        m->llama2c_ = std::move(ck);
        return m;
    }

    const model_config& config() const noexcept { return config_; }
    const model_weights& weights() const noexcept { return weights_; }
    const arch_descriptor& arch() const noexcept { return *arch_; }
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
        const tensor_visitor add = [&](const tensor_spec& spec) {
            const tensor& t = *spec.dst;
            if (!t.empty()) n += bytes ? static_cast<std::uint64_t>(t.n_bytes()) : static_cast<std::uint64_t>(t.n_elements());
        };
        tensor_list list(add);
        // The visitor only reads the tensors; tensor_list hands out non-const pointers because
        // the same list also fills them when loading.
        arch_->tensors(config_, const_cast<model_weights&>(weights_), list);
        return n;
    }

    model_config config_;
    const arch_descriptor* arch_ = nullptr;
    model_weights weights_;
    std::string path_;
    std::string format_;
    std::shared_ptr<const io::gguf_file> gguf_;
    std::shared_ptr<const io::llama2c_checkpoint> llama2c_;
};

}  // namespace minigpt

// arch_descriptor: everything minigpt knows about one architecture, in one place.
//
// An architecture file (llama.hpp, gpt2.hpp, phi3.hpp, gemma.hpp, starcoder2.hpp) defines a
// descriptor: its fixed properties and the rules derived from sizes (configure), the list of
// its tensors (tensors, see weights.hpp), and its layer function (the recipe, written with
// layer_pass's project / rope / attend). The loader, the matrix roles, synth, `minigpt info`
// and the forward pass all derive from it; adding an architecture is one new file and one
// line in the registry (architectures.hpp).
//
// config_from_gguf reads the hyper-parameters every architecture shares (sizes, norm epsilon,
// RoPE and its scaling, soft-caps, sliding window) the same way for all of them. Loading is
// strict about keys too: every `{arch}.*` key of the file must be read, or be one of a few
// keys that do not change the computation; a key that would change the math and is not
// implemented (a rope scaling type, experts, ...) is an error naming it.
#pragma once

#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/model/forward_state.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

struct arch_descriptor {
    const char* name;                        // general.architecture
    std::vector<std::string> aliases;        // other general.architecture values with the same recipe
    norm_kind norm;                          // RMSNorm (reads layer_norm_rms_epsilon) or LayerNorm (layer_norm_epsilon)
    bool rope;                               // rotary positions (reads rope.* keys)
    std::int64_t ffn_up_mult;                // rows of ffn_up per n_ff: 2 when it holds gate|up
    void (*configure)(model_config&);        // constants of the architecture and rules derived from the sizes
    tensors_fn tensors;                      // its tensors, once
    void (*layer)(const layer_pass&);        // one transformer block
};

// Reads `{arch}.NAME` keys and remembers which were read, so the rest can be checked.
class key_reader {
public:
    key_reader(const io::gguf_file& f, std::string prefix) : f_(f), prefix_(std::move(prefix)) {}

    template <class T> T get(const std::string& name) {
        used_.insert(prefix_ + name);
        return f_.get<T>(prefix_ + name);
    }
    template <class T> T get_or(const std::string& name, T fallback) {
        used_.insert(prefix_ + name);
        return f_.get_or<T>(prefix_ + name, fallback);
    }
    bool has(const std::string& name) const { return f_.has(prefix_ + name); }
    const std::string& prefix() const { return prefix_; }

    // Throws naming the first `{arch}.*` key that was neither read nor known not to matter.
    void check_all_read(const std::set<std::string>& harmless) const {
        for (const auto& k : f_.keys()) {
            if (k.compare(0, prefix_.size(), prefix_) != 0 || used_.count(k)) continue;
            if (harmless.count(k.substr(prefix_.size()))) continue;
            throw error(f_.path() + ": key '" + k + "' (" + f_.value_string(k) + ") is not supported by minigpt's " +
                        prefix_.substr(0, prefix_.size() - 1) + " implementation");
        }
    }

private:
    const io::gguf_file& f_;
    std::string prefix_;
    std::set<std::string> used_;
};

namespace detail {

// Keys that do not change the computation: counted as read when present.
inline const std::set<std::string>& harmless_keys() {
    static const std::set<std::string> keys = {
        "tensor_data_layout",              // how an old converter permuted Q/K: already applied to the data
        "rope.scaling.finetuned",          // informational
        "attention.layer_norm_epsilon",    // the other norm kind's epsilon, unused by this architecture
        "attention.layer_norm_rms_epsilon",
    };
    return keys;
}

// The hyper-parameters shared by every architecture, read the same way for all (llama.cpp's
// llama_model::load_hparams), then the descriptor's own rules.
inline model_config read_config(const io::gguf_file& f, const arch_descriptor& d, const std::string& arch_name) {
    model_config c;
    c.arch_name = arch_name;
    c.arch = arch_name == "gpt2" ? architecture::gpt2 : architecture::llama;
    c.name = f.get_or<std::string>("general.name", "");
    key_reader k(f, arch_name + ".");
    c.n_embd = k.get<std::int64_t>("embedding_length");
    c.n_layer = k.get<std::int64_t>("block_count");
    c.n_head = k.get<std::int64_t>("attention.head_count");
    c.n_head_kv = k.get_or<std::int64_t>("attention.head_count_kv", c.n_head);
    c.n_ff = k.get<std::int64_t>("feed_forward_length");
    c.n_ctx_train = k.get<std::int64_t>("context_length");
    if (c.n_head <= 0) throw error(f.path() + ": " + arch_name + ".attention.head_count must be positive");
    c.head_dim = k.get_or<std::int64_t>("attention.key_length", c.n_embd / c.n_head);
    const auto head_dim_v = k.get_or<std::int64_t>("attention.value_length", c.head_dim);
    if (head_dim_v != c.head_dim)
        throw error(f.path() + ": " + arch_name + ".attention.value_length " + std::to_string(head_dim_v) +
                    " differs from key_length " + std::to_string(c.head_dim) + ", which minigpt does not support");
    c.norm = d.norm;
    c.norm_eps = k.get<float>(d.norm == norm_kind::rms ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon");
    if (d.rope) {
        c.n_rot = k.get_or<std::int64_t>("rope.dimension_count", c.head_dim);
        c.rope_freq_base = k.get_or<float>("rope.freq_base", 10000.0f);
        // llama.cpp: the scaling type defaults to linear; a factor applies unless the type is none.
        const std::string scaling = k.get_or<std::string>("rope.scaling.type", "linear");
        float factor = k.get_or<float>("rope.scaling.factor", 0.0f);
        if (factor == 0.0f) factor = k.get_or<float>("rope.scale_linear", 0.0f);
        if (scaling == "linear") {
            c.rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
        } else if (scaling != "none" && scaling != "longrope") {
            throw error(f.path() + ": " + arch_name + ".rope.scaling.type '" + scaling + "' is not supported (supported: none, linear, longrope)");
        }
        c.rope_attn_factor = k.get_or<float>("rope.scaling.attn_factor", 1.0f);
        c.n_ctx_orig = k.get_or<std::int64_t>("rope.scaling.original_context_length", c.n_ctx_train);
    }
    c.sliding_window = k.get_or<std::int64_t>("attention.sliding_window", 0);
    c.attn_softcap = k.get_or<float>("attn_logit_softcapping", 0.0f);
    c.final_softcap = k.get_or<float>("final_logit_softcapping", 0.0f);
    for (const char* key : {"expert_count", "expert_used_count"})
        if (k.get_or<std::int64_t>(key, 0) != 0)
            throw error(f.path() + ": " + arch_name + "." + key + " > 0: mixture-of-experts models are not supported");
    if (!k.get_or<bool>("attention.causal", true)) throw error(f.path() + ": " + arch_name + ".attention.causal = false is not supported");
    const auto* embd = f.find_tensor("token_embd.weight");
    if (!embd || embd->shape.size() != 2) throw lookup_error(f.path() + ": missing 2-D tensor 'token_embd.weight'");
    c.n_vocab = k.get_or<std::int64_t>("vocab_size", embd->shape[0]);
    c.tied_output = f.find_tensor("output.weight") == nullptr;
    k.check_all_read(harmless_keys());
    d.configure(c);
    c.validate();
    return c;
}

}  // namespace detail

}  // namespace minigpt

// model_weights: every tensor of a model, by role, and the machinery that fills them from the
// one list an architecture gives of its tensors.
//
// An architecture (model/arch.hpp) describes its tensors once, in a function that calls
// tensor_list's methods for each tensor (name, shape, kind, matrix role, required or not), in
// the spirit of gemma.cpp's ForEachTensor. The loader, the synthesiser, the parameter count
// and the matrix preparation all walk that same list with different visitors, so no tensor
// name is written twice.
//
// Tensors are zero-copy views into the memory-mapped file, in whatever element type the file
// uses (real files mix types per tensor). Only 1-D tensors (norm weights, biases, RoPE factors:
// a few KB) are converted to owned F32 at load, so kernels can take them as plain float arrays.
// Loading is strict: a missing tensor, a wrong shape, or a tensor of the file that the
// architecture does not use is a minigpt::error naming it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/model/config.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

// The weight matrices that take part in products: the unit at which matrices are prepared
// (repacked) and at which a later adapter (LoRA, neuron hooks) attaches. `output` is the
// model-level logits matrix; the others exist once per layer.
enum class matrix_role : std::uint8_t { attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, ffn_up, ffn_down, output };
inline constexpr std::size_t n_layer_roles = 8;  // every role but output

inline const char* role_name(matrix_role r) {
    static const char* const names[] = {"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output"};
    return names[static_cast<std::size_t>(r)];
}

struct layer_weights {
    tensor attn_norm, attn_norm_b;         // (n_embd) f32
    tensor attn_q, attn_k, attn_v;         // (q_dim, n_embd), (kv_dim, n_embd), (kv_dim, n_embd)
    tensor attn_q_b, attn_k_b, attn_v_b;   // (q_dim), (kv_dim), (kv_dim) f32
    tensor attn_qkv, attn_qkv_b;           // (q_dim + 2*kv_dim, n_embd) fused q|k|v, its bias
    tensor attn_q_norm, attn_k_norm;       // (head_dim) f32: per-head RMSNorm of q and k (Qwen3, Gemma 3)
    tensor attn_output, attn_output_b;     // (n_embd, q_dim), (n_embd)
    tensor attn_post_norm;                 // (n_embd) f32: norm of the attention output (Gemma 2)
    tensor ffn_norm, ffn_norm_b;           // (n_embd) f32
    tensor ffn_gate, ffn_up, ffn_down;     // (n_ff, n_embd), (n_ff or 2*n_ff fused gate|up, n_embd), (n_embd, n_ff)
    tensor ffn_up_b, ffn_down_b;           // (n_ff), (n_embd) f32
    tensor ffn_post_norm;                  // (n_embd) f32: norm of the feed-forward output (Gemma 2)

    tensor& matrix(matrix_role r) {
        switch (r) {
            case matrix_role::attn_q: return attn_q;
            case matrix_role::attn_k: return attn_k;
            case matrix_role::attn_v: return attn_v;
            case matrix_role::attn_qkv: return attn_qkv;
            case matrix_role::attn_output: return attn_output;
            case matrix_role::ffn_gate: return ffn_gate;
            case matrix_role::ffn_up: return ffn_up;
            case matrix_role::ffn_down: return ffn_down;
            case matrix_role::output: break;
        }
        throw error("layer_weights: no per-layer matrix for role 'output'");
    }
    const tensor& matrix(matrix_role r) const { return const_cast<layer_weights*>(this)->matrix(r); }
};

struct model_weights {
    tensor token_embd;                     // (n_vocab, n_embd)
    tensor position_embd;                  // (n_ctx_train, n_embd); learned positions (GPT-2)
    tensor output_norm, output_norm_b;     // (n_embd) f32
    tensor output;                         // (n_vocab, n_embd); the token_embd view when tied
    tensor rope_freqs;                     // (n_rot/2) f32: Llama 3.1 frequency divisors
    tensor rope_long, rope_short;          // (n_rot/2) f32: LongRoPE factors (Phi-3)
    std::vector<layer_weights> layers;     // n_layer
};

// What a tensor is for: a matrix used in products (has a role), a table read by rows
// (embeddings), or a small 1-D vector converted to F32 at load.
enum class tensor_kind { matrix, table, vector };
// How synth fills it: std-0.02 weights, norms near 1, biases near 0, RoPE factors in [1, 4).
enum class synth_init { weight, position, norm, bias, factor };

struct tensor_spec {
    std::string name;                      // GGUF name, e.g. "blk.3.attn_q.weight"
    tensor* dst;                           // where the loaded tensor goes
    std::vector<std::int64_t> shape;       // expected shape, outermost first
    tensor_kind kind;
    matrix_role role;                      // meaningful for kind == matrix
    std::int64_t layer;                    // -1 for model-level tensors
    bool required;
    synth_init init;
};

using tensor_visitor = std::function<void(const tensor_spec&)>;

// What an architecture's tensors() function calls, once per tensor.
class tensor_list {
public:
    explicit tensor_list(const tensor_visitor& visit) : visit_(visit) {}

    void table(tensor& dst, const std::string& name, std::int64_t rows, std::int64_t cols, synth_init init = synth_init::weight) {
        visit_({name, &dst, {rows, cols}, tensor_kind::table, matrix_role::output, -1, true, init});
    }
    // The logits matrix: `output.weight` unless the config says the embeddings are tied.
    void output(const model_config& c, model_weights& w) {
        if (!c.tied_output) visit_({"output.weight", &w.output, {c.n_vocab, c.n_embd}, tensor_kind::matrix, matrix_role::output, -1, true, synth_init::weight});
    }
    void matrix(tensor& dst, std::int64_t layer, const char* name, matrix_role role, std::int64_t rows, std::int64_t cols) {
        visit_({blk(layer, name), &dst, {rows, cols}, tensor_kind::matrix, role, layer, true, synth_init::weight});
    }
    void norm(tensor& dst, std::int64_t layer, const char* name, std::int64_t n) {
        visit_({blk(layer, name), &dst, {n}, tensor_kind::vector, matrix_role::output, layer, true, synth_init::norm});
    }
    void bias(tensor& dst, std::int64_t layer, const char* name, std::int64_t n, bool required = true) {
        visit_({blk(layer, name), &dst, {n}, tensor_kind::vector, matrix_role::output, layer, required, synth_init::bias});
    }
    void factors(tensor& dst, const char* name, std::int64_t n) {  // optional model-level RoPE factors
        visit_({name, &dst, {n}, tensor_kind::vector, matrix_role::output, -1, false, synth_init::factor});
    }

    // "blk.{layer}.{name}", or the name itself for a model-level tensor (layer < 0).
    static std::string blk(std::int64_t layer, const char* name) {
        return layer < 0 ? std::string(name) : "blk." + std::to_string(layer) + "." + name;
    }

private:
    const tensor_visitor& visit_;
};

// An architecture's list of tensors for a config (see model/arch.hpp).
using tensors_fn = void (*)(const model_config&, model_weights&, tensor_list&);

// Looks a tensor up by GGUF name; nullopt when the file has no such tensor.
using tensor_source = std::function<std::optional<tensor>(const std::string& name)>;

namespace detail {

inline std::string shape_of(const std::vector<std::int64_t>& s) {
    std::string r = "(";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + ")";
}

inline bool shape_matches(const tensor& t, const std::vector<std::int64_t>& shape) {
    const auto s = t.shape();
    if (s.size() == shape.size()) {
        for (std::size_t i = 0; i < s.size(); ++i)
            if (s[i] != shape[i]) return false;
        return true;
    }
    // A 1-D tensor may be stored as (1, n) by some converters.
    return shape.size() == 1 && s.size() == 2 && s[0] == 1 && s[1] == shape[0];
}

}  // namespace detail

// Walks the architecture's tensor list, fetching and shape-checking each tensor. `file_tensors`
// lists every tensor of the file: any that the list does not use makes the load fail, naming
// them (a file with tensors we would ignore is a model we would run wrongly).
inline model_weights load_weights(const model_config& c, tensors_fn tensors, const tensor_source& source,
                                  const std::vector<std::string>& file_tensors, const std::string& file) {
    model_weights m;
    m.layers.resize(static_cast<std::size_t>(c.n_layer));
    std::set<std::string> used;
    const tensor_visitor load = [&](const tensor_spec& s) {
        auto t = source(s.name);
        if (!t) {
            if (s.required) throw lookup_error(file + ": missing tensor '" + s.name + "' " + detail::shape_of(s.shape) + " (" + c.arch_name + ")");
            return;
        }
        if (!detail::shape_matches(*t, s.shape))
            throw shape_error(file + ": tensor '" + s.name + "' has shape " + t->shape_string() + ", expected " + detail::shape_of(s.shape));
        used.insert(s.name);
        if (s.kind == tensor_kind::vector) {
            auto out = tensor::empty(dtype::f32, {s.shape[0]});  // (n) owned f32
            quant::dequantize_row(t->type(), t->raw(), out.data<float>(), s.shape[0]);
            *s.dst = out;
        } else {
            *s.dst = *t;
        }
    };
    tensor_list list(load);
    tensors(c, m, list);
    if (c.tied_output) m.output = m.token_embd;
    std::string leftovers;
    std::size_t n_left = 0;
    for (const auto& name : file_tensors)
        if (!used.count(name)) {
            if (n_left < 8) leftovers += (n_left ? ", '" : "'") + name + "'";
            ++n_left;
        }
    if (n_left > 0)
        throw error(file + ": " + std::to_string(n_left) + " tensor" + (n_left > 1 ? "s" : "") + " that the " + c.arch_name +
                    " architecture does not use: " + leftovers + (n_left > 8 ? ", ..." : ""));
    return m;
}

}  // namespace minigpt

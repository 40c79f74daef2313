// Non-finite logits (NaN, +inf) traced back to the model file.
//
// A NaN logit almost always means the weights are wrong (a tensor stored in one type and
// labelled another, a corrupted download), not that the sampler failed; the user needs to
// know which part of which file. Checking every layer's output on every token would cost a
// pass over the hidden state per layer, so nothing is checked on the normal path: only when
// the sampler meets a non-finite logit is the context's token sequence run again in a fresh
// context with a check after the embedding, after each layer and on the logits. The first
// place non-finite values appear is named, with the tensors of that place that themselves hold
// non-finite values once decoded.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

// Thrown by generation when the logits are not finite: a model-file problem, located.
class non_finite_model_error : public error {
public:
    non_finite_model_error(const std::string& what, std::int64_t layer) : error(what), layer_(layer) {}
    // The first layer whose output holds non-finite values; -1: the embedding; n_layer: the output head.
    std::int64_t layer() const noexcept { return layer_; }

private:
    std::int64_t layer_;
};

namespace detail {

inline bool all_finite(std::span<const float> v) {
    for (float x : v)
        if (!std::isfinite(x)) return false;
    return true;
}

// Names of a layer's tensors (GGUF names) that hold NaN or inf once dequantised, comma-separated.
inline std::string non_finite_tensors(std::int64_t layer, const layer_weights& L) {
    const std::pair<const char*, const tensor*> named[] = {
        {"attn_norm.weight", &L.attn_norm}, {"attn_norm.bias", &L.attn_norm_b}, {"attn_q.weight", &L.attn_q},
        {"attn_k.weight", &L.attn_k},       {"attn_v.weight", &L.attn_v},       {"attn_q.bias", &L.attn_q_b},
        {"attn_k.bias", &L.attn_k_b},       {"attn_v.bias", &L.attn_v_b},       {"attn_qkv.weight", &L.attn_qkv},
        {"attn_qkv.bias", &L.attn_qkv_b},   {"attn_output.weight", &L.attn_output}, {"attn_output.bias", &L.attn_output_b},
        {"ffn_norm.weight", &L.ffn_norm},   {"ffn_norm.bias", &L.ffn_norm_b},   {"ffn_gate.weight", &L.ffn_gate},
        {"ffn_up.weight", &L.ffn_up},       {"ffn_down.weight", &L.ffn_down},   {"ffn_up.bias", &L.ffn_up_b},
        {"ffn_down.bias", &L.ffn_down_b}};
    std::string out;
    for (const auto& [name, t] : named) {
        if (t->empty()) continue;
        std::vector<float> row(static_cast<std::size_t>(t->n_cols()));  // (n_cols) one decoded row
        for (std::int64_t r = 0; r < t->n_rows(); ++r) {
            quant::dequantize_row(t->type(), t->row_ptr(r), row.data(), t->n_cols());
            if (!all_finite(row)) {
                out += (out.empty() ? "" : ", ") + ("blk." + std::to_string(layer) + "." + name);
                break;
            }
        }
    }
    return out;
}

}  // namespace detail

// Re-runs `tokens` (the sequence that produced non-finite logits) in a fresh context on ctx's model
// and throws non_finite_model_error naming where NaN/inf first appears. `what` says what saw it.
[[noreturn]] inline void throw_non_finite(const context& ctx, std::span<const std::int32_t> tokens, const std::string& what) {
    const model& m = ctx.get_model();
    const auto& c = m.config();
    const std::string file = m.path().empty() ? std::string("the model") : m.path();
    const std::string head = what + ": the model produces non-finite values (NaN or inf): a problem of the model file " + file;
    if (tokens.empty()) throw non_finite_model_error(head, c.n_layer);
    // The embedding rows of the tokens fed.
    std::vector<float> row(static_cast<std::size_t>(c.n_embd));  // (n_embd)
    const auto& w = m.weights();
    for (auto id : tokens) {
        if (id < 0 || id >= c.n_vocab) continue;
        quant::dequantize_row(w.token_embd.type(), w.token_embd.row_ptr(id), row.data(), c.n_embd);
        if (!detail::all_finite(row))
            throw non_finite_model_error(head + ": row " + std::to_string(id) + " of token_embd.weight is not finite", -1);
    }
    context_params p = ctx.params();
    p.n_ctx = static_cast<std::int64_t>(tokens.size());
    p.tap = hidden_tap::none;
    context probe(ctx.model_ptr(), p);
    std::int64_t first_bad = -1;
    std::int64_t first_position = 0;
    std::int64_t position0 = 0;  // position of the chunk's first token
    probe.set_layer_callback([&](std::int64_t layer, std::span<const float> residual, std::int64_t n_tokens) {
        if (first_bad < 0)
            for (std::int64_t t = 0; t < n_tokens && first_bad < 0; ++t)
                if (!detail::all_finite(residual.subspan(static_cast<std::size_t>(t * c.n_embd), static_cast<std::size_t>(c.n_embd)))) {
                    first_bad = layer;
                    first_position = position0 + t;
                }
        if (layer == c.n_layer - 1) position0 += n_tokens;
    });
    probe.decode(tokens, logits_for::last);
    if (first_bad >= 0) {
        const std::string bad = detail::non_finite_tensors(first_bad, w.layers[static_cast<std::size_t>(first_bad)]);
        throw non_finite_model_error(head + ": layer " + std::to_string(first_bad) + " (blk." + std::to_string(first_bad) +
                                         ".*) is the first to produce them (at position " + std::to_string(first_position) + ")" +
                                         (bad.empty() ? std::string() : "; non-finite weights in " + bad),
                                     first_bad);
    }
    throw non_finite_model_error(head + ": every layer's output is finite; the output head (output_norm.weight, " +
                                     std::string(c.tied_output ? "token_embd.weight" : "output.weight") + ") produces them",
                                 c.n_layer);
}

}  // namespace minigpt

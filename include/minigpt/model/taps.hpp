// What a caller can observe of a forward pass without the model's internals: where a hidden state is
// captured (kNN-LM, embeddings, inspection) and the per-layer residual callback. Light on purpose:
// the context's declaration (model/context_decl.hpp) needs these and nothing heavier.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

namespace minigpt {

// Where a hidden state can be captured for kNN-LM or inspection.
enum class hidden_tap {
    none,
    ffn_input,   // the input to the last layer's feed-forward block, after its norm (Khandelwal et al.)
    final_norm,  // the final normed state that the output matrix turns into logits
};

// Called after each layer with the residual stream (n_tokens, n_embd) of the current batch.
using layer_callback = std::function<void(std::int64_t layer, std::span<const float> residual, std::int64_t n_tokens)>;

}  // namespace minigpt

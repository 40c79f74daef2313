// The engine's forward step: one batch of work for many sequences, each item a run of tokens of
// one sequence (a single decode token, or a chunk of a prompt), as llama_batch groups them.
//
// Today every sequence has its own context and run_batch() feeds each item to it in turn
// (prefill chunks as matrix-matrix products, decode tokens as matrix-vector ones). This is the
// one seam a multi-sequence forward pass (one weight read for the whole batch, attention per
// sequence over its own cache) plugs into: the engine builds the same list of items either way.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "minigpt/model/context.hpp"

namespace minigpt {

struct batch_item {
    context* ctx = nullptr;                 // the sequence's cache and logits
    std::span<const std::int32_t> tokens;   // fed at positions ctx->n_past() onwards
    bool want_logits = false;               // logits of the item's last token (read with ctx->logits(0))
    std::vector<std::int32_t>* cached = nullptr;  // the sequence's token record, extended by `tokens`
};

// Runs every item; on return each item's tokens are in its cache and record. An item that throws
// leaves the items before it done (the caller resets the sequences of a failed step).
inline void run_batch(std::span<batch_item> items) {
    for (auto& it : items) {
        it.ctx->decode(it.tokens, it.want_logits ? logits_for::last : logits_for::none);
        if (it.cached) it.cached->insert(it.cached->end(), it.tokens.begin(), it.tokens.end());
    }
}

}  // namespace minigpt

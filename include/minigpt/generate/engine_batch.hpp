// The engine's forward step: one batch of work for many sequences, each item a run of tokens of
// one sequence (a single decode token, or a chunk of a prompt), as llama_batch groups them.
//
// run_batch() packs every item into one minigpt::batch and runs it as ONE forward pass of the
// engine's batch_context (model/batch_context.hpp): each weight matrix is read once for all the
// running decodes and prompt chunks together, and each token attends over its own sequence's
// part of the paged KV cache.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "minigpt/model/batch_context.hpp"

namespace minigpt {

struct batch_item {
    std::int32_t seq = 0;                   // the sequence's id in the batch_context (at most one item per sequence)
    std::span<const std::int32_t> tokens;   // fed at positions n_pos(seq) onwards
    bool want_logits = false;               // logits of the item's last token
    std::vector<std::int32_t>* cached = nullptr;  // the sequence's token record, extended by `tokens`
    std::int64_t logits_index = -1;         // set by run_batch: read the logits with ctx.logits_ith(logits_index)
};

// Runs every item in one decode; `scratch` keeps its capacity between steps. On return each item's
// tokens are in its cache and record. A batch that cannot run (a bad token, a full cache) throws
// before any item's cache or record changes.
inline void run_batch(batch_context& ctx, std::span<batch_item> items, batch& scratch) {
    scratch.clear();
    for (auto& it : items) {
        const std::int64_t p0 = ctx.n_pos(it.seq);
        const auto n = static_cast<std::int64_t>(it.tokens.size());
        for (std::int64_t i = 0; i < n; ++i)
            scratch.add(it.tokens[static_cast<std::size_t>(i)], p0 + i, it.seq, it.want_logits && i + 1 == n);
        it.logits_index = it.want_logits && n > 0 ? scratch.size() - 1 : -1;
    }
    ctx.decode(scratch);
    for (auto& it : items)
        if (it.cached) it.cached->insert(it.cached->end(), it.tokens.begin(), it.tokens.end());
}

}  // namespace minigpt

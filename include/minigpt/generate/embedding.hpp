// Text embeddings from any loaded model: the final normed hidden state of every token (what the
// output matrix turns into logits, llama.cpp's result_norm), pooled into one vector.
//
// Pooling, as llama.cpp's --pooling: none (every token's vector, (n_tokens, n_embd) row-major),
// mean (average over the tokens), last (the last token's vector: for a causal model the only
// one that has seen the whole text), cls (the first token's, BOS when the vocabulary adds one).
// Optional L2 normalisation (llama.cpp's --embd-normalize 2) divides each output vector by its
// Euclidean norm, so a dot product of two embeddings is their cosine. Sums are taken in double.
//
// The embedder owns one context with the final-norm tap and decodes each text from position 0
// without computing logits. as_function() plugs it into the few-shot builder's similarity
// selection (text/few_shot.hpp: embedding_cosine).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation.hpp"
#include "minigpt/model/batch_context.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/text/few_shot.hpp"
#include "minigpt/text/tokenizer.hpp"

namespace minigpt {

enum class pooling { none, mean, last, cls };

inline pooling parse_pooling(std::string_view s) {
    if (s == "none") return pooling::none;
    if (s == "mean") return pooling::mean;
    if (s == "last") return pooling::last;
    if (s == "cls") return pooling::cls;
    throw error("unknown pooling '" + std::string(s) + "' (none, mean, last or cls)");
}

inline std::string_view pooling_name(pooling p) {
    switch (p) {
        case pooling::none: return "none";
        case pooling::mean: return "mean";
        case pooling::last: return "last";
        case pooling::cls: return "cls";
    }
    return "?";
}

struct embedding_params {
    pooling pool = pooling::mean;
    bool normalize = false;      // L2-normalise each output vector
    bool add_bos = true;         // add BOS when the vocabulary wants it
    std::int64_t n_ctx = 0;      // longest text in tokens; 0: the model's training context
    int n_threads = 0;
};

// Pools `states` (n_tokens, n_embd) into `out`: (n_embd) for mean/last/cls, a copy of all rows for none.
inline void pool_states(std::span<const float> states, std::int64_t n_tokens, std::int64_t n_embd, pooling p, bool normalize,
                        std::vector<float>& out) {
    if (n_tokens <= 0 || n_embd <= 0 || states.size() != static_cast<std::size_t>(n_tokens * n_embd))
        throw shape_error("pool_states: " + std::to_string(states.size()) + " values are not " + std::to_string(n_tokens) + " x " +
                          std::to_string(n_embd));
    const auto row = [&](std::int64_t t) { return states.subspan(static_cast<std::size_t>(t * n_embd), static_cast<std::size_t>(n_embd)); };
    switch (p) {
        case pooling::none: out.assign(states.begin(), states.end()); break;
        case pooling::cls: out.assign(row(0).begin(), row(0).end()); break;
        case pooling::last: out.assign(row(n_tokens - 1).begin(), row(n_tokens - 1).end()); break;
        case pooling::mean: {
            std::vector<double> sum(static_cast<std::size_t>(n_embd), 0.0);  // (n_embd)
            for (std::int64_t t = 0; t < n_tokens; ++t) {
                const auto r = row(t);
                for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += r[i];
            }
            out.resize(sum.size());
            for (std::size_t i = 0; i < sum.size(); ++i) out[i] = static_cast<float>(sum[i] / static_cast<double>(n_tokens));
            break;
        }
    }
    if (!normalize) return;
    const std::size_t n_rows = p == pooling::none ? static_cast<std::size_t>(n_tokens) : 1;
    for (std::size_t r = 0; r < n_rows; ++r) {
        float* v = out.data() + r * static_cast<std::size_t>(n_embd);
        double ss = 0.0;
        for (std::int64_t i = 0; i < n_embd; ++i) ss += static_cast<double>(v[i]) * v[i];
        const double inv = ss > 0.0 ? 1.0 / std::sqrt(ss) : 0.0;  // a zero vector stays zero
        for (std::int64_t i = 0; i < n_embd; ++i) v[i] = static_cast<float>(v[i] * inv);
    }
}

class embedder {
public:
    embedder(llm lm, embedding_params p = {})
        : lm_(std::move(lm)), params_(p),
          ctx_(lm_.weights, {.n_ctx = p.n_ctx, .n_threads = p.n_threads, .tap = hidden_tap::final_norm}) {}

    std::int64_t n_embd() const noexcept { return lm_.weights->config().n_embd; }
    const embedding_params& params() const noexcept { return params_; }
    // Tokens of the last text embedded.
    std::int64_t last_n_tokens() const noexcept { return last_n_tokens_; }

    std::vector<float> embed(std::string_view text) {
        const auto ids = lm_.vocab->encode(text, params_.add_bos && lm_.vocab->add_bos_default());
        return embed_tokens(ids);
    }

    // (n_embd) pooled, or (n_tokens, n_embd) for pooling::none.
    std::vector<float> embed_tokens(std::span<const std::int32_t> ids) {
        if (ids.empty()) throw error("embed: the text has no tokens");
        if (static_cast<std::int64_t>(ids.size()) > ctx_.n_ctx())
            throw error("embed: " + std::to_string(ids.size()) + " tokens exceed the context of " + std::to_string(ctx_.n_ctx()));
        ctx_.truncate(0);
        ctx_.decode(ids, logits_for::none);
        last_n_tokens_ = static_cast<std::int64_t>(ids.size());
        std::vector<float> out;
        pool_states(ctx_.tap_output(), last_n_tokens_, n_embd(), params_.pool, params_.normalize, out);
        return out;
    }

    // Several inputs at once: each its own sequence of one batch_context, packed into forward
    // passes of up to max(n_ctx, 512) tokens and 16 inputs, the final-norm states tapped for every
    // token (batch_context's hidden-state tap) and pooled per input. Vector i equals
    // embed_tokens(inputs[i]) up to float rounding (the same products, batched).
    std::vector<std::vector<float>> embed_batch(std::span<const std::vector<std::int32_t>> inputs) {
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            if (inputs[i].empty()) throw error("embed_batch: input " + std::to_string(i) + " has no tokens");
            if (static_cast<std::int64_t>(inputs[i].size()) > ctx_.n_ctx())
                throw error("embed_batch: input " + std::to_string(i) + " of " + std::to_string(inputs[i].size()) +
                            " tokens exceeds the context of " + std::to_string(ctx_.n_ctx()));
        }
        const std::int64_t budget = std::max<std::int64_t>(ctx_.n_ctx(), 512);
        const std::int32_t max_inputs = 16;
        if (!batch_)
            batch_ = std::make_unique<batch_context>(lm_.weights, batch_context_params{.n_ctx = budget, .n_seq_max = max_inputs,
                                                                                       .n_threads = params_.n_threads,
                                                                                       .tap = hidden_tap::final_norm});
        std::vector<std::vector<float>> out(inputs.size());
        batch b;
        for (std::size_t first = 0; first < inputs.size();) {
            std::size_t end = first;
            std::int64_t n = 0;
            while (end < inputs.size() && end - first < static_cast<std::size_t>(max_inputs) &&
                   n + static_cast<std::int64_t>(inputs[end].size()) <= budget)
                n += static_cast<std::int64_t>(inputs[end++].size());
            batch_->clear();
            b.clear();
            for (std::size_t i = first; i < end; ++i)
                for (std::size_t t = 0; t < inputs[i].size(); ++t)
                    b.add(inputs[i][t], static_cast<std::int64_t>(t), static_cast<std::int32_t>(i - first), false);
            batch_->decode(b);
            std::int64_t row = 0;  // the input's first token in the batch
            for (std::size_t i = first; i < end; ++i) {
                const auto len = static_cast<std::int64_t>(inputs[i].size());
                pool_states(batch_->tap_output().subspan(static_cast<std::size_t>(row * n_embd()), static_cast<std::size_t>(len * n_embd())),
                            len, n_embd(), params_.pool, params_.normalize, out[i]);
                row += len;
            }
            first = end;
        }
        return out;
    }

    // For few-shot similarity selection: embedding_cosine(e.as_function()). The embedder must
    // outlive the function (and pooling::none is refused: one vector per text is needed).
    embedding_function as_function() {
        if (params_.pool == pooling::none) throw error("embedder::as_function: pooling none gives no single vector per text");
        return [this](std::string_view text) { return embed(text); };
    }

private:
    llm lm_;
    embedding_params params_;
    context ctx_;
    std::unique_ptr<batch_context> batch_;  // embed_batch's, made at its first call
    std::int64_t last_n_tokens_ = 0;
};

}  // namespace minigpt

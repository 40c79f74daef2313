// model_session: the text_session interface backed by a real model.
//
// Holds an llm (shared, immutable), its own context (KV cache) and the token history.
// append() tokenises and prefills only the new text; generate() continues from the
// cached state; fork() copies the KV cache, so n samples from one prompt cost one
// prefill (self-consistency, tool use and critique loops rely on this), and fork_generate()
// decodes n continuations together, one forward pass per step over the shared prompt.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "minigpt/generate/generation.hpp"
#include "minigpt/generate/parallel_generation.hpp"
#include "minigpt/generate/text_session.hpp"

namespace minigpt {

class model_session : public text_session {
public:
    model_session(llm lm, context_params params = {}) : lm_(std::move(lm)), ctx_(std::make_shared<context>(lm_.weights, params)) {}

    void append(std::string_view text) override {
        const bool bos = ctx_->n_past() == 0 && lm_.vocab->add_bos_default();
        const auto ids = lm_.vocab->encode(text, bos);
        if (ids.empty()) return;
        if (ctx_->n_past() + static_cast<std::int64_t>(ids.size()) > ctx_->n_ctx())
            throw error("model_session: appending " + std::to_string(ids.size()) + " tokens overflows the context of " +
                        std::to_string(ctx_->n_ctx()));
        ctx_->decode(ids);
        history_.insert(history_.end(), ids.begin(), ids.end());
        transcript_ += text;
    }

    generation_result generate(const generation_options& options, const text_callback& on_text = {}) override {
        generation_params p;
        p.max_tokens = options.max_tokens;
        p.stop = options.stop;
        p.sampling = options.sampling;
        sampler smp(options.sampling, static_cast<std::int32_t>(ctx_->n_vocab()));
        for (auto id : history_) smp.accept(id);
        token_callback cb;
        if (on_text) cb = [&](std::int32_t, std::string_view piece) { return piece.empty() || on_text(piece); };
        if (ctx_->n_logits_rows() == 0) throw error("model_session: generate() before any text was appended");
        auto out = generate_from_tokens(*ctx_, *lm_.vocab, history_, {}, p, smp, cb);
        transcript_ += out.text + out.stop_string;
        generation_result r;
        r.text = std::move(out.text);
        r.n_tokens = static_cast<std::int32_t>(out.tokens.size());
        r.reason = out.reason;
        r.stop_string = std::move(out.stop_string);
        return r;
    }

    std::unique_ptr<text_session> fork() const override {
        auto s = std::unique_ptr<model_session>(new model_session(lm_, ctx_->fork()));
        s->history_ = history_;
        s->transcript_ = transcript_;
        return s;
    }

    // The paths decode together in one batch_context: the prompt's KV rows are copied in once
    // and shared by every path (copy-on-write blocks), then every step is one forward pass over
    // one token of each live path; each fork gets back a context holding its own path.
    std::vector<forked_generation> fork_generate(std::span<const generation_options> options) const override {
        if (options.size() <= 1 || !ctx_->adapters().empty() || ctx_->n_logits_rows() == 0 || ctx_->n_past() == 0 ||
            static_cast<std::int64_t>(history_.size()) != ctx_->n_past() || options.size() > 4096)
            return text_session::fork_generate(options);  // nothing to share, or state a batch context does not carry
        const auto n = static_cast<std::int32_t>(options.size());
        const context_params& cp = ctx_->params();
        const std::int64_t n_prompt = ctx_->n_past(), block = 16;
        batch_context bc(lm_.weights, {.n_ctx = n_prompt + n * (ctx_->n_ctx() - n_prompt + block), .n_seq_max = n,
                                       .n_batch = cp.n_batch, .block_size = block, .kv_type = cp.kv_type,
                                       .n_threads = cp.n_threads, .repack = cp.repack});
        bc.seq_import(0, ctx_->kv(), n_prompt);
        std::vector<generation_params> params;
        for (const auto& o : options) {
            generation_params p;
            p.max_tokens = o.max_tokens;
            p.stop = o.stop;
            p.sampling = o.sampling;
            params.push_back(std::move(p));
        }
        auto outs = generate_parallel(bc, *lm_.vocab, history_, ctx_->logits(0), params, ctx_->n_ctx());
        std::vector<forked_generation> forks;
        for (std::int32_t i = 0; i < n; ++i) {
            auto& out = outs[static_cast<std::size_t>(i)];
            auto s = std::unique_ptr<model_session>(new model_session(lm_, std::make_unique<context>(lm_.weights, cp)));
            // As generate_from_tokens leaves it: every generated token but an end-of-generation one.
            s->history_ = history_;
            const std::size_t n_kept = out.tokens.size() - (out.reason == stop_reason::end_of_generation ? 1 : 0);
            s->history_.insert(s->history_.end(), out.tokens.begin(), out.tokens.begin() + static_cast<std::ptrdiff_t>(n_kept));
            // Every fed position but the last is copied; the last is decoded again for the logits a
            // continuation samples from.
            const std::int64_t n_fed = bc.n_pos(i);
            bc.seq_export(i, s->ctx_->kv(), n_fed - 1);
            s->ctx_->set_restored_positions(n_fed - 1);
            s->ctx_->decode(std::span(&s->history_[static_cast<std::size_t>(n_fed - 1)], 1));
            s->transcript_ = transcript_ + out.text + out.stop_string;
            generation_result r;
            r.text = std::move(out.text);
            r.n_tokens = static_cast<std::int32_t>(out.tokens.size());
            r.reason = out.reason;
            r.stop_string = std::move(out.stop_string);
            forks.push_back({std::move(s), std::move(r)});
        }
        return forks;
    }

    std::size_t n_tokens() const override { return static_cast<std::size_t>(ctx_->n_past()); }
    std::size_t n_ctx() const override { return static_cast<std::size_t>(ctx_->n_ctx()); }
    std::size_t count_tokens(std::string_view text) const override { return lm_.vocab->encode(text, false).size(); }
    std::string transcript() const override { return transcript_; }

    context& ctx() { return *ctx_; }
    const llm& model() const { return lm_; }

private:
    model_session(llm lm, std::unique_ptr<context> ctx) : lm_(std::move(lm)), ctx_(std::move(ctx)) {}

    llm lm_;
    std::shared_ptr<context> ctx_;
    std::vector<std::int32_t> history_;
    std::string transcript_;
};

}  // namespace minigpt

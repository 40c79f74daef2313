// model_session: the text_session interface backed by a real model.
//
// Holds an llm (shared, immutable), its own context (KV cache) and the token history.
// append() tokenises and prefills only the new text; generate() continues from the
// cached state; fork() copies the KV cache, so n samples from one prompt cost one
// prefill (self-consistency, tool use and critique loops rely on this).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "minigpt/generate/generation.hpp"
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

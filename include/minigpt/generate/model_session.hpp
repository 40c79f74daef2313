// model_session: the text_session interface backed by a real model.
//
// Holds an llm (shared, immutable), its own context (KV cache) and the token history.
// append() tokenises and prefills only the new text; generate() continues from the
// cached state; fork() copies the KV cache, so n samples from one prompt cost one
// prefill (self-consistency, tool use and critique loops rely on this), and fork_generate()
// decodes n continuations together, one forward pass per step over the shared prompt;
// fork_append_generate() does the same for n different texts appended to the shared prompt, and
// append_generate_each() for n sessions of one model continued at once (each its own sequence).
// The batched paths equal the one-at-a-time ones (same tokens fed; logits equal up to float
// rounding), LoRA adapters included (sessions continued together must share one adapter set); a
// context with hooks or a layer callback goes the one-at-a-time way.
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
        if (options.size() <= 1) return text_session::fork_generate(options);
        const std::vector<std::string> appends(options.size());
        return fork_append_generate(appends, options);
    }

    // As fork_generate, each path's appended text prefilled first, all paths in one batch.
    std::vector<forked_generation> fork_append_generate(std::span<const std::string> appends,
                                                        std::span<const generation_options> options) const override {
        check_path_counts(appends.size(), options.size(), "fork_append_generate");
        std::vector<std::vector<std::int32_t>> ids(options.size());  // (n_paths, its appended tokens)
        bool fits = true, all_appended = true;
        for (std::size_t i = 0; i < options.size(); ++i) {
            ids[i] = lm_.vocab->encode(appends[i], ctx_->n_past() == 0 && lm_.vocab->add_bos_default());  // as append()
            fits = fits && ctx_->n_past() + static_cast<std::int64_t>(ids[i].size()) <= ctx_->n_ctx();
            all_appended = all_appended && !ids[i].empty();
        }
        if (options.size() <= 1 || options.size() > 4096 || !batchable() || !fits ||
            static_cast<std::int64_t>(history_.size()) != ctx_->n_past() ||
            ((ctx_->n_past() == 0 || ctx_->n_logits_rows() == 0) && !all_appended))
            return text_session::fork_append_generate(appends, options);  // nothing to share, or state a batch context does not carry
        std::vector<batched_path> paths(options.size());
        std::vector<std::unique_ptr<model_session>> forks;
        for (std::size_t i = 0; i < options.size(); ++i) {
            auto& p = paths[i];
            p.source = i == 0 ? ctx_.get() : nullptr;
            p.history = history_;
            p.history.insert(p.history.end(), ids[i].begin(), ids[i].end());
            p.n_new = ids[i].size();
            if (p.n_new == 0) p.logits = ctx_->logits(0);
            p.n_ctx = ctx_->n_ctx();
            auto fork_ctx = std::make_unique<context>(lm_.weights, ctx_->params());
            if (!ctx_->adapters().empty()) fork_ctx->set_adapters(ctx_->adapters());  // as context::fork()
            forks.push_back(std::unique_ptr<model_session>(new model_session(lm_, std::move(fork_ctx))));
            p.target = forks.back()->ctx_.get();
        }
        auto results = run_batched(lm_, ctx_->params(), ctx_->adapters(), paths, options);
        n_batched_paths_ += paths.size();
        std::vector<forked_generation> out;
        for (std::size_t i = 0; i < options.size(); ++i) {
            auto& s = *forks[i];
            s.history_ = std::move(paths[i].history);
            s.transcript_ = transcript_ + (ids[i].empty() ? "" : appends[i]) + results[i].text + results[i].stop_string;
            out.push_back({std::move(forks[i]), std::move(results[i]), ids[i].size()});
        }
        return out;
    }

    // Every session a model_session of this model (and none carrying state a batch context does
    // not): imported side by side into one batch_context, appends prefilled together, then one
    // forward pass per step; each session's context gets its own sequence back.
    std::vector<generation_result> append_generate_together(std::span<text_session* const> sessions, std::span<const std::string> appends,
                                                            std::span<const generation_options> options) override {
        check_path_counts(appends.size(), options.size(), "append_generate_each");
        check_path_counts(sessions.size(), options.size(), "append_generate_each");
        std::vector<model_session*> ms;
        std::vector<std::vector<std::int32_t>> ids;  // (n_sessions, its appended tokens)
        bool batched = sessions.size() > 1 && sessions.size() <= 4096;
        for (std::size_t i = 0; batched && i < sessions.size(); ++i) {
            auto* m = dynamic_cast<model_session*>(sessions[i]);
            batched = m && m->lm_.weights == lm_.weights && m->lm_.vocab == lm_.vocab && m->batchable() &&
                      same_adapters(m->ctx_->adapters(), ctx_->adapters()) &&
                      m->ctx_->params().kv_type == ctx_->params().kv_type && m->ctx_->n_past() > 0 &&
                      static_cast<std::int64_t>(m->history_.size()) == m->ctx_->n_past();
            for (const model_session* other : ms) batched = batched && other->ctx_ != m->ctx_;  // copies share a context
            if (!batched) break;
            ids.push_back(lm_.vocab->encode(appends[i], false));
            batched = m->ctx_->n_past() + static_cast<std::int64_t>(ids.back().size()) <= m->ctx_->n_ctx() &&
                      (!ids.back().empty() || m->ctx_->n_logits_rows() > 0);
            ms.push_back(m);
        }
        if (!batched) return text_session::append_generate_together(sessions, appends, options);
        std::vector<batched_path> paths(ms.size());
        for (std::size_t i = 0; i < ms.size(); ++i) {
            auto& p = paths[i];
            model_session& m = *ms[i];
            p.source = m.ctx_.get();
            p.target = m.ctx_.get();
            p.history = m.history_;
            p.history.insert(p.history.end(), ids[i].begin(), ids[i].end());
            p.n_new = ids[i].size();
            if (p.n_new == 0) p.logits = m.ctx_->logits(0);
            p.n_ctx = m.ctx_->n_ctx();
        }
        auto results = run_batched(lm_, ctx_->params(), ctx_->adapters(), paths, options);
        n_batched_paths_ += paths.size();
        for (std::size_t i = 0; i < ms.size(); ++i) {
            ms[i]->history_ = std::move(paths[i].history);
            ms[i]->transcript_ += (ids[i].empty() ? "" : appends[i]) + results[i].text + results[i].stop_string;
        }
        return results;
    }

    std::size_t n_tokens() const override { return static_cast<std::size_t>(ctx_->n_past()); }
    std::size_t n_ctx() const override { return static_cast<std::size_t>(ctx_->n_ctx()); }
    std::size_t count_tokens(std::string_view text) const override { return lm_.vocab->encode(text, false).size(); }
    std::string transcript() const override { return transcript_; }

    context& ctx() { return *ctx_; }
    // Paths this session has run through a batch_context (fork_generate, fork_append_generate and
    // append_generate_each called on it) rather than one at a time.
    std::size_t n_batched_paths() const noexcept { return n_batched_paths_; }
    const llm& model() const { return lm_; }

private:
    model_session(llm lm, std::unique_ptr<context> ctx) : lm_(std::move(lm)), ctx_(std::move(ctx)) {}

    // A batch_context carries LoRA adapters (one set for all its sequences) but no hooks or layer callbacks.
    bool batchable() const { return !ctx_->hooks() && !ctx_->has_layer_callback(); }
    static bool same_adapters(const std::vector<lora_binding>& a, const std::vector<lora_binding>& b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (a[i].adapter != b[i].adapter || a[i].scale != b[i].scale) return false;
        return true;
    }

    // One path of run_batched.
    struct batched_path {
        const context* source = nullptr;   // the cache its sequence starts from; null: a copy-on-write fork of path 0's
        context* target = nullptr;         // the context that holds the path afterwards
        std::vector<std::int32_t> history; // (n) its tokens, the last n_new not decoded yet; afterwards also the generated ones
        std::size_t n_new = 0;
        std::span<const float> logits;     // (n_vocab) after history when n_new is 0
        std::int64_t n_ctx = 0;            // positions it may hold
    };

    // Path i runs in sequence i of one batch_context (path 0 must have a source). As
    // generate_from_tokens leaves a context, each target then holds its history (every generated
    // token but an end-of-generation one) with the logits after the last one.
    static std::vector<generation_result> run_batched(const llm& lm, const context_params& cp, const std::vector<lora_binding>& adapters,
                                                      std::span<batched_path> paths, std::span<const generation_options> options) {
        const auto n = static_cast<std::int32_t>(paths.size());
        const std::int64_t block = 16;
        const std::int64_t n_shared = static_cast<std::int64_t>(paths[0].history.size() - paths[0].n_new);
        std::int64_t n_ctx_total = 0;
        for (const auto& p : paths) n_ctx_total += p.n_ctx + block - (p.source ? 0 : n_shared);
        batch_context bc(lm.weights, {.n_ctx = n_ctx_total, .n_seq_max = n, .n_batch = cp.n_batch, .block_size = block,
                                      .kv_type = cp.kv_type, .n_threads = cp.n_threads, .repack = cp.repack});
        if (!adapters.empty()) bc.set_adapters(adapters);
        std::vector<std::vector<std::int32_t>> fresh(paths.size());  // (n_paths, tokens to prefill)
        for (std::int32_t i = 0; i < n; ++i) {
            auto& p = paths[static_cast<std::size_t>(i)];
            const auto n_cached = static_cast<std::int64_t>(p.history.size() - p.n_new);
            if (p.source) bc.seq_import(i, p.source->kv(), n_cached);
            else bc.seq_cp(0, i);
            fresh[static_cast<std::size_t>(i)].assign(p.history.end() - static_cast<std::ptrdiff_t>(p.n_new), p.history.end());
        }
        const auto prefilled = prefill_sequences(bc, fresh);
        std::vector<path_start> starts;
        std::vector<generation_params> params;
        for (std::size_t i = 0; i < paths.size(); ++i) {
            const auto& p = paths[i];
            starts.push_back({p.history, p.n_new > 0 ? std::span<const float>(prefilled[i]) : p.logits, p.n_ctx});
            generation_params gp;
            gp.max_tokens = options[i].max_tokens;
            gp.stop = options[i].stop;
            gp.sampling = options[i].sampling;
            params.push_back(std::move(gp));
        }
        auto outs = generate_paths(bc, *lm.vocab, starts, params);
        std::vector<generation_result> results;
        for (std::int32_t i = 0; i < n; ++i) {
            auto& p = paths[static_cast<std::size_t>(i)];
            auto& out = outs[static_cast<std::size_t>(i)];
            const std::size_t n_kept = out.tokens.size() - (out.reason == stop_reason::end_of_generation ? 1 : 0);
            p.history.insert(p.history.end(), out.tokens.begin(), out.tokens.begin() + static_cast<std::ptrdiff_t>(n_kept));
            // Every fed position but the last is copied; the last is decoded again for the logits a
            // continuation samples from.
            const std::int64_t n_fed = bc.n_pos(i);
            bc.seq_export(i, p.target->kv(), n_fed - 1);
            p.target->set_restored_positions(n_fed - 1);
            p.target->decode(std::span(&p.history[static_cast<std::size_t>(n_fed - 1)], 1));
            generation_result r;
            r.text = std::move(out.text);
            r.n_tokens = static_cast<std::int32_t>(out.tokens.size());
            r.reason = out.reason;
            r.stop_string = std::move(out.stop_string);
            results.push_back(std::move(r));
        }
        return results;
    }

    llm lm_;
    std::shared_ptr<context> ctx_;
    std::vector<std::int32_t> history_;
    std::string transcript_;
    mutable std::size_t n_batched_paths_ = 0;
};

}  // namespace minigpt

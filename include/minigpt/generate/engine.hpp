// minigpt::engine: continuous batching. Many requests, from many threads, share one model
// through a fixed pool of slots (sequences decoded at once); requests come and go at any step.
//
// One engine thread owns the batch_context (model/batch_context.hpp) whose sequences are the
// slots. Each step it
//   1. retires cancelled requests (their slot is free at once) and admits waiting ones into free
//      slots, picking the slot whose cached tokens share the longest prefix with the prompt (or
//      forking the sequence of a busier slot that holds a longer one: its blocks are shared
//      copy-on-write, so n answers to one prompt are prefilled and stored once), so only the new
//      suffix of a prompt is computed;
//   2. samples the next token of every decoding request (its own sampler chain, stop strings,
//      max tokens, log-probabilities, streaming callback);
//   3. packs one decode token per running request plus chunks of waiting prompts (oldest first)
//      into one batch of at most `token_budget` tokens and runs it as one forward pass
//      (engine_batch.hpp): the weights are read once per step, not once per request.
// The KV cache is paged: n_slots * n_ctx_slot positions in all (llama-server's -c), each slot
// using at most n_ctx_slot of them.
// Results equal the one-sequence path: the same sampler, stop matcher and stream decoder as
// minigpt::generate, and greedy output is identical to it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/engine_batch.hpp"
#include "minigpt/generate/generation.hpp"
#include "minigpt/generate/logprobs.hpp"
#include "minigpt/generate/sampler.hpp"
#include "minigpt/generate/stop_matcher.hpp"

namespace minigpt {

struct engine_params {
    int n_slots = 1;                   // sequences decoded at once (llama-server's -np)
    std::int64_t n_ctx_slot = 0;       // positions per slot; 0: the model's training context
    std::int64_t token_budget = 512;   // tokens per step: decodes + prompt chunks (llama.cpp's -b)
    std::size_t max_queue = 256;       // waiting requests at most; submit() beyond throws queue_full_error
    int n_threads = 0;                 // 0: physical cores
    dtype kv_type = dtype::f32;
    // Fork another slot's sequence when it shares at least this many more prompt tokens than the
    // best free slot does (a fork shares blocks; only a partly filled last block is ever copied).
    std::int64_t min_copy_tokens = 16;
    std::int64_t kv_block_size = 16;   // positions per KV cache block
};

// The queue is full: try later (an HTTP server answers 503).
class queue_full_error : public error {
public:
    using error::error;
};

// A request that cannot run at all (empty prompt, longer than a slot, bad parameters).
class request_error : public error {
public:
    using error::error;
};

// One generated token as it streams out. `text` may be empty while a UTF-8 character or a possible
// stop string is pending; a final event with token -1 carries held-back text at the end.
struct token_event {
    std::int32_t token = -1;
    std::string_view text;
    const token_logprobs* logprobs = nullptr;  // when the request asked for them
};
// Runs on the engine thread: keep it short. Return false to cancel the request.
using stream_callback = std::function<bool(const token_event&)>;

struct engine_request {
    std::vector<std::int32_t> prompt;  // token ids, BOS included when wanted (engine::tokenize)
    generation_params params;          // max_tokens, stop, sampling, ignore_eos, n_logprobs (add_bos, on_full unused)
    stream_callback on_token;
    // LoRA adapters with their scales for this request (model/lora.hpp); empty: the base model. A
    // slot's cached prefix is reused only by a request with the same adapters and scales.
    std::vector<lora_binding> adapters;
};

struct engine_stats {
    std::uint64_t requests_submitted = 0, requests_finished = 0, requests_cancelled = 0, requests_rejected = 0;
    std::uint64_t prompt_tokens = 0;          // prompt tokens of admitted requests
    std::uint64_t prompt_tokens_evaluated = 0;// of those, computed (the rest came from a cache)
    std::uint64_t generated_tokens = 0;
    std::uint64_t steps = 0;
    std::size_t waiting = 0, running = 0;
    int n_slots = 0;
    std::int64_t kv_positions_used = 0, kv_positions_total = 0;  // over all slots
    std::int64_t kv_bytes_total = 0;
    std::int64_t kv_blocks_used = 0, kv_blocks_total = 0;  // of the paged cache (shared blocks once)
    std::int64_t kv_blocks_shared = 0;        // held by several sequences (forks, reused prompt prefixes)
    std::int64_t kv_block_size = 0;           // positions per block
    std::int64_t kv_bytes_used = 0, kv_bytes_shared = 0;
};

namespace detail {

struct engine_request_state {
    engine_request req;
    std::uint64_t id = 0;
    std::atomic<bool> cancel_flag{false};
    std::chrono::steady_clock::time_point submitted;
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
    generation_output out;
    std::exception_ptr failure;
};

}  // namespace detail

// The caller's side of a submitted request.
class request_handle {
public:
    request_handle() = default;
    explicit request_handle(std::shared_ptr<detail::engine_request_state> s) : s_(std::move(s)) {}

    std::uint64_t id() const { return s_->id; }
    // Stops the request at the next step and frees its slot; wait() then returns what was generated
    // with stop_reason::callback. Safe from any thread, any number of times.
    void cancel() const { s_->cancel_flag = true; }
    bool done() const {
        std::lock_guard<std::mutex> lock(s_->mutex);
        return s_->done;
    }
    // Blocks until the request ends; rethrows what made it fail.
    generation_output wait() const {
        std::unique_lock<std::mutex> lock(s_->mutex);
        s_->done_cv.wait(lock, [&] { return s_->done; });
        if (s_->failure) std::rethrow_exception(s_->failure);
        return s_->out;
    }
    // As wait() with a time limit; nullopt while still running.
    template <class Rep, class Period>
    std::optional<generation_output> wait_for(std::chrono::duration<Rep, Period> d) const {
        std::unique_lock<std::mutex> lock(s_->mutex);
        if (!s_->done_cv.wait_for(lock, d, [&] { return s_->done; })) return std::nullopt;
        if (s_->failure) std::rethrow_exception(s_->failure);
        return s_->out;
    }

private:
    std::shared_ptr<detail::engine_request_state> s_;
};

class engine {
public:
    engine(llm lm, engine_params p = {}) : lm_(std::move(lm)), params_(p) {
        if (!lm_.weights || !lm_.vocab) throw error("engine: model and tokenizer are required");
        if (params_.n_slots < 1 || params_.n_slots > 4096)
            throw error("engine: n_slots must be in [1, 4096], got " + std::to_string(params_.n_slots));
        if (params_.max_queue < 1) throw error("engine: max_queue must be at least 1");
        params_.token_budget = std::max<std::int64_t>(params_.token_budget, params_.n_slots);
        const auto& c = lm_.weights->config();
        // A slot's size as a context's n_ctx defaults (the training context, at most 4096).
        if (params_.n_ctx_slot <= 0) params_.n_ctx_slot = c.n_ctx_train > 0 ? std::min(c.n_ctx_train, k_default_n_ctx) : k_default_n_ctx;
        if (c.learned_positions && params_.n_ctx_slot > c.n_ctx_train)
            throw error("engine: n_ctx_slot " + std::to_string(params_.n_ctx_slot) + " exceeds the " + std::to_string(c.n_ctx_train) +
                        " learned positions of this " + c.arch_name + " model");
        if (params_.n_ctx_slot > (1 << 24)) throw error("engine: n_ctx_slot too large");
        ctx_ = std::make_unique<batch_context>(lm_.weights, batch_context_params{.n_ctx = params_.n_ctx_slot * params_.n_slots,
                                                                                 .n_seq_max = params_.n_slots,
                                                                                 .n_batch = params_.token_budget,
                                                                                 .block_size = params_.kv_block_size,
                                                                                 .kv_type = params_.kv_type,
                                                                                 .n_threads = params_.n_threads});
        slots_.resize(static_cast<std::size_t>(params_.n_slots));
        for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].seq = static_cast<std::int32_t>(i);
        update_kv_stats();
        worker_ = std::thread([this] { run(); });
    }

    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    // Stops the engine thread; requests still queued or running end with stop_reason::callback.
    ~engine() { shutdown(); }

    void shutdown() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) {
                if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
                return;
            }
            stopping_ = true;
        }
        wake_.notify_all();
        if (worker_.joinable()) worker_.join();
    }

    const llm& model() const noexcept { return lm_; }
    const engine_params& params() const noexcept { return params_; }
    std::int64_t n_ctx_slot() const noexcept { return params_.n_ctx_slot; }

    // Text to prompt tokens, with BOS when the vocabulary wants one and `add_bos` allows it.
    std::vector<std::int32_t> tokenize(std::string_view text, bool add_bos = true) const {
        return lm_.vocab->encode(text, add_bos && lm_.vocab->add_bos_default());
    }

    // Queues a request; thread-safe. Throws request_error for a request that can never run and
    // queue_full_error when max_queue requests are already waiting.
    request_handle submit(engine_request r) {
        validate(r);
        auto s = std::make_shared<detail::engine_request_state>();
        s->req = std::move(r);
        s->submitted = std::chrono::steady_clock::now();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) throw error("engine: shut down");
            if (waiting_.size() >= params_.max_queue) {
                ++stats_.requests_rejected;
                throw queue_full_error("engine: " + std::to_string(waiting_.size()) + " requests are already waiting");
            }
            s->id = ++next_id_;
            waiting_.push_back(s);
            ++stats_.requests_submitted;
        }
        wake_.notify_one();
        return request_handle(s);
    }

    // Submits and waits.
    generation_output run_to_completion(engine_request r) { return submit(std::move(r)).wait(); }

    engine_stats stats() const {
        std::lock_guard<std::mutex> lock(mutex_);
        engine_stats s = stats_;
        s.waiting = waiting_.size();
        s.n_slots = params_.n_slots;
        return s;
    }

private:
    struct slot {
        std::int32_t seq = 0;                 // its sequence in ctx_
        std::vector<std::int32_t> cached;     // tokens whose keys/values are in the sequence, in order (== its n_pos)
        std::int64_t logits_index = -1;       // where the last step's logits of this slot are (batch_context::logits_ith)
        std::vector<lora_binding> adapters;   // the adapters its sequence runs (and `cached` was computed) with
        std::vector<float> own_logits;        // (n_vocab) its logits when a step ran several adapter groups (logits_index -2)
        std::shared_ptr<detail::engine_request_state> req;  // null when free
        std::uint64_t last_used = 0;
        // The running request's state:
        std::size_t n_prompt_cached = 0;      // prompt tokens in the cache so far
        bool prefilling = false;
        std::optional<sampler> smp;
        std::optional<stop_matcher> stops;
        std::optional<stream_decoder> decoder;
        std::int32_t n_sampled = 0;
        std::chrono::steady_clock::time_point t_admitted, t_first;
    };

    void validate(const engine_request& r) const {
        if (r.prompt.empty()) throw request_error("engine: empty prompt");
        const auto n_vocab = lm_.weights->config().n_vocab;
        for (std::size_t i = 0; i < r.prompt.size(); ++i)
            if (r.prompt[i] < 0 || r.prompt[i] >= n_vocab)
                throw request_error("engine: prompt token " + std::to_string(i) + " has id " + std::to_string(r.prompt[i]) +
                                    " outside [0, " + std::to_string(n_vocab) + ")");
        if (static_cast<std::int64_t>(r.prompt.size()) >= params_.n_ctx_slot)
            throw request_error("engine: prompt of " + std::to_string(r.prompt.size()) + " tokens does not fit a slot of " +
                                std::to_string(params_.n_ctx_slot) + " positions");
        if (r.params.n_logprobs > 1000) throw request_error("engine: n_logprobs above 1000");
        if (!r.adapters.empty()) {
            try {
                make_projection_deltas(*lm_.weights, r.adapters);  // an adapter of another model, a bad scale
            } catch (const error& e) {
                throw request_error(std::string("engine: ") + e.what());
            }
        }
        sampler probe(r.params.sampling, static_cast<std::int32_t>(n_vocab));  // throws on bad sampling parameters
        stop_matcher stops(r.params.stop);                                      // throws on an empty stop string
    }

    static bool same_adapters(const std::vector<lora_binding>& a, const std::vector<lora_binding>& b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (a[i].adapter != b[i].adapter || a[i].scale != b[i].scale) return false;
        return true;
    }
    // Tokens of `prompt` whose cached keys/values slot s can reuse (none under other adapters).
    static std::size_t reusable(const slot& s, const engine_request& r) {
        return same_adapters(s.adapters, r.adapters) ? common_prefix(s.cached, r.prompt) : 0;
    }

    static std::size_t common_prefix(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
        const std::size_t n = std::min(a.size(), b.size());
        std::size_t i = 0;
        while (i < n && a[i] == b[i]) ++i;
        return i;
    }

    void run() {
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || !waiting_.empty() || n_running_ > 0; });
                if (stopping_) break;
                admit_locked();
            }
            try {
                step();
            } catch (...) {
                // A failure inside the model (out of memory, a bug) ends every running request with it
                // instead of taking the process down.
                const auto e = std::current_exception();
                for (auto& s : slots_)
                    if (s.req) fail(s, e);
            }
        }
        // Shutting down: end everything, queued or running.
        std::deque<std::shared_ptr<detail::engine_request_state>> rest;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            rest.swap(waiting_);
        }
        for (auto& s : slots_)
            if (s.req) finish(s, stop_reason::callback);
        for (auto& r : rest) {
            r->out.reason = stop_reason::callback;
            complete(*r);
        }
    }

    // Moves waiting requests into free slots (under mutex_).
    void admit_locked() {
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            auto& r = *it;
            if (r->cancel_flag) {
                r->out.reason = stop_reason::callback;
                ++stats_.requests_cancelled;
                ++stats_.requests_finished;
                complete(*r);
                it = waiting_.erase(it);
                continue;
            }
            slot* best = nullptr;
            std::size_t best_common = 0;
            for (auto& s : slots_) {
                if (s.req) continue;
                const std::size_t c = reusable(s, r->req);
                if (!best || c > best_common || (c == best_common && s.last_used < best->last_used)) {
                    best = &s;
                    best_common = c;
                }
            }
            if (!best) break;  // no free slot: everything behind waits too (first come, first served)
            // A busy slot may hold (or be about to hold) a longer prefix of this prompt.
            slot* source = nullptr;
            std::size_t source_common = best_common;
            bool wait_for_prefill = false;
            for (auto& s : slots_) {
                if (&s == best) continue;
                const std::size_t c = reusable(s, r->req);
                if (c >= source_common + static_cast<std::size_t>(params_.min_copy_tokens)) {
                    source = &s;
                    source_common = c;
                }
                if (s.req && s.prefilling && same_adapters(s.adapters, r->req.adapters)) {
                    const std::size_t planned = common_prefix(s.req->req.prompt, r->req.prompt);
                    if (planned > s.cached.size() &&
                        planned >= std::max(best_common, source_common) + static_cast<std::size_t>(params_.min_copy_tokens))
                        wait_for_prefill = true;
                }
            }
            if (wait_for_prefill) { ++it; continue; }  // let that prompt finish, then copy its cache
            if (source) {
                ctx_->seq_cp(source->seq, best->seq);  // computed under the request's adapters (reusable())
                best->cached = source->cached;
                best_common = source_common;
            }
            start(*best, r, best_common);
            it = waiting_.erase(it);
        }
    }

    void start(slot& s, std::shared_ptr<detail::engine_request_state> r, std::size_t common) {
        const auto& prompt = r->req.prompt;
        if (common >= prompt.size()) common = prompt.size() - 1;  // one token must be fed for fresh logits
        if (!same_adapters(s.adapters, r->req.adapters)) s.adapters = r->req.adapters;  // validated at submit; common is 0 then
        ctx_->seq_rm(s.seq, static_cast<std::int64_t>(common), -1);  // a tail: always possible
        s.cached.resize(common);
        s.req = std::move(r);
        s.last_used = ++use_clock_;
        s.n_prompt_cached = common;
        s.prefilling = true;
        s.n_sampled = 0;
        s.t_admitted = std::chrono::steady_clock::now();
        const auto& gp = s.req->req.params;
        s.smp.emplace(gp.sampling, static_cast<std::int32_t>(lm_.weights->config().n_vocab));
        for (auto id : prompt) s.smp->accept(id);
        s.stops.emplace(gp.stop);
        s.decoder.emplace(*lm_.vocab, lm_.vocab->decode(prompt).empty());
        s.req->out = generation_output{};
        s.req->out.stats.n_prompt_tokens = static_cast<std::int64_t>(prompt.size());
        ++n_running_;
        ++stats_.running;
        stats_.prompt_tokens += prompt.size();
        stats_.prompt_tokens_evaluated += prompt.size() - common;
    }

    void step() {
        // Retire cancelled requests, then sample one token for every request whose logits are ready.
        std::vector<slot*> decoding;
        for (auto& s : slots_) {
            if (!s.req) continue;
            if (s.req->cancel_flag) { finish(s, stop_reason::callback, true); continue; }
            if (s.prefilling) continue;
            if (s.req->req.params.max_tokens == 0) { finish(s, stop_reason::max_tokens); continue; }
            if (auto id = sample_and_emit(s)) {
                pending_tokens_.push_back(*id);
                decoding.push_back(&s);
            }
        }
        std::vector<batch_item> batch;  // (decode tokens, then prompt chunks)
        for (std::size_t i = 0; i < decoding.size(); ++i)
            batch.push_back({decoding[i]->seq, std::span<const std::int32_t>(&pending_tokens_[i], 1), true, &decoding[i]->cached});
        std::int64_t budget = params_.token_budget - static_cast<std::int64_t>(decoding.size());
        // Prompt chunks, oldest request first, in what is left of the budget.
        std::vector<slot*> prefill;
        for (auto& s : slots_)
            if (s.req && s.prefilling) prefill.push_back(&s);
        std::sort(prefill.begin(), prefill.end(), [](slot* a, slot* b) { return a->req->id < b->req->id; });
        std::vector<slot*> chunk_owner;
        for (slot* s : prefill) {
            if (budget <= 0) break;
            const auto& prompt = s->req->req.prompt;
            const auto n = std::min<std::int64_t>(budget, static_cast<std::int64_t>(prompt.size() - s->n_prompt_cached));
            const bool last = s->n_prompt_cached + static_cast<std::size_t>(n) == prompt.size();
            batch.push_back({s->seq, std::span<const std::int32_t>(prompt).subspan(s->n_prompt_cached, static_cast<std::size_t>(n)),
                             last, &s->cached});
            chunk_owner.push_back(s);
            budget -= n;
        }
        std::vector<slot*> owner(decoding);  // (batch) the slot of each item
        owner.insert(owner.end(), chunk_owner.begin(), chunk_owner.end());
        try {
            run_groups(batch, owner);
        } catch (...) {
            pending_tokens_.clear();
            throw;
        }
        pending_tokens_.clear();
        for (slot* s : chunk_owner) {
            const auto& prompt = s->req->req.prompt;
            s->n_prompt_cached = s->cached.size();
            if (s->n_prompt_cached == prompt.size()) {
                s->prefilling = false;
                s->req->out.stats.prompt_seconds =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - s->t_admitted).count();
            }
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++stats_.steps;
        }
        update_kv_stats();
    }

    // Runs the step's items as one decode per adapter set (one decode when every request runs the
    // same adapters, the usual case), each with its adapters set on the batch_context. With several
    // sets, each slot's logits are copied out before the next decode overwrites them.
    void run_groups(std::vector<batch_item>& batch, const std::vector<slot*>& owner) {
        if (batch.empty()) return;
        std::vector<std::vector<std::size_t>> groups;  // (adapter sets) item indices
        for (std::size_t i = 0; i < batch.size(); ++i) {
            auto g = std::find_if(groups.begin(), groups.end(),
                                  [&](const auto& grp) { return same_adapters(owner[grp.front()]->adapters, owner[i]->adapters); });
            if (g == groups.end()) groups.push_back({i});
            else g->push_back(i);
        }
        for (const auto& grp : groups) {
            const auto& adapters = owner[grp.front()]->adapters;
            if (!same_adapters(ctx_->adapters(), adapters)) ctx_->set_adapters(adapters);
            if (groups.size() == 1) {
                run_batch(*ctx_, batch, scratch_);
                for (std::size_t i = 0; i < batch.size(); ++i) owner[i]->logits_index = batch[i].logits_index;
                return;
            }
            std::vector<batch_item> part;  // (items of this adapter set)
            for (std::size_t i : grp) part.push_back(batch[i]);
            run_batch(*ctx_, part, scratch_);
            for (std::size_t k = 0; k < grp.size(); ++k) {
                slot& s = *owner[grp[k]];
                s.logits_index = -1;
                if (part[k].logits_index < 0) continue;
                const auto l = ctx_->logits_ith(part[k].logits_index);
                s.own_logits.assign(l.begin(), l.end());
                s.logits_index = -2;
            }
        }
    }

    void update_kv_stats() {
        const auto u = ctx_->memory();
        std::int64_t used = 0;
        for (const auto& s : slots_) used += s.req ? ctx_->n_pos(s.seq) : 0;
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.kv_positions_used = used;
        stats_.kv_positions_total = ctx_->n_ctx();
        stats_.kv_bytes_total = u.bytes_total;
        stats_.kv_bytes_used = u.bytes_used;
        stats_.kv_blocks_used = u.blocks_used;
        stats_.kv_blocks_total = u.blocks_total;
        stats_.kv_blocks_shared = u.blocks_shared;
        stats_.kv_block_size = u.block_size;
        stats_.kv_bytes_shared = u.bytes_shared;
    }

    // Samples the slot's next token and streams it. Returns the token to feed next, or nothing when
    // the request ended (its slot is then free).
    std::optional<std::int32_t> sample_and_emit(slot& s) {
        auto& req = *s.req;
        const auto& gp = req.req.params;
        auto& out = req.out;
        const auto logits = s.logits_index == -2 ? std::span<const float>(s.own_logits) : ctx_->logits_ith(s.logits_index);
        const std::int32_t id = s.smp->sample(logits);
        out.tokens.push_back(id);
        ++out.stats.n_generated;
        ++s.n_sampled;
        if (gp.n_logprobs >= 0) out.logprobs.push_back(logprobs_of(logits, id, gp.n_logprobs));
        if (s.n_sampled == 1) {
            s.t_first = std::chrono::steady_clock::now();
            out.stats.time_to_first_token = std::chrono::duration<double>(s.t_first - req.submitted).count();
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++stats_.generated_tokens;
        }
        if (!gp.ignore_eos && lm_.vocab->is_eog(id)) { finish(s, stop_reason::end_of_generation); return std::nullopt; }
        const auto m = s.stops->push(s.decoder->push(id));
        out.text += m.emit;
        bool keep_going = true;
        if (req.req.on_token) {
            try {
                keep_going = req.req.on_token({id, m.emit, gp.n_logprobs >= 0 ? &out.logprobs.back() : nullptr});
            } catch (...) {
                fail(s, std::current_exception());
                return std::nullopt;
            }
        }
        if (m.stopped) {
            out.reason = stop_reason::stop_string;
            out.stop_string = m.matched;
            finish(s, stop_reason::stop_string);
            return std::nullopt;
        }
        if (!keep_going || req.cancel_flag) { finish(s, stop_reason::callback, true); return std::nullopt; }
        if (gp.max_tokens >= 0 && s.n_sampled >= gp.max_tokens) { finish(s, stop_reason::max_tokens); return std::nullopt; }
        if (ctx_->n_pos(s.seq) >= params_.n_ctx_slot) { finish(s, stop_reason::context_full); return std::nullopt; }
        return id;
    }

    // Ends the slot's request: flushes held-back text (as minigpt::generate does), records stats,
    // wakes the waiter and frees the slot. The slot keeps its cache for prefix reuse.
    void finish(slot& s, stop_reason why, bool cancelled = false) {
        // Held until complete() returns: release() drops the slot's reference, and the caller may have
        // dropped its handle (a cancelled stream) or drop it as soon as `done` is set, before notify_all.
        const auto keep = s.req;
        auto& req = *keep;
        auto& out = req.out;
        out.reason = why;
        if (why != stop_reason::stop_string && !cancelled) {
            const auto tail = s.stops->push(s.decoder->flush());
            std::string rest = tail.emit;
            if (tail.stopped) {
                out.reason = stop_reason::stop_string;
                out.stop_string = tail.matched;
            } else {
                rest += s.stops->flush();
            }
            out.text += rest;
            if (!rest.empty() && req.req.on_token) {
                try {
                    req.req.on_token({-1, rest, nullptr});
                } catch (...) {
                }
            }
        }
        if (s.n_sampled > 0)
            out.stats.generation_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.t_first).count();
        release(s, cancelled);
        complete(req);
    }

    void fail(slot& s, std::exception_ptr e) {
        const auto keep = s.req;  // as in finish()
        auto& req = *keep;
        req.failure = e;
        ctx_->seq_rm(s.seq);  // the cache may be partly written: forget it
        s.cached.clear();
        release(s, false);
        complete(req);
    }

    void release(slot& s, bool cancelled) {
        // A prefill cut short leaves a consistent cache (cached tracks it), so nothing to undo.
        s.req.reset();
        s.prefilling = false;
        s.last_used = ++use_clock_;
        std::lock_guard<std::mutex> lock(mutex_);
        --n_running_;
        --stats_.running;
        ++stats_.requests_finished;
        if (cancelled) ++stats_.requests_cancelled;
    }

    static void complete(detail::engine_request_state& r) {
        {
            std::lock_guard<std::mutex> lock(r.mutex);
            r.done = true;
        }
        r.done_cv.notify_all();
    }

    llm lm_;
    engine_params params_;
    std::unique_ptr<batch_context> ctx_;  // every slot's sequence; touched only by the engine thread
    batch scratch_;                    // the batch of a step
    std::vector<slot> slots_;          // (n_slots) touched only by the engine thread
    std::vector<std::int32_t> pending_tokens_;  // (running requests) this step's decode tokens
    std::uint64_t use_clock_ = 0;
    int n_running_ = 0;                // requests in slots (under mutex_: the wait predicate reads it)

    mutable std::mutex mutex_;         // guards waiting_, stats_, stopping_, next_id_
    std::condition_variable wake_;
    std::deque<std::shared_ptr<detail::engine_request_state>> waiting_;
    engine_stats stats_;
    std::uint64_t next_id_ = 0;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace minigpt

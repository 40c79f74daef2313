// The completion cache in the server (`minigpt serve --cache FILE|redis://HOST:PORT`): a request
// whose every choice was answered before is served from the cache (frugal/completion_cache.hpp)
// without submitting anything to the engine, so no forward pass runs; any other request runs in
// the engine as usual and each finished choice is stored.
//
// Choice i of a request is keyed as the server submits it: prompt i / n, and with a seed, seed + i % n
// (http_server gives the k-th choice of a prompt the seed + k). A request is all-or-nothing: when one
// of its choices misses, every choice is generated (n > 1 with a partly filled cache is rare, and a
// request never mixes answers of different runs). Not cached: sampled requests without a seed (not
// reproducible), requests asking for logprobs (the cache keeps the chosen tokens, not the
// alternatives), and choices that did not finish by themselves (cancelled, or cut by the slot's
// context, which depends on the server's -c, not on the request). A damaged entry is never served:
// the lookup's error is counted (minigpt_cache_errors_total), printed on stderr, and the request is
// generated instead; a failing store is counted and printed the same way.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "minigpt/frugal/completion_cache.hpp"
#include "minigpt/serve/openai_api.hpp"

namespace minigpt::serve {

class response_cache {
public:
    response_cache(std::shared_ptr<frugal::completion_cache> cache, std::string model_fingerprint, std::string where)
        : cache_(std::move(cache)), fingerprint_(std::move(model_fingerprint)), where_(std::move(where)) {
        if (!cache_) throw error("response_cache: null completion cache");
    }

    const std::string& where() const noexcept { return where_; }

    // The cache key of choice `index` (prompt-major, as the server submits them).
    frugal::completion_request choice_request(const api_request& r, std::size_t index) const {
        const auto n = static_cast<std::size_t>(r.n);
        frugal::completion_request q{fingerprint_, r.adapter_ids, r.prompts.at(index / n), r.params};
        if (q.params.sampling.seed != k_random_seed) q.params.sampling.seed += static_cast<std::uint64_t>(index % n);
        return q;
    }

    bool cacheable(const api_request& r) const { return !r.want_logprobs && frugal::is_reproducible(r.params); }

    // Every choice's stored output (prompt-major), or nothing.
    std::optional<std::vector<generation_output>> lookup(const api_request& r) {
        const std::size_t n_choices = r.prompts.size() * static_cast<std::size_t>(r.n);
        if (!cacheable(r)) {
            bypassed_ += n_choices;
            return std::nullopt;
        }
        std::vector<generation_output> outputs;  // (n_choices)
        try {
            for (std::size_t i = 0; i < n_choices; ++i) {
                const auto q = choice_request(r, i);
                auto c = cache_->lookup(q);
                if (!c) break;
                generation_output o;
                o.text = std::move(c->text);
                o.tokens = std::move(c->tokens);
                o.reason = c->reason;
                o.stop_string = std::move(c->stop_string);
                o.stats.n_prompt_tokens = static_cast<std::int64_t>(q.prompt_tokens.size());  // usage counts the request's prompt
                o.stats.n_generated = static_cast<std::int64_t>(o.tokens.size());
                outputs.push_back(std::move(o));
            }
        } catch (const std::exception& e) {
            ++errors_;
            std::fprintf(stderr, "minigpt serve: completion cache %s: %s (generating instead)\n", where_.c_str(), e.what());
            outputs.clear();
        }
        if (outputs.size() != n_choices) {
            misses_ += n_choices;
            return std::nullopt;
        }
        hits_ += n_choices;
        return outputs;
    }

    // Stores the outputs of a request that ran in the engine (prompt-major, every choice).
    void store(const api_request& r, const std::vector<generation_output>& outputs) {
        if (!cacheable(r) || outputs.size() != r.prompts.size() * static_cast<std::size_t>(r.n)) return;
        try {
            for (std::size_t i = 0; i < outputs.size(); ++i) {
                const auto& o = outputs[i];
                if (o.reason == stop_reason::callback || o.reason == stop_reason::context_full) continue;
                frugal::completion c;
                c.text = o.text;
                c.tokens = o.tokens;
                c.reason = o.reason;
                c.stop_string = o.stop_string;
                c.stats = o.stats;
                cache_->store(choice_request(r, i), c);
                ++stores_;
            }
        } catch (const std::exception& e) {
            ++errors_;
            std::fprintf(stderr, "minigpt serve: completion cache %s: storing failed: %s\n", where_.c_str(), e.what());
        }
    }

    // Prometheus lines for GET /metrics (counts of choices).
    std::string metrics_text() const {
        std::string out;
        auto metric = [&](const char* name, const char* help, std::uint64_t value) {
            out += std::string("# HELP minigpt_") + name + " " + help + "\n# TYPE minigpt_" + name + " counter\nminigpt_" + name + " " +
                   std::to_string(value) + "\n";
        };
        metric("cache_hits_total", "Choices answered from the completion cache (no forward pass).", hits_.load());
        metric("cache_misses_total", "Cacheable choices not in the completion cache (generated, then stored).", misses_.load());
        metric("cache_bypassed_total", "Choices the completion cache does not keep (no seed while sampling, or logprobs).",
               bypassed_.load());
        metric("cache_stores_total", "Completions written to the completion cache.", stores_.load());
        metric("cache_errors_total", "Completion cache failures (damaged entry or backend error); the request was generated.",
               errors_.load());
        return out;
    }

private:
    std::shared_ptr<frugal::completion_cache> cache_;
    std::string fingerprint_, where_;
    std::atomic<std::uint64_t> hits_{0}, misses_{0}, bypassed_{0}, stores_{0}, errors_{0};
};

// A whole server-sent-events body for outputs already known (a cache hit): per choice one chunk
// with its text (the first chunk of a chat choice carries the role) and one with its finish reason,
// then the usage chunk when asked, then [DONE]. The concatenated texts equal the non-streamed ones.
inline std::string cached_stream_body(const api_request& r, const std::vector<generation_output>& outputs, const std::string& id,
                                      std::int64_t created, const std::string& model) {
    std::string body;
    auto frame = [&](const std::string& payload) { body += "data: " + payload + "\n\n"; };
    std::int64_t n_prompt = 0, n_completion = 0;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        const auto& o = outputs[i];
        const bool has_text = !o.text.empty();
        if (has_text) frame(chunk_json(r, id, created, model, i, &o.text, nullptr, nullptr, r.chat).dump());
        frame(chunk_json(r, id, created, model, i, nullptr, nullptr, finish_reason(o.reason), r.chat && !has_text).dump());
        if (i % static_cast<std::size_t>(r.n) == 0) n_prompt += o.stats.n_prompt_tokens;
        n_completion += static_cast<std::int64_t>(o.tokens.size());
    }
    if (r.stream_usage)
        frame(json{{"id", id}, {"object", r.chat ? "chat.completion.chunk" : "text_completion"}, {"created", created}, {"model", model},
                   {"choices", json::array()}, {"usage", usage_json(n_prompt, n_completion)}}.dump());
    frame("[DONE]");
    return body;
}

}  // namespace minigpt::serve

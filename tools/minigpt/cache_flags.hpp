// The --cache (completion cache, frugal/completion_cache.hpp) and --prompt-cache (prompt KV file,
// generate/prompt_cache.hpp) flags of `minigpt generate`: generate_cached() stands in for
// generate_from_tokens() and applies whichever of the two was asked for.
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "command.hpp"
#include "minigpt/frugal/completion_cache.hpp"
#include "minigpt/generate/prompt_cache.hpp"
#ifdef MINIGPT_HAVE_SQLITE
#include "minigpt/frugal/cache_sqlite.hpp"
#endif
#ifdef MINIGPT_HAVE_REDIS
#include "minigpt/frugal/cache_redis.hpp"
#endif

namespace minigpt::tool {

inline void declare_cache_flags(flags& f) {
    f.value({"--cache"}, "completion cache: an SQLite FILE or redis://HOST:PORT; identical requests are answered from it")
        .value({"--cache-ttl"}, "seconds a cached completion stays valid (0: forever)", "0")
        .value({"--prompt-cache"}, "file holding the prompt's KV state: restored when the prompt starts the same, saved after");
}

struct cache_state {
    std::unique_ptr<frugal::completion_cache> cache;
    bool used = false;
    std::int64_t n_restored = -1;  // positions restored from --prompt-cache (-1: not used)
};

inline std::unique_ptr<frugal::completion_cache> open_completion_cache(const std::string& where, double ttl) {
    if (where.rfind("redis://", 0) == 0) {
#ifdef MINIGPT_HAVE_REDIS
        frugal::redis_cache_options o;
        o.ttl_seconds = ttl;
        return std::make_unique<frugal::completion_cache>(std::make_unique<frugal::redis_cache>(where, o));
#else
        throw usage_error("--cache redis://...: this minigpt was built without hiredis (libhiredis-dev)");
#endif
    }
#ifdef MINIGPT_HAVE_SQLITE
    frugal::sqlite_cache_options o;
    o.ttl_seconds = ttl;
    return std::make_unique<frugal::completion_cache>(std::make_unique<frugal::sqlite_cache>(where, o));
#else
    (void)ttl;
    throw usage_error("--cache FILE: this minigpt was built without SQLite (libsqlite3-dev)");
#endif
}

inline generation_output generate_cached(const flags& f, cache_state& st, const llm& lm, context& ctx, std::vector<std::int32_t>& history,
                                         const std::vector<std::int32_t>& prompt_ids, const generation_params& gp, sampler& smp,
                                         const token_callback& cb, std::vector<std::string> adapters = {}) {
    frugal::completion_request req;
    if (f.has("--cache")) {
        st.cache = open_completion_cache(f.str("--cache"), f.real("--cache-ttl"));
        st.used = true;
        req = {lm.weights->fingerprint(), std::move(adapters), prompt_ids, gp};
        if (auto hit = st.cache->lookup(req)) {
            for (auto id : hit->tokens) cb(id, {});
            cb(-1, hit->text);
            generation_output out;
            out.text = hit->text;
            out.tokens = hit->tokens;
            out.reason = hit->reason;
            out.stop_string = hit->stop_string;
            out.stats.n_generated = static_cast<std::int64_t>(hit->tokens.size());  // no prompt evaluated, no time spent
            return out;
        }
    }
    std::span<const std::int32_t> rest(prompt_ids);
    const std::string kv_file = f.str("--prompt-cache");
    if (!kv_file.empty() && std::filesystem::exists(kv_file)) {
        const auto info = load_prompt_cache(kv_file, ctx, prompt_ids);
        st.n_restored = info.n_restored;
        history.assign(prompt_ids.begin(), prompt_ids.begin() + info.n_restored);
        for (auto id : history) smp.accept(id);
        rest = rest.subspan(static_cast<std::size_t>(info.n_restored));
    } else if (!kv_file.empty()) {
        st.n_restored = 0;
    }
    // Generate, recording log-probabilities for the completion cache.
    frugal::completion c;
    auto out = generate_from_tokens(ctx, *lm.vocab, history, rest, gp, smp, [&](std::int32_t id, std::string_view text) {
        if (st.cache && id >= 0) {
            const auto row = ctx.logits(0);
            double mx = -INFINITY, s = 0;
            for (float v : row) mx = std::max(mx, double(v));
            for (float v : row) s += std::exp(double(v) - mx);
            c.logprobs.push_back(static_cast<float>(double(row[static_cast<std::size_t>(id)]) - mx - std::log(s)));
        }
        return cb(id, text);
    });
    // Saved only when the context still holds the prompt at positions 0.. (no context shift happened).
    if (!kv_file.empty() && ctx.n_past() >= static_cast<std::int64_t>(prompt_ids.size()) && history.size() >= prompt_ids.size() &&
        std::equal(prompt_ids.begin(), prompt_ids.end(), history.begin()))
        save_prompt_cache(kv_file, ctx, prompt_ids);
    if (st.cache) {
        if (c.logprobs.size() + 1 == out.tokens.size() && out.reason == stop_reason::end_of_generation) {
            const auto row = ctx.logits(0);
            double mx = -INFINITY, s = 0;
            for (float v : row) mx = std::max(mx, double(v));
            for (float v : row) s += std::exp(double(v) - mx);
            c.logprobs.push_back(static_cast<float>(double(row[static_cast<std::size_t>(out.tokens.back())]) - mx - std::log(s)));
        }
        if (c.logprobs.size() != out.tokens.size()) c.logprobs.clear();
        c.text = out.text;
        c.tokens = out.tokens;
        c.reason = out.reason;
        c.stop_string = out.stop_string;
        c.stats = out.stats;
        st.cache->store(req, c);
    }
    return out;
}

inline void print_cache_stats(const cache_state& st) {
    if (st.used) {
        const auto s = st.cache->stats();
        std::fprintf(stderr, "cache: %llu %s, %llu %s (%s)\n", static_cast<unsigned long long>(s.hits), s.hits == 1 ? "hit" : "hits",
                     static_cast<unsigned long long>(s.misses), s.misses == 1 ? "miss" : "misses",
                     s.bypassed ? "not used: a sampled request with a random seed is not reproducible; give --seed" : "completion cache");
    }
    if (st.n_restored >= 0) std::fprintf(stderr, "prompt cache: %lld positions restored\n", static_cast<long long>(st.n_restored));
}

}  // namespace minigpt::tool

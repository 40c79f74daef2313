// Completion cache (FrugalGPT's first idea): a request already answered is served from storage
// instead of running the model again.
//
// Key: everything that decides the output, in a canonical binary encoding — the model fingerprint,
// the adapter set (sorted, so order does not matter), the exact prompt token ids, every sampling
// parameter including the seed and the logit biases, and the generation limits (max tokens, stop
// strings, EOS and context-full handling). Two requests share an entry only if all of it is equal;
// entries hold their full key and lookups compare it, so a hash collision can never return another
// request's answer. A greedy request (temperature <= 0) cannot depend on the seed, so its seed is
// written as 0; a sampled request with the "random seed" value is not reproducible and is neither
// read nor stored unless the caller sets `reuse_random_seed`.
// Value: the completion — text, token ids, per-token log-probabilities, stop reason and string,
// and the stats of the run that produced it — in a versioned binary record with a checksum; a
// damaged record is an error naming the field and offset, never a wrong answer.
// Backends (cache_backend): SQLite (frugal/cache_sqlite.hpp, one file, WAL) and Redis
// (frugal/cache_redis.hpp). Each needs its library only in programs that include its header.
// Semantic match (off by default): with an embedding function and a cosine threshold, a miss is
// followed by a scan of the entries with the same model, adapters and parameters ("scope"), and the
// most similar prompt at or above the threshold answers; hits of this kind are counted apart.
#pragma once

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/generation.hpp"

namespace minigpt::frugal {

// Little-endian byte writer / bounds-checked reader for keys and records.
class byte_writer {
public:
    template <class T> void pod(T v) {
        static_assert(std::is_trivially_copyable_v<T>);
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        out_.append(b, sizeof(T));
    }
    void str(std::string_view s) { pod<std::uint64_t>(s.size()); out_.append(s); }
    template <class T> void vec(std::span<const T> v) {
        pod<std::uint64_t>(v.size());
        out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
    }
    std::string& bytes() { return out_; }

private:
    std::string out_;
};

class byte_reader {
public:
    byte_reader(std::string_view data, std::string origin) : data_(data), origin_(std::move(origin)) {}
    template <class T> T pod(const char* field) {
        need(sizeof(T), field);
        T v;
        std::memcpy(&v, data_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string str(const char* field) {
        const auto n = count(1, field);
        std::string s(data_.substr(pos_, n));
        pos_ += n;
        return s;
    }
    template <class T> std::vector<T> vec(const char* field) {
        const auto n = count(sizeof(T), field);
        std::vector<T> v(n);
        if (n) std::memcpy(v.data(), data_.data() + pos_, n * sizeof(T));
        pos_ += n * sizeof(T);
        return v;
    }
    std::size_t offset() const { return pos_; }
    std::size_t remaining() const { return data_.size() - pos_; }
    [[noreturn]] void fail(const std::string& what) const { throw format_error(origin_, pos_, what); }

private:
    void need(std::size_t n, const char* field) {
        if (data_.size() - pos_ < n) fail(std::string("truncated ") + field + " (" + std::to_string(n) + " bytes needed, " +
                                          std::to_string(data_.size() - pos_) + " left)");
    }
    std::size_t count(std::size_t elem, const char* field) {
        const auto n = pod<std::uint64_t>(field);
        if (n > (data_.size() - pos_) / elem) fail(std::string(field) + ": count " + std::to_string(n) + " exceeds the record");
        return static_cast<std::size_t>(n);
    }
    std::string_view data_;
    std::string origin_;
    std::size_t pos_ = 0;
};

inline std::uint64_t fnv1a64(std::string_view s, std::uint64_t h = 1469598103934665603ull) {
    for (unsigned char c : s) { h ^= c; h *= 1099511628211ull; }
    return h;
}

inline std::string hex64(std::uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
    return b;
}

// A 128-bit digest as 32 hex characters (two FNV-1a passes with different offsets): names Redis keys;
// correctness never rests on it, the full key is compared.
inline std::string digest_hex(std::string_view s) { return hex64(fnv1a64(s)) + hex64(fnv1a64(s, 0x84222325cbf29ce4ull ^ s.size())); }

struct completion_request {
    std::string model_fingerprint;
    std::vector<std::string> adapters;       // adapter identities (e.g. file + scale); order-free
    std::vector<std::int32_t> prompt_tokens;
    generation_params params;
};

struct completion_key {
    std::string bytes;  // the whole key, canonical
    std::string scope;  // the key without the prompt (semantic matches stay within a scope)
};

inline bool is_reproducible(const generation_params& p) {
    return p.sampling.temperature <= 0.0f || p.sampling.seed != k_random_seed;
}

inline completion_key make_key(const completion_request& r) {
    byte_writer w;
    w.str("minigpt-completion-key-v1");
    w.str(r.model_fingerprint);
    auto adapters = r.adapters;
    std::sort(adapters.begin(), adapters.end());
    w.pod<std::uint64_t>(adapters.size());
    for (const auto& a : adapters) w.str(a);
    const auto& p = r.params;
    const auto& s = p.sampling;
    w.pod<std::int32_t>(p.max_tokens);
    w.pod<std::uint64_t>(p.stop.size());
    for (const auto& st : p.stop) w.str(st);
    w.pod<std::uint8_t>(p.add_bos);
    w.pod<std::uint8_t>(p.ignore_eos);
    w.pod<std::uint8_t>(static_cast<std::uint8_t>(p.on_full));
    w.pod<std::int32_t>(p.n_keep);
    w.pod<float>(s.temperature);
    w.pod<std::int32_t>(s.top_k);
    w.pod<float>(s.top_p);
    w.pod<float>(s.min_p);
    w.pod<float>(s.typical_p);
    w.pod<float>(s.repeat_penalty);
    w.pod<float>(s.frequency_penalty);
    w.pod<float>(s.presence_penalty);
    w.pod<std::int32_t>(s.penalty_last_n);
    w.pod<std::uint64_t>(s.temperature <= 0.0f ? 0 : s.seed);  // greedy output does not depend on the seed
    w.pod<std::uint64_t>(s.logit_bias.size());
    for (const auto& [id, bias] : s.logit_bias) { w.pod<std::int32_t>(id); w.pod<float>(bias); }
    completion_key k;
    k.scope = w.bytes();
    w.vec<std::int32_t>(r.prompt_tokens);
    k.bytes = std::move(w.bytes());
    return k;
}

// What a cache entry holds.
struct completion {
    std::string text;
    std::vector<std::int32_t> tokens;
    std::vector<float> logprobs;             // natural log-probability of each generated token under the model
    stop_reason reason = stop_reason::max_tokens;
    std::string stop_string;
    generation_stats stats;                  // of the run that produced it
    bool from_cache = false;                 // set on a hit (not stored)
    bool semantic = false;                   // the hit came from a similar, not identical, prompt

    double mean_logprob() const {
        if (logprobs.empty()) return 0.0;
        double s = 0;
        for (float l : logprobs) s += l;
        return s / static_cast<double>(logprobs.size());
    }
};

inline constexpr std::uint32_t k_record_magic = 0x5643474d;  // "MGCV"
inline constexpr std::uint32_t k_record_version = 1;

// Record: magic, version, key, completion fields, checksum of everything before it.
inline std::string encode_record(const completion_key& key, const completion& c) {
    byte_writer w;
    w.pod(k_record_magic);
    w.pod(k_record_version);
    w.str(key.bytes);
    w.str(c.text);
    w.vec<std::int32_t>(c.tokens);
    w.vec<float>(c.logprobs);
    w.pod<std::uint8_t>(static_cast<std::uint8_t>(c.reason));
    w.str(c.stop_string);
    w.pod<std::int64_t>(c.stats.n_prompt_tokens);
    w.pod<std::int64_t>(c.stats.n_generated);
    w.pod<double>(c.stats.prompt_seconds);
    w.pod<double>(c.stats.generation_seconds);
    w.pod<double>(c.stats.time_to_first_token);
    w.pod<std::uint64_t>(fnv1a64(w.bytes()));
    return std::move(w.bytes());
}

// Decodes a record; `origin` names the store and entry in errors. Returns the key it was stored under.
inline std::pair<std::string, completion> decode_record(std::string_view data, const std::string& origin) {
    byte_reader r(data, origin);
    if (r.pod<std::uint32_t>("magic") != k_record_magic) r.fail("not a minigpt completion record (bad magic)");
    const auto version = r.pod<std::uint32_t>("version");
    if (version != k_record_version) r.fail("unsupported record version " + std::to_string(version));
    std::pair<std::string, completion> out;
    out.first = r.str("key");
    auto& c = out.second;
    c.text = r.str("text");
    c.tokens = r.vec<std::int32_t>("tokens");
    c.logprobs = r.vec<float>("logprobs");
    if (!c.logprobs.empty() && c.logprobs.size() != c.tokens.size()) r.fail("logprobs count differs from tokens count");
    const auto reason = r.pod<std::uint8_t>("stop reason");
    if (reason > static_cast<std::uint8_t>(stop_reason::context_full)) r.fail("stop reason " + std::to_string(reason) + " unknown");
    c.reason = static_cast<stop_reason>(reason);
    c.stop_string = r.str("stop string");
    c.stats.n_prompt_tokens = r.pod<std::int64_t>("stats");
    c.stats.n_generated = r.pod<std::int64_t>("stats");
    c.stats.prompt_seconds = r.pod<double>("stats");
    c.stats.generation_seconds = r.pod<double>("stats");
    c.stats.time_to_first_token = r.pod<double>("stats");
    const std::size_t body = r.offset();
    const auto sum = r.pod<std::uint64_t>("checksum");
    if (sum != fnv1a64(data.substr(0, body))) throw format_error(origin, body, "checksum mismatch: the record is damaged");
    if (r.remaining() != 0) r.fail(std::to_string(r.remaining()) + " bytes after the record");
    return out;
}

struct cache_candidate {
    std::string record;
    std::vector<float> embedding;
};

// Storage of encoded records. Implementations are safe to call from several threads.
class cache_backend {
public:
    virtual ~cache_backend() = default;
    // The record stored under exactly this key, or nothing (expired entries are nothing).
    virtual std::optional<std::string> get(const completion_key& key) = 0;
    // Stores a record (replacing one with the same key) with an optional prompt embedding, then evicts.
    virtual void put(const completion_key& key, const std::string& record, std::span<const float> embedding) = 0;
    // Records with an embedding in this scope (for semantic matching).
    virtual std::vector<cache_candidate> scope_candidates(const std::string& scope) = 0;
    virtual std::string name() const = 0;
};

struct cache_stats {
    std::uint64_t hits = 0, semantic_hits = 0, misses = 0, bypassed = 0, stores = 0;
};

struct cache_options {
    bool reuse_random_seed = false;         // serve and store sampled requests with the random-seed value
    // Semantic match: on when both are set. The embedding is of the prompt text the caller passes.
    std::function<std::vector<float>(std::string_view)> embed;
    double semantic_threshold = 0;          // cosine at or above which a similar prompt's answer is reused
};

inline double cosine(std::span<const float> a, std::span<const float> b) {
    if (a.size() != b.size() || a.empty()) return -2;
    double dot = 0, na = 0, nb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) { dot += double(a[i]) * b[i]; na += double(a[i]) * a[i]; nb += double(b[i]) * b[i]; }
    return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : -2;
}

class completion_cache {
public:
    explicit completion_cache(std::unique_ptr<cache_backend> backend, cache_options options = {})
        : backend_(std::move(backend)), options_(std::move(options)) {
        if (!backend_) throw error("completion_cache: null backend");
        if (options_.embed && !(options_.semantic_threshold > -1 && options_.semantic_threshold <= 1))
            throw error("completion_cache: semantic threshold must be in (-1, 1]");
    }

    // The cached completion for a request, or nothing. `prompt_text` is only needed for semantic matching.
    std::optional<completion> lookup(const completion_request& req, std::string_view prompt_text = {}) {
        if (!cacheable(req)) { ++bypassed_; return std::nullopt; }
        const auto key = make_key(req);
        if (auto rec = backend_->get(key)) {
            auto [stored_key, c] = decode_record(*rec, backend_->name() + " entry " + digest_hex(key.bytes));
            if (stored_key == key.bytes) {
                c.from_cache = true;
                ++hits_;
                return c;
            }
        }
        if (semantic_on() && !prompt_text.empty()) {
            const auto e = options_.embed(prompt_text);
            double best = -2;
            std::optional<completion> found;
            for (const auto& cand : backend_->scope_candidates(key.scope)) {
                const double cs = cosine(e, cand.embedding);
                if (cs >= options_.semantic_threshold && cs > best) {
                    auto [stored_key, c] = decode_record(cand.record, backend_->name() + " entry (semantic scan)");
                    if (stored_key.compare(0, key.scope.size(), key.scope) != 0) continue;
                    best = cs;
                    found = std::move(c);
                }
            }
            if (found) {
                found->from_cache = true;
                found->semantic = true;
                ++semantic_hits_;
                return found;
            }
        }
        ++misses_;
        return std::nullopt;
    }

    void store(const completion_request& req, const completion& c, std::string_view prompt_text = {}) {
        if (!cacheable(req)) return;
        const auto key = make_key(req);
        std::vector<float> e;
        if (semantic_on() && !prompt_text.empty()) e = options_.embed(prompt_text);
        backend_->put(key, encode_record(key, c), e);
        ++stores_;
    }

    // Looks up, else runs `produce` and stores its result.
    completion get_or_generate(const completion_request& req, const std::function<completion()>& produce,
                               std::string_view prompt_text = {}) {
        if (auto c = lookup(req, prompt_text)) return *c;
        completion c = produce();
        store(req, c, prompt_text);
        return c;
    }

    cache_stats stats() const { return {hits_.load(), semantic_hits_.load(), misses_.load(), bypassed_.load(), stores_.load()}; }
    cache_backend& backend() { return *backend_; }

private:
    bool semantic_on() const { return options_.embed && options_.semantic_threshold > -1; }
    bool cacheable(const completion_request& r) const { return options_.reuse_random_seed || is_reproducible(r.params); }

    std::unique_ptr<cache_backend> backend_;
    cache_options options_;
    std::atomic<std::uint64_t> hits_{0}, semantic_hits_{0}, misses_{0}, bypassed_{0}, stores_{0};
};

// Generates with `generate_from_tokens` on a fresh context position and records each token's
// log-probability under the model (log-softmax of the raw logits it was sampled from).
inline completion generate_completion(const llm& lm, context& ctx, std::span<const std::int32_t> prompt_tokens,
                                      const generation_params& params, const token_callback& on_token = {}) {
    std::vector<std::int32_t> history;
    sampler smp(params.sampling, static_cast<std::int32_t>(ctx.n_vocab()));
    completion c;
    auto logprob_of = [&](std::int32_t id) {
        const auto row = ctx.logits(0);  // the logits `id` was sampled from (decode of id comes after the callback)
        double mx = -INFINITY;
        for (float v : row) mx = std::max(mx, double(v));
        double s = 0;
        for (float v : row) s += std::exp(double(v) - mx);
        return static_cast<float>(double(row[static_cast<std::size_t>(id)]) - mx - std::log(s));
    };
    auto out = generate_from_tokens(ctx, *lm.vocab, history, prompt_tokens, params, smp, [&](std::int32_t id, std::string_view t) {
        if (id >= 0) c.logprobs.push_back(logprob_of(id));
        return !on_token || on_token(id, t);
    });
    // An end-of-generation token ends the loop before the callback sees it; its logits are still the context's.
    if (out.reason == stop_reason::end_of_generation && c.logprobs.size() + 1 == out.tokens.size())
        c.logprobs.push_back(logprob_of(out.tokens.back()));
    if (c.logprobs.size() != out.tokens.size()) c.logprobs.clear();  // a context shift re-decoded: not reliable
    c.text = std::move(out.text);
    c.tokens = std::move(out.tokens);
    c.reason = out.reason;
    c.stop_string = std::move(out.stop_string);
    c.stats = out.stats;
    return c;
}

}  // namespace minigpt::frugal

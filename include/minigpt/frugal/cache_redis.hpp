// Redis backend of the completion cache (frugal/completion_cache.hpp), for several processes or
// machines sharing one cache: `redis://HOST:PORT` (optionally `/DB`).
//
// Entries: "<prefix>e:<digest of key>" holds the record (which carries its full key, compared on
// every lookup, so a digest collision is a miss, never another request's answer); with an embedding,
// "<prefix>v:<digest>" holds it and the digest joins the set "<prefix>s:<digest of scope>".
// TTL: Redis's own expiry (SET ... PX); the size limit is the server's maxmemory with an LRU policy,
// which evicts whole keys. One connection per object, serialised by a mutex; every reply is checked.
// Link: programs that include this header link hiredis (CMake target minigpt::redis).
#pragma once

#include <hiredis/hiredis.h>

#include <mutex>

#include "minigpt/frugal/completion_cache.hpp"

namespace minigpt::frugal {

struct redis_cache_options {
    double ttl_seconds = 0;           // 0: entries never expire (Redis keeps millisecond expiry)
    std::string prefix = "minigpt:cc:";
    double connect_timeout_s = 5;
};

struct redis_address {
    std::string host;
    int port = 6379;
    int db = 0;
};

// Parses redis://HOST[:PORT][/DB].
inline redis_address parse_redis_url(std::string_view url) {
    constexpr std::string_view scheme = "redis://";
    if (url.substr(0, scheme.size()) != scheme) throw error("'" + std::string(url) + "' is not a redis:// URL");
    std::string rest(url.substr(scheme.size()));
    redis_address a;
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        const std::string db = rest.substr(slash + 1);
        rest.resize(slash);
        if (!db.empty()) {
            if (db.size() > 4 || db.find_first_not_of("0123456789") != std::string::npos) throw error("redis URL: bad database '" + db + "'");
            a.db = std::stoi(db);
        }
    }
    if (auto colon = rest.rfind(':'); colon != std::string::npos) {
        const std::string port = rest.substr(colon + 1);
        if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535)
            throw error("redis URL: bad port '" + port + "'");
        a.port = std::stoi(port);
        rest.resize(colon);
    }
    if (rest.empty()) throw error("redis URL '" + std::string(url) + "' has no host");
    a.host = rest;
    return a;
}

class redis_cache final : public cache_backend {
public:
    explicit redis_cache(const redis_address& address, redis_cache_options options = {}) : options_(std::move(options)) {
        name_ = "redis://" + address.host + ":" + std::to_string(address.port);
        timeval tv{static_cast<time_t>(options_.connect_timeout_s), static_cast<suseconds_t>((options_.connect_timeout_s - static_cast<time_t>(options_.connect_timeout_s)) * 1e6)};
        ctx_ = redisConnectWithTimeout(address.host.c_str(), address.port, tv);
        if (!ctx_ || ctx_->err) {
            const std::string msg = ctx_ ? ctx_->errstr : "out of memory";
            if (ctx_) redisFree(ctx_);
            throw io_error(name_ + ": cannot connect: " + msg);
        }
        redisSetTimeout(ctx_, tv);
        if (address.db != 0) command_ok({"SELECT", std::to_string(address.db)}, "selecting the database");
    }
    explicit redis_cache(std::string_view url, redis_cache_options options = {}) : redis_cache(parse_redis_url(url), std::move(options)) {}
    ~redis_cache() override {
        if (ctx_) redisFree(ctx_);
    }
    redis_cache(const redis_cache&) = delete;
    redis_cache& operator=(const redis_cache&) = delete;

    std::optional<std::string> get(const completion_key& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        reply r = command({"GET", entry_key(key.bytes)}, "looking up");
        if (r->type == REDIS_REPLY_NIL) return std::nullopt;
        if (r->type != REDIS_REPLY_STRING) bad_reply(r, "looking up");
        return std::string(r->str, r->len);
    }

    void put(const completion_key& key, const std::string& record, std::span<const float> embedding) override {
        std::lock_guard<std::mutex> lock(mutex_);
        const std::string d = digest_hex(key.bytes);
        std::vector<std::string> set = {"SET", options_.prefix + "e:" + d, record};
        if (options_.ttl_seconds > 0) { set.push_back("PX"); set.push_back(ttl_ms()); }
        command_ok(set, "storing");
        if (!embedding.empty()) {
            std::vector<std::string> sv = {"SET", options_.prefix + "v:" + d,
                                           std::string(reinterpret_cast<const char*>(embedding.data()), embedding.size_bytes())};
            if (options_.ttl_seconds > 0) { sv.push_back("PX"); sv.push_back(ttl_ms()); }
            command_ok(sv, "storing the embedding");
            reply r = command({"SADD", options_.prefix + "s:" + digest_hex(key.scope), d}, "indexing the scope");
            if (r->type != REDIS_REPLY_INTEGER) bad_reply(r, "indexing the scope");
        }
    }

    std::vector<cache_candidate> scope_candidates(const std::string& scope) override {
        std::lock_guard<std::mutex> lock(mutex_);
        reply members = command({"SMEMBERS", options_.prefix + "s:" + digest_hex(scope)}, "scanning");
        if (members->type != REDIS_REPLY_ARRAY) bad_reply(members, "scanning");
        std::vector<cache_candidate> out;
        for (std::size_t i = 0; i < members->elements; ++i) {
            const auto* m = members->element[i];
            if (m->type != REDIS_REPLY_STRING) bad_reply(members, "scanning");
            const std::string d(m->str, m->len);
            reply rec = command({"GET", options_.prefix + "e:" + d}, "scanning");
            reply emb = command({"GET", options_.prefix + "v:" + d}, "scanning");
            if (rec->type == REDIS_REPLY_NIL || emb->type == REDIS_REPLY_NIL) continue;  // expired or evicted
            if (rec->type != REDIS_REPLY_STRING || emb->type != REDIS_REPLY_STRING || emb->len % sizeof(float) != 0)
                bad_reply(emb, "scanning");
            cache_candidate c;
            c.record.assign(rec->str, rec->len);
            c.embedding.resize(emb->len / sizeof(float));
            std::memcpy(c.embedding.data(), emb->str, emb->len);
            out.push_back(std::move(c));
        }
        return out;
    }

    std::string name() const override { return name_; }

private:
    struct reply_deleter {
        void operator()(redisReply* r) const { freeReplyObject(r); }
    };
    using reply = std::unique_ptr<redisReply, reply_deleter>;

    std::string ttl_ms() const { return std::to_string(std::max<long long>(1, static_cast<long long>(options_.ttl_seconds * 1000))); }
    std::string entry_key(const std::string& key_bytes) const { return options_.prefix + "e:" + digest_hex(key_bytes); }

    reply command(const std::vector<std::string>& args, const char* what) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : args) { argv.push_back(a.data()); lens.push_back(a.size()); }
        auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()));
        if (!r) throw io_error(name_ + ": completion cache error while " + std::string(what) + ": " + ctx_->errstr);
        reply owned(r);
        if (owned->type == REDIS_REPLY_ERROR) bad_reply(owned, what);
        return owned;
    }
    void command_ok(const std::vector<std::string>& args, const char* what) {
        reply r = command(args, what);
        if (r->type != REDIS_REPLY_STATUS) bad_reply(r, what);
    }
    [[noreturn]] void bad_reply(const reply& r, const char* what) const {
        const std::string text = (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS) ? std::string(r->str, r->len)
                                                                                                 : "reply of type " + std::to_string(r->type);
        throw error(name_ + ": completion cache error while " + std::string(what) + ": " + text);
    }

    redis_cache_options options_;
    std::string name_;
    redisContext* ctx_ = nullptr;
    std::mutex mutex_;
};

}  // namespace minigpt::frugal

// Completion cache on a real redis-server started on a free loopback port: two clients (separate
// connections, as two machines would have) share entries; other seeds and parameters miss; TTL
// expires entries; the semantic scan works across clients. Skips when redis-server is absent.
#include <gtest/gtest.h>

#include <memory>

#include "minigpt/frugal/completion_cache.hpp"
#include "redis_helpers.hpp"
#ifdef MINIGPT_HAVE_REDIS
#include "minigpt/frugal/cache_redis.hpp"
#endif

using namespace minigpt;
using namespace minigpt::frugal;

#ifdef MINIGPT_HAVE_REDIS
// A redis-server child process for one test (tests/redis_helpers.hpp), stopped when the fixture ends.
// Outside the anonymous namespace: the TEST_F classes derived from it have external linkage.
class RedisCache : public ::testing::Test {
protected:
    void SetUp() override {
        const auto bin = test::find_redis_server();
        if (bin.empty()) GTEST_SKIP() << "redis-server is not installed (Debian: redis-server); Redis backend not tested";
        redis_ = std::make_unique<test::redis_process>(bin);
        if (!redis_->ready()) FAIL() << "redis-server did not start on port " << redis_->port();
    }
    std::string url() const { return redis_->url(); }

    std::unique_ptr<test::redis_process> redis_;
    int port() const { return redis_->port(); }
};

namespace {

completion_request redis_request(std::vector<std::int32_t> prompt, std::uint64_t seed = 42) {
    completion_request r;
    r.model_fingerprint = "model-A";
    r.prompt_tokens = std::move(prompt);
    r.params.sampling.seed = seed;
    return r;
}

completion answer(const std::string& text) {
    completion c;
    c.text = text;
    c.tokens = {4, 5};
    c.logprobs = {-0.1f, -0.2f};
    return c;
}

}  // namespace

TEST_F(RedisCache, TwoClientsShareEntries) {
    completion_cache a(std::make_unique<redis_cache>(url()));
    completion_cache b(std::make_unique<redis_cache>(url()));
    EXPECT_FALSE(b.lookup(redis_request({1, 2, 3})));
    a.store(redis_request({1, 2, 3}), answer("from a"));
    const auto hit = b.lookup(redis_request({1, 2, 3}));
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->text, "from a");
    EXPECT_EQ(hit->logprobs, answer("x").logprobs);
    EXPECT_FALSE(b.lookup(redis_request({1, 2, 3}, 43)));  // another seed
    auto r = redis_request({1, 2, 3});
    r.params.max_tokens = 5;
    EXPECT_FALSE(b.lookup(r));                        // another parameter
    EXPECT_EQ(b.stats().hits, 1u);
    EXPECT_EQ(b.stats().misses, 3u);
}

TEST_F(RedisCache, TtlExpires) {
    redis_cache_options o;
    o.ttl_seconds = 0.15;
    completion_cache c(std::make_unique<redis_cache>(url(), o));
    c.store(redis_request({7}), answer("short-lived"));
    EXPECT_TRUE(c.lookup(redis_request({7})));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(c.lookup(redis_request({7})));
}

TEST_F(RedisCache, SemanticMatchAcrossClients) {
    auto embed = [](std::string_view t) { return std::vector<float>{float(t.find("france") != std::string_view::npos), float(t.find("germany") != std::string_view::npos), 0.1f}; };
    cache_options o;
    o.embed = embed;
    o.semantic_threshold = 0.9;
    completion_cache a(std::make_unique<redis_cache>(url()), o);
    completion_cache b(std::make_unique<redis_cache>(url()), o);
    a.store(redis_request({1}), answer("Paris"), "capital of france");
    const auto h = b.lookup(redis_request({2}), "what is the capital of france");
    ASSERT_TRUE(h);
    EXPECT_TRUE(h->semantic);
    EXPECT_EQ(h->text, "Paris");
    EXPECT_FALSE(b.lookup(redis_request({3}), "capital of germany"));
}

TEST_F(RedisCache, DamagedRecordIsAnError) {
    // Another program writes garbage under the key the cache would read.
    completion_cache c(std::make_unique<redis_cache>(url()));
    c.store(redis_request({9}), answer("good"));
    redisContext* raw = redisConnect("127.0.0.1", port());
    ASSERT_TRUE(raw && !raw->err);
    const std::string key = "minigpt:cc:e:" + digest_hex(make_key(redis_request({9})).bytes);
    auto* rep = static_cast<redisReply*>(redisCommand(raw, "SETRANGE %s 40 %s", key.c_str(), "XXXX"));
    freeReplyObject(rep);
    redisFree(raw);
    EXPECT_THROW(c.lookup(redis_request({9})), format_error);
}

TEST(RedisUrl, Parsing) {
    const auto a = parse_redis_url("redis://10.0.0.5:6380/2");
    EXPECT_EQ(a.host, "10.0.0.5");
    EXPECT_EQ(a.port, 6380);
    EXPECT_EQ(a.db, 2);
    EXPECT_EQ(parse_redis_url("redis://cachehost").port, 6379);
    EXPECT_THROW(parse_redis_url("http://x:1"), error);
    EXPECT_THROW(parse_redis_url("redis://x:99999"), error);
    EXPECT_THROW(parse_redis_url("redis://:1"), error);
}

#else
TEST(RedisCache, Skipped) { GTEST_SKIP() << "built without hiredis (libhiredis-dev)"; }
#endif

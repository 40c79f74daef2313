// Tests of the continuous-batching engine against the one-sequence path (minigpt::generate on a
// fresh context): greedy and seeded-sampled output identical, from many threads at once; prompt
// prefix reuse computing only the new tokens; chunked prefill under a small token budget;
// streaming, stop strings, cancellation, queue limits and bad requests.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "minigpt/generate/engine.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::shared_path;

namespace {

const char* k_stories_model = "models/stories260K.gguf";

generation_params params(std::int32_t n, float temp = 0.0f, std::uint64_t seed = 1) {
    generation_params p;
    p.max_tokens = n;
    p.sampling = temp > 0 ? sampling_params{} : sampling_params::greedy();
    p.sampling.temperature = temp;
    p.sampling.seed = seed;
    return p;
}

// The reference: the same prompt through minigpt::generate on its own context.
generation_output reference(const llm& lm, const std::string& prompt, const generation_params& p, std::int64_t n_batch = 512) {
    context ctx(lm.weights, {.n_ctx = 256, .n_batch = n_batch, .n_threads = 1});
    return generate(lm, ctx, prompt, p);
}

engine_request request(const engine& e, const std::string& prompt, const generation_params& p) {
    return {e.tokenize(prompt), p, {}, {}};
}

const std::vector<std::string> k_prompts = {
    "Once upon a time", "The little dog", "Lily and Ben went to the park", "Tom had a red ball. He",
    "One day, a bird", "The sun was hot and", "Mom said", "There was a big tree in the garden. It was"};

}  // namespace

TEST(Engine, GreedyFromManyThreadsEqualsGenerate) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 4, .n_ctx_slot = 256, .n_threads = 1});
    std::vector<std::future<generation_output>> results;
    for (const auto& p : k_prompts)
        results.push_back(std::async(std::launch::async, [&, p] { return e.run_to_completion(request(e, p, params(40))); }));
    for (std::size_t i = 0; i < k_prompts.size(); ++i) {
        const auto got = results[i].get();
        const auto want = reference(lm, k_prompts[i], params(40));
        EXPECT_EQ(got.tokens, want.tokens) << k_prompts[i];
        EXPECT_EQ(got.text, want.text);
        EXPECT_EQ(got.reason, want.reason);
    }
    const auto st = e.stats();
    EXPECT_EQ(st.requests_finished, k_prompts.size());
    EXPECT_EQ(st.running, 0u);
    EXPECT_EQ(st.generated_tokens, 40u * k_prompts.size());
}

TEST(Engine, SeededSamplingEqualsGenerate) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 3, .n_ctx_slot = 256, .n_threads = 1});
    std::vector<request_handle> hs;
    for (std::size_t i = 0; i < 6; ++i) {
        auto p = params(30, 0.9f, 100 + i);
        p.stop = {"."};
        p.n_logprobs = 2;
        hs.push_back(e.submit(request(e, k_prompts[i], p)));
    }
    for (std::size_t i = 0; i < hs.size(); ++i) {
        auto p = params(30, 0.9f, 100 + i);
        p.stop = {"."};
        p.n_logprobs = 2;
        const auto got = hs[i].wait();
        const auto want = reference(lm, k_prompts[i], p);
        EXPECT_EQ(got.tokens, want.tokens);
        EXPECT_EQ(got.text, want.text);
        EXPECT_EQ(got.reason, want.reason);
        EXPECT_EQ(got.stop_string, want.stop_string);
        ASSERT_EQ(got.logprobs.size(), want.logprobs.size());
        // A later request reuses a slot's cached BOS, so its prompt runs as a shorter matrix product
        // (or on the row kernels instead of the blocked GEMM): equal up to float rounding, not bit for
        // bit. 1e-4, the tolerance for batched logits (1.05e-5 apart on an AVX2 machine).
        for (std::size_t t = 0; t < got.logprobs.size(); ++t) {
            EXPECT_NEAR(got.logprobs[t].logprob, want.logprobs[t].logprob, 1e-4);
            EXPECT_EQ(got.logprobs[t].top[1].id, want.logprobs[t].top[1].id);
        }
    }
}

TEST(Engine, StreamingDeliversTheText) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 2, .n_ctx_slot = 256, .n_threads = 1});
    std::string streamed;
    std::vector<std::int32_t> ids;
    auto r = request(e, "Once upon a time", params(50));
    r.params.stop = {"park"};
    r.on_token = [&](const token_event& ev) {
        streamed += ev.text;
        if (ev.token >= 0) ids.push_back(ev.token);
        return true;
    };
    const auto got = e.run_to_completion(r);
    EXPECT_EQ(streamed, got.text);
    EXPECT_EQ(ids, got.tokens);
    const auto want = reference(lm, "Once upon a time", r.params);
    EXPECT_EQ(got.text, want.text);
    EXPECT_EQ(got.reason, want.reason);
}

TEST(Engine, ReusesTheCachedPromptPrefix) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 2, .n_ctx_slot = 256, .n_threads = 1});
    const std::string base = "Once upon a time there was a little girl named Lily. She loved to play";
    const auto first = e.run_to_completion(request(e, base, params(10)));
    const auto before = e.stats().prompt_tokens_evaluated;
    const std::string longer = base + " with her friends in the park";
    const auto n_base = e.tokenize(base).size(), n_longer = e.tokenize(longer).size();
    const auto second = e.run_to_completion(request(e, longer, params(20)));
    const auto evaluated = e.stats().prompt_tokens_evaluated - before;
    // Only the tokens after the shared prefix were computed (tokenisation at the seam may differ by one).
    EXPECT_LE(evaluated, n_longer - n_base + 2);
    EXPECT_EQ(second.tokens, reference(lm, longer, params(20)).tokens);
    // The very same prompt again: one token is recomputed for fresh logits.
    const auto b2 = e.stats().prompt_tokens_evaluated;
    const auto third = e.run_to_completion(request(e, base, params(10)));
    EXPECT_EQ(e.stats().prompt_tokens_evaluated - b2, 1u);
    EXPECT_EQ(third.tokens, first.tokens);
}

TEST(Engine, SamePromptManyTimesIsPrefilledOnce) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 4, .n_ctx_slot = 256, .n_threads = 1});
    const std::string prompt = "Once upon a time there was a little girl named Lily. She loved to play with her ball";
    const auto n_prompt = e.tokenize(prompt).size();
    std::vector<request_handle> hs;
    for (int i = 0; i < 4; ++i) hs.push_back(e.submit(request(e, prompt, params(16, 1.0f, 7 + i))));
    for (int i = 0; i < 4; ++i) EXPECT_EQ(hs[i].wait().tokens, reference(lm, prompt, params(16, 1.0f, 7 + i)).tokens);
    EXPECT_EQ(e.stats().prompt_tokens_evaluated, n_prompt + 3);  // the copies recompute one token each
}

TEST(Engine, ChunkedPrefillUnderASmallBudget) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 2, .n_ctx_slot = 256, .token_budget = 8, .n_threads = 1});
    const std::string prompt = "There was a big tree in the garden. It was tall and green, and birds sang in it every day";
    auto p = params(24);
    p.n_logprobs = 0;
    const auto got = e.run_to_completion(request(e, prompt, p));
    const auto want = reference(lm, prompt, p, 8);  // a context prefilling in the same chunks of 8
    EXPECT_EQ(got.tokens, want.tokens);
    for (std::size_t i = 0; i < got.logprobs.size(); ++i) EXPECT_EQ(got.logprobs[i].logprob, want.logprobs[i].logprob);
    // Two long prompts at once share the budget and still give the one-sequence result.
    auto h1 = e.submit(request(e, prompt, params(12)));
    auto h2 = e.submit(request(e, k_prompts[7], params(12)));
    EXPECT_EQ(h1.wait().tokens, reference(lm, prompt, params(12), 8).tokens);
    EXPECT_EQ(h2.wait().tokens, reference(lm, k_prompts[7], params(12), 8).tokens);
}

TEST(Engine, CancellationFreesTheSlot) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 1, .n_ctx_slot = 256, .n_threads = 1});
    std::promise<void> five;
    std::atomic<int> n{0};
    auto r = request(e, "Once upon a time", params(-1));
    r.params.ignore_eos = true;
    r.on_token = [&](const token_event& ev) {
        if (ev.token >= 0 && ++n == 5) five.set_value();
        return true;
    };
    auto h = e.submit(r);
    five.get_future().wait();
    h.cancel();
    const auto out = h.wait();
    EXPECT_EQ(out.reason, stop_reason::callback);
    EXPECT_LT(out.tokens.size(), 200u);
    // The only slot is free again.
    EXPECT_EQ(e.run_to_completion(request(e, "The little dog", params(5))).tokens.size(), 5u);
    // A callback returning false stops its request too.
    auto r2 = request(e, "The little dog", params(50));
    r2.on_token = [](const token_event&) { return false; };
    const auto out2 = e.run_to_completion(r2);
    EXPECT_EQ(out2.reason, stop_reason::callback);
    EXPECT_EQ(out2.tokens.size(), 1u);
    EXPECT_GE(e.stats().requests_cancelled, 2u);
}

TEST(Engine, QueueLimitAndBadRequests) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 1, .n_ctx_slot = 64, .max_queue = 1, .n_threads = 1});
    std::promise<void> started, release;
    auto released = release.get_future().share();
    auto r = request(e, "Once", params(3));
    bool first = true;
    r.on_token = [&](const token_event&) {
        if (first) { first = false; started.set_value(); released.wait(); }
        return true;
    };
    auto busy = e.submit(r);
    started.get_future().wait();  // the slot is taken and the engine thread is held
    auto queued = e.submit(request(e, "The", params(2)));
    EXPECT_THROW(e.submit(request(e, "Mom", params(2))), queue_full_error);
    release.set_value();
    EXPECT_EQ(busy.wait().tokens.size(), 3u);
    EXPECT_EQ(queued.wait().tokens.size(), 2u);
    EXPECT_EQ(e.stats().requests_rejected, 1u);

    EXPECT_THROW(e.submit({{}, params(2), {}, {}}), request_error);
    EXPECT_THROW(e.submit({std::vector<std::int32_t>(64, 1), params(2), {}, {}}), request_error);  // no room to generate
    EXPECT_THROW(e.submit({{1, 100000}, params(2), {}, {}}), request_error);
    auto bad = params(2);
    bad.stop = {""};
    EXPECT_THROW(e.submit(request(e, "x", bad)), error);
    bad = params(2);
    bad.sampling.min_p = 2.0f;
    EXPECT_THROW(e.submit(request(e, "x", bad)), error);
    // The engine still works.
    EXPECT_EQ(e.run_to_completion(request(e, "Once", params(2))).tokens.size(), 2u);
}

TEST(Engine, ContextFullStopsTheRequest) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    engine e(lm, {.n_slots = 1, .n_ctx_slot = 32, .n_threads = 1});
    auto p = params(-1);
    p.ignore_eos = true;
    const auto prompt = e.tokenize("Once upon a time");
    const auto out = e.run_to_completion({prompt, p, {}, {}});
    EXPECT_EQ(out.reason, stop_reason::context_full);
    EXPECT_EQ(out.tokens.size() + prompt.size(), 33u);  // the last sampled token needs no position
}

TEST(Engine, ShutdownEndsPendingRequests) {
    MINIGPT_REQUIRE_SHARED(k_stories_model);
    const llm lm = llm::load(shared_path(k_stories_model));
    auto e = std::make_unique<engine>(lm, engine_params{.n_slots = 1, .n_ctx_slot = 256, .n_threads = 1});
    auto p = params(-1);
    p.ignore_eos = true;
    std::vector<request_handle> hs;
    for (int i = 0; i < 3; ++i) hs.push_back(e->submit(request(*e, "Once upon a time", p)));
    e->shutdown();
    for (auto& h : hs) EXPECT_EQ(h.wait().reason, stop_reason::callback);
    EXPECT_THROW(e->submit(request(*e, "x", params(1))), error);
}

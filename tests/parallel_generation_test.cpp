// N continuations of one prompt decoded together (generate/parallel_generation.hpp,
// model_session::fork_generate, self-consistency) against the one-sequence path: each path
// generated alone by minigpt::generate on its own context (greedy: identical tokens and text;
// seeded sampling: identical too, the logits differing only by float rounding), and a fork
// returned by fork_generate continuing exactly as a sequentially generated fork does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/generate/model_session.hpp"
#include "minigpt/model/lora.hpp"
#include "minigpt/generate/parallel_generation.hpp"
#include "minigpt/generate/reasoning.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::shared_path;

namespace {

const char* k_model = "models/stories260K.gguf";

generation_params gen(std::int32_t max_tokens, float temp, std::uint64_t seed, std::vector<std::string> stop = {}) {
    generation_params p;
    p.max_tokens = max_tokens;
    p.sampling = temp > 0 ? sampling_params{} : sampling_params::greedy();
    p.sampling.temperature = temp;
    p.sampling.seed = seed;
    p.stop = std::move(stop);
    p.n_logprobs = 1;
    return p;
}

// A text_session that hides model_session's fork_generate, so its forks generate one at a time.
class sequential_session : public text_session {
public:
    explicit sequential_session(std::unique_ptr<text_session> s) : s_(std::move(s)) {}
    void append(std::string_view text) override { s_->append(text); }
    generation_result generate(const generation_options& o, const text_callback& cb = {}) override { return s_->generate(o, cb); }
    std::unique_ptr<text_session> fork() const override { return std::make_unique<sequential_session>(s_->fork()); }
    std::size_t n_tokens() const override { return s_->n_tokens(); }
    std::size_t n_ctx() const override { return s_->n_ctx(); }
    std::size_t count_tokens(std::string_view t) const override { return s_->count_tokens(t); }
    std::string transcript() const override { return s_->transcript(); }

private:
    std::unique_ptr<text_session> s_;
};

// Text, token count, stop reason and matched stop string equal.
void expect_same_result(const generation_result& got, const generation_result& want) {
    EXPECT_EQ(got.text, want.text);
    EXPECT_EQ(got.n_tokens, want.n_tokens);
    EXPECT_EQ(got.reason, want.reason);
    EXPECT_EQ(got.stop_string, want.stop_string);
}

}  // namespace

TEST(ParallelGeneration, EveryPathEqualsGeneratingItAlone) {
    MINIGPT_REQUIRE_SHARED(k_model);
    const llm lm = llm::load(shared_path(k_model));
    const std::string prompt = "Once upon a time there was a little girl named Lily. She";
    // Greedy and sampled paths, different lengths, a stop string, one path that ends at once.
    const std::vector<generation_params> params = {gen(40, 0, 1), gen(25, 0.8f, 7), gen(40, 1.0f, 8, {"."}), gen(0, 0, 1),
                                                   gen(33, 0.9f, 9), gen(12, 0, 1, {"park"})};
    context prefill(lm.weights, {.n_ctx = 256, .n_threads = 1});
    const auto ids = lm.vocab->encode(prompt, lm.vocab->add_bos_default());
    prefill.decode(ids);
    batch_context bc(lm.weights, {.n_ctx = 6 * 256, .n_seq_max = 6, .n_threads = 1});
    bc.seq_import(0, prefill.kv(), prefill.n_past());
    const auto used_after_prompt = bc.memory().blocks_used;
    const auto outs = generate_parallel(bc, *lm.vocab, ids, prefill.logits(0), params, 256);
    EXPECT_GT(bc.memory().blocks_used, used_after_prompt);
    ASSERT_EQ(outs.size(), params.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
        SCOPED_TRACE("path " + std::to_string(i));
        context ctx(lm.weights, {.n_ctx = 256, .n_threads = 1});
        const auto want = generate(lm, ctx, prompt, params[i]);
        EXPECT_EQ(outs[i].tokens, want.tokens);
        EXPECT_EQ(outs[i].text, want.text);
        EXPECT_EQ(outs[i].reason, want.reason);
        EXPECT_EQ(outs[i].stop_string, want.stop_string);
        ASSERT_EQ(outs[i].logprobs.size(), want.logprobs.size());
        for (std::size_t t = 0; t < want.logprobs.size(); ++t) EXPECT_NEAR(outs[i].logprobs[t].logprob, want.logprobs[t].logprob, 1e-4);
        // The sequence holds the prompt and what the path fed, as the context that generated alone.
        EXPECT_EQ(bc.n_pos(static_cast<std::int32_t>(i)), ctx.n_past());
    }
    EXPECT_FALSE(outs[0].tokens.empty());
    EXPECT_TRUE(outs[3].tokens.empty());
}

TEST(ParallelGeneration, ForkGenerateEqualsForkThenGenerateAndForksContinue) {
    MINIGPT_REQUIRE_SHARED(k_model);
    const llm lm = llm::load(shared_path(k_model));
    model_session batched(lm, {.n_ctx = 256, .n_threads = 1});
    sequential_session sequential(std::make_unique<model_session>(lm, context_params{.n_ctx = 256, .n_threads = 1}));
    const std::string prompt = "Tom had a red ball. He";
    batched.append(prompt);
    sequential.append(prompt);
    std::vector<generation_options> opts(4);
    for (std::size_t i = 0; i < opts.size(); ++i) {
        opts[i].max_tokens = 20 + static_cast<std::int32_t>(i) * 5;
        opts[i].sampling = i == 0 ? sampling_params::greedy() : sampling_params{};
        opts[i].sampling.seed = 50 + i;
        if (i == 2) opts[i].stop = {"."};
    }
    auto got = batched.fork_generate(opts);
    auto want = sequential.fork_generate(opts);
    ASSERT_EQ(got.size(), want.size());
    generation_options more;
    more.max_tokens = 10;
    more.sampling = sampling_params::greedy();
    for (std::size_t i = 0; i < got.size(); ++i) {
        SCOPED_TRACE("path " + std::to_string(i));
        expect_same_result(got[i].result, want[i].result);
        EXPECT_EQ(got[i].session->n_tokens(), want[i].session->n_tokens());
        EXPECT_EQ(got[i].session->transcript(), want[i].session->transcript());
        // Each fork continues as the sequentially generated fork does.
        got[i].session->append(" Then");
        want[i].session->append(" Then");
        EXPECT_EQ(got[i].session->generate(more).text, want[i].session->generate(more).text);
    }
    EXPECT_EQ(batched.transcript(), prompt);  // the parent is untouched
}

TEST(ParallelGeneration, SelfConsistencyPathsEqualTheOneSequencePath) {
    MINIGPT_REQUIRE_SHARED(k_model);
    const llm lm = llm::load(shared_path(k_model));
    model_session batched(lm, {.n_ctx = 256, .n_threads = 1});
    sequential_session sequential(std::make_unique<model_session>(lm, context_params{.n_ctx = 256, .n_threads = 1}));
    self_consistency_options o;
    o.n_paths = 5;
    o.generation.max_tokens = 24;
    o.extract = [](std::string_view text) -> std::optional<std::string> {
        return text.empty() ? std::nullopt : std::optional<std::string>(std::string(text.substr(0, text.find(' ', 1))));
    };
    o.answer_trigger = " So";
    o.answer_generation.max_tokens = 6;
    const std::string prompt = "Lily and Ben went to the park. They";
    const auto got = self_consistency(batched, prompt, o);
    const auto want = self_consistency(sequential, prompt, o);
    ASSERT_EQ(got.paths.size(), want.paths.size());
    for (std::size_t i = 0; i < got.paths.size(); ++i) {
        EXPECT_EQ(got.paths[i].seed, want.paths[i].seed);
        EXPECT_EQ(got.paths[i].text, want.paths[i].text);
        EXPECT_EQ(got.paths[i].answer_text, want.paths[i].answer_text);
        EXPECT_EQ(got.paths[i].n_tokens, want.paths[i].n_tokens);
    }
    EXPECT_EQ(got.answer, want.answer);
    EXPECT_EQ(batched.transcript(), prompt);
    EXPECT_EQ(batched.n_batched_paths(), o.n_paths);  // the reasoning paths went through one batch_context
}

namespace {

std::vector<generation_options> mixed_options(std::size_t n, std::int32_t base_tokens) {
    std::vector<generation_options> opts(n);
    for (std::size_t i = 0; i < n; ++i) {
        opts[i].max_tokens = base_tokens + static_cast<std::int32_t>(i) * 3;
        opts[i].sampling = i % 2 == 0 ? sampling_params::greedy() : sampling_params{};
        opts[i].sampling.seed = 70 + i;
        if (i == 1) opts[i].stop = {"."};
    }
    return opts;
}

}  // namespace

// Different texts appended to one shared prompt (answer_separately's N questions): prefilled
// together, then decoded together, equal to fork + append + generate one at a time.
//
// Long appends: their batched prefill (all paths' tokens in one matrix product, the blocked GEMM)
// and each path's prefill alone (a few tokens: the row kernels) add in different orders, so the
// caches differ by float rounding; greedy text is identical (the criterion) but a seeded
// draw may land on the other side of a rounding difference (it did on an AVX2 machine). So long
// appends are checked with greedy paths, and short appends, whose batched prefill stays under
// gemm_min_tokens and so on the row kernels (the same sums, whatever the batch), with the mixed
// greedy and seeded options. (stories260K's synthetic vocabulary spells every word start as three
// byte tokens, so only a prompted session with tiny appends stays under that.)
TEST(ParallelGeneration, ForkAppendGenerateEqualsOneAtATime) {
    MINIGPT_REQUIRE_SHARED(k_model);
    const llm lm = llm::load(shared_path(k_model));
    const std::vector<std::string> long_appends = {" Lily saw a big dog.", "", " The sun was hot and the sky was blue. Tom", " She",
                                                   " Once, a bird sang in the tree near the house where they lived."};
    const std::vector<std::string> short_appends = {"x", "", ".", ""};
    for (const bool short_texts : {false, true})
        for (const bool empty_parent : {false, true}) {
            if (short_texts && empty_parent) continue;  // BOS and "Ben" alone take 8 tokens
            SCOPED_TRACE(std::string(short_texts ? "short appends, mixed sampling" : "long appends, greedy") +
                         (empty_parent ? ", fresh session" : ", after a prompt"));
            model_session batched(lm, {.n_ctx = 256, .n_threads = 1});
            sequential_session sequential(std::make_unique<model_session>(lm, context_params{.n_ctx = 256, .n_threads = 1}));
            std::vector<std::string> texts = short_texts ? short_appends : long_appends;
            if (empty_parent) texts[1] = "Ben";  // a fresh session has no logits to start an empty append from
            else {
                batched.append("Tom had a red ball. He");
                sequential.append("Tom had a red ball. He");
            }
            auto opts = mixed_options(texts.size(), 18);
            if (!short_texts)
                for (auto& o : opts) o.sampling = sampling_params::greedy();
            else {
                std::size_t n_prefill = 0;
                for (const auto& t : texts) n_prefill += lm.vocab->encode(t, empty_parent).size();
                ASSERT_LT(n_prefill, static_cast<std::size_t>(kernels::detail::gemm_min_tokens(dtype::f32)));
            }
            auto got = batched.fork_append_generate(texts, opts);
            auto want = sequential.fork_append_generate(texts, opts);
            EXPECT_EQ(batched.n_batched_paths(), texts.size());  // decoded together, not one at a time
            ASSERT_EQ(got.size(), want.size());
            generation_options more;
            more.max_tokens = 8;
            more.sampling = sampling_params::greedy();
            for (std::size_t i = 0; i < got.size(); ++i) {
                SCOPED_TRACE("path " + std::to_string(i));
                expect_same_result(got[i].result, want[i].result);
                EXPECT_EQ(got[i].n_appended_tokens, want[i].n_appended_tokens);
                EXPECT_EQ(got[i].session->n_tokens(), want[i].session->n_tokens());
                EXPECT_EQ(got[i].session->transcript(), want[i].session->transcript());
                got[i].session->append(" And");
                want[i].session->append(" And");
                EXPECT_EQ(got[i].session->generate(more).text, want[i].session->generate(more).text);
            }
            if (!short_texts) {
                EXPECT_GT(got[4].n_appended_tokens, got[3].n_appended_tokens);
            }
        }
}

// Several sessions continued at once (self-consistency's answer stage): each its own sequence,
// equal to appending and generating in each session alone; the sessions continue as before.
TEST(ParallelGeneration, AppendGenerateEachEqualsOneAtATime) {
    MINIGPT_REQUIRE_SHARED(k_model);
    const llm lm = llm::load(shared_path(k_model));
    const std::vector<std::string> prompts = {"Lily and Ben went to the park.", "The cat sat on the mat. It was", "Once upon a time",
                                              "Mom made a big cake for the party and everyone"};
    const std::vector<std::string> appends = {" They", "", " there was a", " So"};
    std::vector<std::unique_ptr<model_session>> got_sessions, want_sessions;
    for (const auto& p : prompts) {
        got_sessions.push_back(std::make_unique<model_session>(lm, context_params{.n_ctx = 128, .n_threads = 1}));
        want_sessions.push_back(std::make_unique<model_session>(lm, context_params{.n_ctx = 128, .n_threads = 1}));
        got_sessions.back()->append(p);
        want_sessions.back()->append(p);
    }
    const auto opts = mixed_options(prompts.size(), 20);
    std::vector<text_session*> got_ptrs;
    for (auto& s : got_sessions) got_ptrs.push_back(s.get());
    const auto got = append_generate_each(got_ptrs, appends, opts);
    EXPECT_EQ(got_sessions[0]->n_batched_paths(), prompts.size());
    generation_options more;
    more.max_tokens = 8;
    more.sampling = sampling_params::greedy();
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        SCOPED_TRACE("session " + std::to_string(i));
        want_sessions[i]->append(appends[i]);
        expect_same_result(got[i], want_sessions[i]->generate(opts[i]));
        EXPECT_EQ(got_sessions[i]->n_tokens(), want_sessions[i]->n_tokens());
        EXPECT_EQ(got_sessions[i]->transcript(), want_sessions[i]->transcript());
        EXPECT_EQ(got_sessions[i]->generate(more).text, want_sessions[i]->generate(more).text);
    }
    // A session given twice is refused before anything runs.
    std::vector<text_session*> twice = {got_ptrs[0], got_ptrs[0]};
    EXPECT_THROW(append_generate_each(twice, std::span(appends).first(2), std::span(opts).first(2)), error);
}

// F32 logits of sequences with different histories decoded together within 1e-4 of each decoded
// alone in a context, and the paths generated from them equal to generating each alone.
TEST(ParallelGeneration, PathsFromDifferentPromptsMatchTheOneSequencePath) {
    MINIGPT_REQUIRE_SHARED(k_model);
    const llm lm = llm::load(shared_path(k_model));
    const std::vector<std::string> prompts = {"One day a little boy", "The dog ran fast and jumped over the big log. Then it",
                                              "Sue liked"};
    std::vector<std::vector<std::int32_t>> ids;
    for (const auto& p : prompts) ids.push_back(lm.vocab->encode(p, lm.vocab->add_bos_default()));
    batch_context bc(lm.weights, {.n_ctx = 3 * 128, .n_seq_max = 3, .n_threads = 1});
    const auto logits = prefill_sequences(bc, ids);
    std::vector<path_start> starts;
    const std::vector<generation_params> params = {gen(30, 0, 1), gen(30, 0.9f, 5), gen(30, 0, 1, {"."})};
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        SCOPED_TRACE("prompt " + std::to_string(i));
        context alone(lm.weights, {.n_ctx = 128, .n_threads = 1});
        alone.decode(ids[i]);
        ASSERT_EQ(logits[i].size(), alone.logits(0).size());
        float worst = 0;
        for (std::size_t v = 0; v < logits[i].size(); ++v) worst = std::max(worst, std::abs(logits[i][v] - alone.logits(0)[v]));
        EXPECT_LT(worst, 1e-4f);
        starts.push_back({ids[i], logits[i], 128});
    }
    const auto outs = generate_paths(bc, *lm.vocab, starts, params);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        SCOPED_TRACE("path " + std::to_string(i));
        context ctx(lm.weights, {.n_ctx = 128, .n_threads = 1});
        const auto want = generate(lm, ctx, prompts[i], params[i]);
        EXPECT_EQ(outs[i].tokens, want.tokens);
        EXPECT_EQ(outs[i].text, want.text);
        ASSERT_EQ(outs[i].logprobs.size(), want.logprobs.size());
        for (std::size_t t = 0; t < want.logprobs.size(); ++t) EXPECT_NEAR(outs[i].logprobs[t].logprob, want.logprobs[t].logprob, 1e-4);
        EXPECT_EQ(bc.n_pos(static_cast<std::int32_t>(i)), ctx.n_past());
    }
}

// With a LoRA adapter on the session (llama.cpp's stories260K adapter, scale 0.7) the paths still
// decode in one batch, under the adapter, and equal the one-at-a-time forks (which copy the adapter
// with the context); the forks continued together keep it.
TEST(ParallelGeneration, ForksOfASessionWithALoraAdapterBatchUnderIt) {
    MINIGPT_REQUIRE_SHARED(k_model);
    MINIGPT_REQUIRE_SHARED("models/lora/stories260K-lora.gguf");
    const llm lm = llm::load(shared_path(k_model));
    const std::vector<lora_binding> adapters{{lora_adapter::load(shared_path("models/lora/stories260K-lora.gguf")), 0.7f}};
    auto inner = std::make_unique<model_session>(lm, context_params{.n_ctx = 256, .n_threads = 1});
    inner->ctx().set_adapters(adapters);
    sequential_session sequential(std::move(inner));
    model_session batched(lm, {.n_ctx = 256, .n_threads = 1});
    batched.ctx().set_adapters(adapters);
    model_session base(lm, {.n_ctx = 256, .n_threads = 1});  // no adapter: must differ somewhere
    const std::string prompt = "Lily wanted to play. She";
    batched.append(prompt);
    sequential.append(prompt);
    base.append(prompt);
    const auto opts = mixed_options(4, 20);
    auto got = batched.fork_generate(opts);
    auto want = sequential.fork_generate(opts);
    const auto plain = base.fork_generate(opts);
    EXPECT_EQ(batched.n_batched_paths(), 4u);
    bool adapter_changed_something = false;
    for (std::size_t i = 0; i < got.size(); ++i) {
        SCOPED_TRACE("path " + std::to_string(i));
        expect_same_result(got[i].result, want[i].result);
        adapter_changed_something = adapter_changed_something || got[i].result.text != plain[i].result.text;
    }
    EXPECT_TRUE(adapter_changed_something);
    std::vector<text_session*> got_ptrs, want_ptrs;
    for (std::size_t i = 0; i < got.size(); ++i) {
        got_ptrs.push_back(got[i].session.get());
        want_ptrs.push_back(want[i].session.get());
    }
    const std::vector<std::string> thens(got.size(), " Then");
    const auto got_more = append_generate_each(got_ptrs, thens, opts);
    const auto want_more = append_generate_each(want_ptrs, thens, opts);
    EXPECT_EQ(static_cast<model_session*>(got_ptrs[0])->n_batched_paths(), 4u);
    for (std::size_t i = 0; i < got_more.size(); ++i) expect_same_result(got_more[i], want_more[i]);
}

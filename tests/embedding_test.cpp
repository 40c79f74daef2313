// Embeddings: the pooled vectors against (a) a recomputation in double from final-norm states
// taken one token at a time, (b) llama2.c's logits (the "last" embedding times the output
// matrix gives them back, so it really is the final normed state), (c) the CLI's JSON, and
// the few-shot builder's selection with embeddings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "minigpt/generate/embedding.hpp"
#include "minigpt/quant/quant.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

// Final-norm state of each token, fed one at a time (the matrix-vector path, not the batch one).
std::vector<std::vector<double>> states_one_by_one(const llm& lm, const std::vector<std::int32_t>& ids) {
    context ctx(lm.weights, {.n_ctx = 512, .n_threads = 1, .tap = hidden_tap::final_norm});
    std::vector<std::vector<double>> out;
    for (auto id : ids) {
        ctx.decode(std::span(&id, 1));
        const auto t = ctx.tap_output();
        out.emplace_back(t.begin(), t.end());
    }
    return out;
}

}  // namespace

TEST(Embedding, PoolingMatchesARecomputationFromPerTokenStates) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(test::shared_path("models/stories260K.gguf"));
    const std::string text = "Once upon a time there was a little cat.";
    const auto ids = lm.vocab->encode(text, true);
    ASSERT_GT(ids.size(), 3u);
    const auto st = states_one_by_one(lm, ids);
    const std::size_t d = st[0].size();
    std::vector<double> mean(d, 0.0);
    for (const auto& r : st)
        for (std::size_t i = 0; i < d; ++i) mean[i] += r[i] / static_cast<double>(st.size());
    auto l2 = [](std::vector<double> v) {
        double s = 0;
        for (double x : v) s += x * x;
        for (double& x : v) x /= std::sqrt(s);
        return v;
    };
    struct expect_case {
        pooling pool;
        bool normalize;
        std::vector<double> want;
    };
    for (const auto& c : {expect_case{pooling::mean, false, mean}, expect_case{pooling::mean, true, l2(mean)},
                          expect_case{pooling::last, false, st.back()}, expect_case{pooling::cls, false, st.front()},
                          expect_case{pooling::cls, true, l2(st.front())}}) {
        SCOPED_TRACE(std::string(pooling_name(c.pool)) + (c.normalize ? " normalized" : ""));
        embedder e(lm, {.pool = c.pool, .normalize = c.normalize, .n_threads = 1});
        const auto v = e.embed(text);
        ASSERT_EQ(v.size(), d);
        EXPECT_EQ(e.last_n_tokens(), static_cast<std::int64_t>(ids.size()));
        for (std::size_t i = 0; i < d; ++i) EXPECT_NEAR(v[i], c.want[i], 1e-4 * (c.normalize ? 0.1 : 1.0) + 1e-5 * std::abs(c.want[i]));
    }
    embedder none(lm, {.pool = pooling::none, .n_threads = 1});
    const auto all = none.embed(text);
    ASSERT_EQ(all.size(), ids.size() * d);
    for (std::size_t t = 0; t < ids.size(); ++t)
        for (std::size_t i = 0; i < d; ++i) ASSERT_NEAR(all[t * d + i], st[t][i], 1e-4);
    EXPECT_THROW(none.as_function(), error);
    EXPECT_THROW(none.embed_tokens(std::vector<std::int32_t>{}), error);
    EXPECT_THROW(parse_pooling("max"), error);
}

// Many inputs embedded in batches (each its own sequence, the final-norm states tapped for every
// token of the batch) equal each embedded alone, for every pooling; more inputs than one pass takes.
TEST(Embedding, BatchOfInputsEqualsEachAlone) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(test::shared_path("models/stories260K.gguf"));
    std::vector<std::vector<std::int32_t>> inputs;
    for (int i = 0; i < 20; ++i)  // 20 inputs: two passes of at most 16
        inputs.push_back(lm.vocab->encode(std::string("Tom saw ") + std::to_string(i * 7) + (i % 3 == 0 ? " big red dogs in the park." : " cats."), true));
    for (const pooling pool : {pooling::mean, pooling::last, pooling::cls, pooling::none}) {
        SCOPED_TRACE(std::string(pooling_name(pool)));
        embedder e(lm, {.pool = pool, .normalize = pool == pooling::mean, .n_ctx = 64, .n_threads = 1});
        const auto got = e.embed_batch(inputs);
        ASSERT_EQ(got.size(), inputs.size());
        float worst = 0;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const auto want = e.embed_tokens(inputs[i]);
            ASSERT_EQ(got[i].size(), want.size());
            for (std::size_t d = 0; d < want.size(); ++d) worst = std::max(worst, std::abs(got[i][d] - want[d]));
        }
        EXPECT_LT(worst, 1e-4f);
    }
    embedder e(lm, {.n_ctx = 16, .n_threads = 1});
    EXPECT_THROW(e.embed_batch(std::vector<std::vector<std::int32_t>>{{1, 2}, {}}), error);
    EXPECT_THROW(e.embed_batch(std::vector<std::vector<std::int32_t>>(1, std::vector<std::int32_t>(17, 1))), error);
}

TEST(Embedding, LastStateTimesOutputMatrixGivesLlama2cLogits) {
    MINIGPT_REQUIRE_SHARED("golden/stories260K/logits.f32");
    const llm lm = llm::load(test::shared_path("models/stories260K.gguf"));
    const auto ids = test::read_ids(test::shared_path("golden/stories260K/greedy-ids.txt"));
    const auto golden = test::read_f32(test::shared_path("golden/stories260K/logits.f32"));
    const auto& c = lm.weights->config();
    const auto& out_w = lm.weights->weights().output;  // (n_vocab, n_embd)
    embedder e(lm, {.pool = pooling::last, .n_ctx = 512, .n_threads = 1});
    std::vector<float> row(static_cast<std::size_t>(c.n_embd));
    for (std::size_t pos : {0u, 17u, 100u}) {
        const auto v = e.embed_tokens(std::span(ids).subspan(0, pos + 1));
        double worst = 0;
        for (std::int64_t w = 0; w < c.n_vocab; ++w) {
            quant::dequantize_row(out_w.type(), out_w.row_ptr(w), row.data(), c.n_embd);
            double s = 0;
            for (std::int64_t i = 0; i < c.n_embd; ++i) s += static_cast<double>(row[static_cast<std::size_t>(i)]) * v[static_cast<std::size_t>(i)];
            worst = std::max(worst, std::abs(s - golden[pos * static_cast<std::size_t>(c.n_vocab) + static_cast<std::size_t>(w)]));
        }
        EXPECT_LT(worst, 1e-3) << "position " << pos;
    }
}

TEST(Embedding, FewShotSelectionWithEmbeddings) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(test::shared_path("models/stories260K.gguf"));
    embedder e(lm, {.pool = pooling::mean, .normalize = true, .n_threads = 1});
    const std::vector<demonstration> demos{{"The dog ran to the park.", "dog"},
                                           {"Lily saw a big red ball.", "ball"},
                                           {"Tom ate a sweet cake.", "cake"}};
    few_shot_options o;
    o.k = 1;
    o.similarity = embedding_cosine(e.as_function());
    // A query equal to one demonstration's input has cosine 1 with it: that one is chosen.
    for (std::size_t i = 0; i < demos.size(); ++i) {
        const auto p = build_few_shot("", demos, demos[i].input, o);
        EXPECT_EQ(p.used, std::vector<std::size_t>{i}) << p.text;
    }
}

TEST(Embedding, CommandPrintsTheLibrarysVectors) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built";
    const std::string model = test::shared_path("models/stories260K.gguf");
    std::string out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " embed -m " + model + " -p 'A cat sat.' --pooling last --normalize -t 1", &out), 0);
    const auto j = nlohmann::json::parse(out);
    ASSERT_EQ(j["data"].size(), 1u);
    const auto v = j["data"][0]["embedding"].get<std::vector<float>>();
    embedder e(llm::load(model), {.pool = pooling::last, .normalize = true, .n_threads = 1});
    const auto want = e.embed("A cat sat.");
    ASSERT_EQ(v.size(), want.size());
    for (std::size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], want[i], 1e-6);
    EXPECT_EQ(j["data"][0]["n_tokens"].get<std::int64_t>(), e.last_n_tokens());
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " embed -m " + model + " -p x --pooling max 2>/dev/null", &out), 0);
}

// End-to-end kNN-LM on a real model file: a datastore built from a text with
// gpt2-tiny's hidden states, used to score the same text, must lower its perplexity
// (each position finds its own context, distance 0, paired with the true next token).
// Also drives the `minigpt knn-build` / `minigpt perplexity` commands when the tool is built.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "minigpt/knn.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "test_data.hpp"

namespace {

using minigpt::test::temp_path;

using namespace minigpt;

const std::string k_gpt2_tiny = std::string(MINIGPT_SHARED_DIR) + "/models/gpt2-tiny.gguf";

// Some English with repeated phrases, written for this test.
const char* const k_text =
    "The little robot walked to the market every morning. At the market the little robot bought bread, "
    "apples and a bottle of milk. The baker always smiled at the little robot and said good morning. "
    "One rainy morning the market was closed, so the little robot walked home again without bread. "
    "The next morning the sun was bright, the market was open, and the baker smiled at the little robot "
    "once more. The little robot bought bread, apples and a bottle of milk, and walked home happy.";


struct provider {
    std::shared_ptr<const model> m;
    std::unique_ptr<context> ctx;
    provider(std::shared_ptr<const model> mm, std::int64_t n_ctx, hidden_tap tap) : m(std::move(mm)) {
        ctx = std::make_unique<context>(m, context_params{.n_ctx = n_ctx, .n_batch = n_ctx, .tap = tap});
    }
    void run(std::span<const std::int32_t> t, float* keys, float* logits) {
        ctx->truncate(0);
        ctx->decode(t, logits ? logits_for::all : logits_for::none);
        std::copy(ctx->tap_output().begin(), ctx->tap_output().end(), keys);
        if (logits) std::copy(ctx->logits().begin(), ctx->logits().end(), logits);
    }
};

TEST(KnnEndToEnd, StoreOfTheTextLowersItsPerplexity) {
    if (!std::filesystem::exists(k_gpt2_tiny)) GTEST_SKIP() << "missing " << k_gpt2_tiny;
    auto m = model::load(k_gpt2_tiny);
    const auto tok = tokenizer::from_gguf(*m->gguf());
    const auto ids = tok.encode(k_text, tok.add_bos_default());
    ASSERT_GT(ids.size(), 80u);
    const knn::window_params windows{64, 0};  // several windows, so windowing is exercised too
    const std::int64_t dim = m->config().n_embd, n_vocab = m->config().n_vocab;

    for (dtype type : {dtype::f32, dtype::f16}) {
        const std::string path = temp_path(std::string("e2e-") + std::string(dtype_name(type)) + ".store");
        provider p(m, windows.ctx, hidden_tap::ffn_input);
        const std::string fp = m->fingerprint() + " tap=ffn_input";
        {
            knn::datastore_writer w(path, dim, type, fp);
            const auto n = knn::build_datastore(w, ids, windows, [&](std::span<const std::int32_t> t, std::int64_t, float* k) { p.run(t, k, nullptr); });
            EXPECT_EQ(n, static_cast<std::int64_t>(ids.size()) - 1);
            w.finish();
        }
        auto store = knn::datastore::open(path, fp);
        EXPECT_THROW(knn::datastore::open(path, m->fingerprint() + " tap=final_norm"), minigpt::error);
        knn::exact_index index(store);
        knn::knn_lm_params params;  // lambda 0.25, k 32, T 1
        const auto r = knn::evaluate_perplexity(
            ids, dim, n_vocab, windows,
            [&](std::span<const std::int32_t> t, std::int64_t, float* k, float* l) { p.run(t, k, l); }, &index, params);
        std::printf("gpt2-tiny, %s keys, %lld tokens: perplexity LM %.2f, kNN-LM %.2f\n", std::string(dtype_name(type)).c_str(),
                    static_cast<long long>(r.base.n_tokens), r.base.perplexity(), r.mixed.perplexity());
        EXPECT_EQ(r.base.n_tokens, static_cast<std::int64_t>(ids.size()) - 1);
        EXPECT_LT(r.mixed.perplexity(), 0.5 * r.base.perplexity());
        EXPECT_TRUE(std::isfinite(r.mixed.perplexity()));
        // The same scoring with lambda = 0 is the LM alone.
        params.lambda = 0.0f;
        const auto r0 = knn::evaluate_perplexity(
            ids, dim, n_vocab, windows,
            [&](std::span<const std::int32_t> t, std::int64_t, float* k, float* l) { p.run(t, k, l); }, &index, params);
        EXPECT_NEAR(r0.mixed.perplexity(), r.base.perplexity(), 1e-9 * r.base.perplexity());
        std::remove(path.c_str());
    }
}

std::string run_capture(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return out;
    std::array<char, 4096> buf;
    while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
    const int rc = ::pclose(p);
    if (rc != 0) out += "\n[exit status " + std::to_string(rc) + "]";
    return out;
}

double value_after(const std::string& text, const std::string& label) {
    const auto at = text.find(label);
    if (at == std::string::npos) return -1.0;
    return std::stod(text.substr(at + label.size()));
}

TEST(KnnEndToEnd, ToolBuildsAStoreAndScoresWithIt) {
    if (!std::filesystem::exists(k_gpt2_tiny)) GTEST_SKIP() << "missing " << k_gpt2_tiny;
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built (" << MINIGPT_TOOL << ")";
    const std::string text_path = temp_path("text.txt"), store = temp_path("tool.store");
    std::ofstream(text_path) << k_text;
    const std::string tool = MINIGPT_TOOL;
    const auto built = run_capture(tool + " knn-build -m " + k_gpt2_tiny + " -f " + text_path + " -o " + store + " --f16 --ctx 64");
    ASSERT_NE(built.find("wrote"), std::string::npos) << built;
    const auto scored = run_capture(tool + " perplexity -m " + k_gpt2_tiny + " -f " + text_path + " --knn " + store + " --ctx 64");
    const double base = value_after(scored, "perplexity (LM only): "), mixed = value_after(scored, "Final estimate: PPL = ");
    std::printf("tool: perplexity LM %.2f, kNN-LM %.2f\n", base, mixed);
    EXPECT_GT(base, 0.0) << scored;
    EXPECT_GT(mixed, 0.0) << scored;
    EXPECT_LT(mixed, 0.5 * base) << scored;
    const auto plain = run_capture(tool + " perplexity -m " + k_gpt2_tiny + " -f " + text_path + " --ctx 64");
    EXPECT_NEAR(value_after(plain, "Final estimate: PPL = "), base, 1e-4 * base) << plain;
    const auto wrong_tap = run_capture(tool + " perplexity -m " + k_gpt2_tiny + " -f " + text_path + " --knn " + store + " --tap final_norm");
    EXPECT_NE(wrong_tap.find("another model"), std::string::npos) << wrong_tap;
    std::remove(text_path.c_str());
    std::remove(store.c_str());
}

}  // namespace

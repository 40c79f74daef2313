// Neuron recording and the explain-a-neuron pieces (generate/neurons.hpp), and `minigpt neurons`:
//  - record_neurons over windows equals each window decoded alone with the FFN hook;
//  - top_activations, discretize_activation, correlation and expected_number against values
//    computed here by hand;
//  - the simulator's prediction for a token equals the expected number read from a fresh context
//    fed the same prompt prefix (so the all-at-once indices are right);
//  - the CLI's JSON: one neuron's activations equal the library's record, top lists sorted and
//    consistent, bad layers and neurons rejected with the flag named.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "minigpt/generate/neurons.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

const char* k_text =
    "Once upon a time, there was a little girl named Lily. She loved to play outside. One day, she saw a big red ball. "
    "She kicked it high into the sky and laughed.";

std::string stories() { return test::shared_path("models/stories260K.gguf"); }

}  // namespace

TEST(Neurons, WindowsEqualSeparateDecodes) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(stories());
    const auto ids = lm.vocab->encode(k_text, true);
    ASSERT_GT(ids.size(), 40u);
    const auto r = record_neurons(lm.weights, ids, 3, {.n_ctx = 32});
    ASSERT_EQ(r.acts.size(), ids.size() * static_cast<std::size_t>(lm.weights->config().n_ff));
    // Window 2 (tokens 32..63) alone, from position 0, with the hook set by hand.
    std::vector<float> want;
    context ctx(lm.weights, {.n_ctx = 32});
    inspection_hooks h;
    h.on_ffn_activation = [&](const hook_site& s, std::span<float> a) { if (s.layer == 3) want.assign(a.begin(), a.end()); };
    ctx.set_hooks(h);
    const std::size_t n2 = std::min<std::size_t>(32, ids.size() - 32);
    ctx.decode(std::span(ids).subspan(32, n2), logits_for::none);
    ASSERT_EQ(want.size(), n2 * static_cast<std::size_t>(r.n_ff));
    for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(r.acts[32 * static_cast<std::size_t>(r.n_ff) + i], want[i]) << i;
    EXPECT_THROW(record_neurons(lm.weights, ids, 5), error);  // stories260K has layers 0..4
}

TEST(Neurons, RankingAndScoringByHand) {
    neuron_record r;
    r.n_ff = 2;
    r.ids = {10, 11, 12, 13, 14};
    r.acts = {0.5f, 1, -1.0f, 2, 3.0f, 3, 0.5f, 4, 2.0f, 5};  // neuron 0: 0.5 -1 3 0.5 2
    const auto top = top_activations(r, 0, 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0].index, 2);
    EXPECT_EQ(top[1].index, 4);
    EXPECT_EQ(top[2].index, 0);  // tie with index 3: the earlier first
    EXPECT_EQ(top_activations(r, 1, 10).size(), 5u);
    EXPECT_THROW(top_activations(r, 2, 1), error);
    EXPECT_EQ(discretize_activation(3.0f, 3.0f), 10);
    EXPECT_EQ(discretize_activation(1.0f, 3.0f), 3);
    EXPECT_EQ(discretize_activation(-1.0f, 3.0f), 0);
    // r(x, y) for x = 1 2 3 4, y = 2 4 5 9: means 2.5 and 5; sxy = 1.5*3 + .5*1 + .5*0 + 1.5*4 = 11,
    // sxx = 5, syy = 9 + 1 + 0 + 16 = 26: r = 11 / sqrt(130).
    const std::vector<float> x = {1, 2, 3, 4}, y = {2, 4, 5, 9};
    EXPECT_NEAR(correlation(x, y), 11.0 / std::sqrt(130.0), 1e-12);
    EXPECT_EQ(correlation(x, std::vector<float>{1, 1, 1, 1}), 0.0);
    // Numbers 3 and 7 equally likely, 5 absent from the vocabulary, the rest far less likely.
    std::vector<float> logits(20, -100.0f);
    std::vector<std::int32_t> numbers(11, -1);
    numbers[3] = 4, numbers[7] = 9, numbers[2] = 12;
    logits[4] = 2.0f, logits[9] = 2.0f;
    EXPECT_NEAR(expected_number(logits, numbers), 5.0, 1e-9);
    logits[12] = 2.0f;  // now 2, 3, 7 equally: 4
    EXPECT_NEAR(expected_number(logits, numbers), 4.0, 1e-9);
}

TEST(Neurons, NumberTokensOfGpt2) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const llm lm = llm::load(test::shared_path("models/gpt2-tiny.gguf"));
    const auto ids = number_tokens(*lm.vocab);
    for (int v = 0; v <= 10; ++v) {
        ASSERT_GE(ids[static_cast<std::size_t>(v)], 0) << v;
        EXPECT_EQ(lm.vocab->token_to_piece(ids[static_cast<std::size_t>(v)]), std::to_string(v));
    }
}

// The prediction for token i equals the expected number at the tab of its line, read from a fresh
// context fed the prompt up to that tab (built here from the documented format).
TEST(Neurons, SimulatorReadsTheTabPositions) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    const llm lm = llm::load(stories());
    const auto ids = lm.vocab->encode("The cat sat on the mat.", true);
    const std::string explanation = " the letter a";
    const auto got = simulate_activations(lm, explanation, *lm.vocab, ids, 1);
    ASSERT_EQ(got.size(), ids.size());
    for (float v : got) EXPECT_TRUE(v >= 0.0f && v <= 10.0f) << v;
    // Rebuild the first window up to line 3.
    const tokenizer& tok = *lm.vocab;
    context ctx(lm.weights);
    std::vector<std::int32_t> prompt = tok.encode(simulator_header(tok, explanation, ctx.n_ctx()), true);
    for (std::size_t i = 0; i < 3; ++i) {
        const auto line = tok.encode(token_label(tok, ids[i]) + "\t", false);
        prompt.insert(prompt.end(), line.begin(), line.end());
        if (i == 2) break;
        const auto rest = tok.encode("?\n", false);
        prompt.insert(prompt.end(), rest.begin(), rest.end());
    }
    ctx.decode(prompt);
    EXPECT_NEAR(got[2], expected_number(ctx.logits(), number_tokens(tok)), 1e-4);
}

TEST(Neurons, ExplainerPromptFitsAndShowsTheTopTokens) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const llm lm = llm::load(test::shared_path("models/gpt2-tiny.gguf"));
    const auto r = record_neurons(lm, k_text, 1);
    const auto top = top_activations(r, 7, 1);
    const std::string p = explainer_prompt(r, *lm.vocab, 7, 10, 4, *lm.vocab, 120);
    EXPECT_LE(lm.vocab->encode(p, false).size(), 120u);
    EXPECT_NE(p.find(token_label(*lm.vocab, r.ids[static_cast<std::size_t>(top[0].index)]) + "\t10\n"), std::string::npos) << p;
    EXPECT_EQ(p.substr(p.size() - std::string(k_explanation_lead).size()), k_explanation_lead);
    const std::string big = explainer_prompt(r, *lm.vocab, 7, 10, 4, *lm.vocab, 4096);
    EXPECT_NE(big.find(std::string(k_explainer_header)), std::string::npos);
    EXPECT_GT(big.size(), p.size());
}

// ---- the CLI ----

TEST(NeuronsCli, OneNeuronEqualsTheLibraryRecord) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built";
    const auto dir = test::temp_dir("neurons");
    const auto text_file = (dir / "text.txt").string(), out_file = (dir / "acts.json").string();
    { std::ofstream(text_file) << k_text; }
    std::string out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " neurons -m " + stories() + " -f " + text_file +
                            " --layer 2 --neuron 5 --top 4 -t 1 -o " + out_file + " 2>/dev/null", &out), 0);
    const auto j = nlohmann::json::parse(test::read_text(out_file));
    const llm lm = llm::load(stories());
    const auto want = record_neurons(lm, k_text, 2).neuron(5);
    const auto acts = j.at("activations").get<std::vector<float>>();
    ASSERT_EQ(acts.size(), want.size());
    for (std::size_t i = 0; i < acts.size(); ++i) EXPECT_NEAR(acts[i], want[i], 1e-6f * std::max(1.0f, std::fabs(want[i])));
    EXPECT_EQ(j.at("ids").get<std::vector<std::int32_t>>(), lm.vocab->encode(k_text, true));
    const auto& top = j.at("neurons").at(0).at("top");
    ASSERT_EQ(top.size(), 4u);
    EXPECT_FLOAT_EQ(top[0].at("activation").get<float>(), *std::max_element(want.begin(), want.end()));
    for (std::size_t i = 0; i < top.size(); ++i) {
        const auto idx = top[i].at("index").get<std::size_t>();
        EXPECT_FLOAT_EQ(top[i].at("activation").get<float>(), want[idx]);
        if (i > 0) {
            EXPECT_GE(top[i - 1].at("activation").get<float>(), top[i].at("activation").get<float>());
        }
    }
}

TEST(NeuronsCli, EveryNeuronAndBadFlags) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "the minigpt tool is not built";
    std::string out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " neurons -m " + stories() + " -p 'Lily saw a big red ball.' --layer 0 --top 3 -t 1", &out), 0);
    const auto j = nlohmann::json::parse(out);
    ASSERT_EQ(j.at("neurons").size(), 172u);  // stories260K's n_ff
    for (const auto& n : j.at("neurons")) {
        ASSERT_EQ(n.at("top").size(), 3u);
        EXPECT_FLOAT_EQ(n.at("top")[0].at("activation").get<float>(), n.at("max").get<float>());
    }
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " neurons -m " + stories() + " -p x --layer 5 2>&1", &out), 0);
    EXPECT_NE(out.find("--layer"), std::string::npos) << out;
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " neurons -m " + stories() + " -p x --layer 1 --neuron 172 2>&1", &out), 0);
    EXPECT_NE(out.find("--neuron"), std::string::npos) << out;
    EXPECT_NE(test::run(std::string(MINIGPT_TOOL) + " neurons -m " + stories() + " -p x 2>&1", &out), 0);
    EXPECT_NE(out.find("--layer"), std::string::npos) << out;
}

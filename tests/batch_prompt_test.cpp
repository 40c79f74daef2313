// Prompt adaptation (query concatenation): k questions in one few-shot prompt give the same greedy
// answers as k separate prompts, the answer parser finds one answer per slot (missing ones reported),
// the budget reuses the few-shot builder, and the prompt-token saving is measured with a real tokenizer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "minigpt/frugal/batch_ask.hpp"
#include "minigpt/generate/scripted_session.hpp"
#include "minigpt/text/batch_prompt.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "minigpt/text/tokenizer_loader.hpp"
#include "test_data.hpp"

using namespace minigpt;

namespace {

const std::vector<demonstration> k_demos = {
    {"2+2", "4"}, {"3+5", "8"}, {"7+1", "8"}, {"6+3", "9"},
};
const std::vector<std::string> k_questions = {"1+2", "4+4", "5+2"};
const char* k_instruction = "Add the numbers.";

std::size_t scripted_count(std::string_view t) { return scripted_session::tokens_in(t); }

}  // namespace

TEST(BatchPrompt, LayoutAndSlots) {
    const auto b = build_batch_prompt(k_instruction, k_demos, k_questions);
    EXPECT_EQ(b.text,
              "Add the numbers.\n\nQ: 2+2\nA: 4\n\nQ: 3+5\nA: 8\n\nQ: 7+1\nA: 8\n\nQ: 6+3\nA: 9\n\n"
              "Q1: 1+2\nQ2: 4+4\nQ3: 5+2\nA1:");
    EXPECT_EQ(b.n_questions, 3u);
    EXPECT_EQ(separate_prompt(b, k_questions, 1),
              "Add the numbers.\n\nQ: 2+2\nA: 4\n\nQ: 3+5\nA: 8\n\nQ: 7+1\nA: 8\n\nQ: 6+3\nA: 9\n\nQ: 4+4\nA:");
    EXPECT_THROW(build_batch_prompt(k_instruction, k_demos, std::vector<std::string>{}), error);
    EXPECT_THROW(build_batch_prompt(k_instruction, k_demos, std::vector<std::string>{"a\nb"}), error);
}

TEST(BatchPrompt, ParserReportsMissingDuplicatesAndStrays) {
    auto r = parse_batch_answers(" 3\nA3: 7 \nA3: 9\nA7: 1\nnoise A2: x\n", 3);
    ASSERT_EQ(r.answers.size(), 3u);
    EXPECT_EQ(r.answers[0], "3");
    EXPECT_FALSE(r.answers[1].has_value());  // "noise A2:" does not start a line
    EXPECT_EQ(r.answers[2], "7");
    EXPECT_EQ(r.missing, std::vector<std::size_t>{1});
    EXPECT_EQ(r.n_duplicates, 1u);
    EXPECT_EQ(r.n_unexpected, 1u);
    // Empty reply: the first slot is present but empty; the rest are missing.
    r = parse_batch_answers("", 2);
    EXPECT_EQ(r.answers[0], "");
    EXPECT_EQ(r.missing, std::vector<std::size_t>{1});
}

// The acceptance test: a scripted model that answers each question the same way whether it is asked
// alone or in the batch; the batched run must recover exactly the separate greedy answers, while the
// scripted log shows fewer prefilled tokens.
TEST(BatchPrompt, SameAnswersAsSeparatePromptsWithFewerTokens) {
    few_shot_options fs;
    fs.count_tokens = scripted_count;
    const auto batch = build_batch_prompt(k_instruction, k_demos, k_questions, fs);

    // Separate prompts: one reply per question, each only valid for its own prompt.
    scripted_session separate{{" 3\n", "Q: 1+2\nA:"}, {" 8\n", "Q: 4+4\nA:"}, {" 7\n", "Q: 5+2\nA:"}};
    generation_options go;
    go.sampling = sampling_params::greedy();
    go.stop = {"\n"};
    const auto one_by_one = frugal::answer_separately(separate, batch, k_questions, go, fs);

    // The batch: one reply that fills the slots in order.
    scripted_session batched{{" 3\nA2: 8\nA3: 7\n\n", "Q1: 1+2\nQ2: 4+4\nQ3: 5+2\nA1:"}};
    generation_options gb = go;
    gb.stop = {"\n\n"};
    const auto together = frugal::answer_batch(batched, batch, gb);

    ASSERT_EQ(one_by_one.answers.size(), 3u);
    ASSERT_EQ(together.answers.answers.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        ASSERT_TRUE(one_by_one.answers[i].has_value());
        EXPECT_EQ(together.answers.answers[i], one_by_one.answers[i]) << i;
    }
    EXPECT_TRUE(together.answers.missing.empty());
    // Every greedy request really was greedy.
    for (const auto& r : separate.log().requests) EXPECT_LE(r.sampling.temperature, 0.0f);

    // Token accounting: the builder's numbers equal what the sessions actually prefilled.
    EXPECT_EQ(batch.n_tokens, batched.log().n_prefill_tokens);
    EXPECT_EQ(batch.n_tokens_separate, separate.log().n_prefill_tokens);
    EXPECT_GT(batch.tokens_saved(), 0);
    EXPECT_EQ(one_by_one.n_prompt_tokens, separate.log().n_prefill_tokens);
    EXPECT_EQ(together.n_prompt_tokens, batched.log().n_prefill_tokens);
}

TEST(BatchPrompt, MissingAnswerIsReportedNotInvented) {
    few_shot_options fs;
    fs.count_tokens = scripted_count;
    const auto batch = build_batch_prompt(k_instruction, k_demos, k_questions, fs);
    scripted_session s{{" 3\nA3: 7\n\n"}};
    generation_options g;
    g.stop = {"\n\n"};
    const auto r = frugal::answer_batch(s, batch, g);
    EXPECT_EQ(r.answers.answers[0], "3");
    EXPECT_FALSE(r.answers.answers[1].has_value());
    EXPECT_EQ(r.answers.answers[2], "7");
    EXPECT_EQ(r.answers.missing, std::vector<std::size_t>{1});
}

// The budget: demonstrations are dropped as build_few_shot drops them, measured on the batch text.
TEST(BatchPrompt, BudgetDropsDemonstrations) {
    few_shot_options fs;
    fs.count_tokens = scripted_count;
    const auto full = build_batch_prompt(k_instruction, k_demos, k_questions, fs);
    fs.max_tokens = full.n_tokens - 1;
    const auto fit = build_batch_prompt(k_instruction, k_demos, k_questions, fs);
    EXPECT_LE(fit.n_tokens, fs.max_tokens);
    EXPECT_EQ(fit.dropped, std::vector<std::size_t>{0});  // without similarity: the earliest goes first
    EXPECT_EQ(fit.used, (std::vector<std::size_t>{1, 2, 3}));
    EXPECT_EQ(fit.text.find("Q: 2+2"), std::string::npos);
    // Too small for the instruction and the questions alone.
    fs.max_tokens = 5;
    EXPECT_THROW(build_batch_prompt(k_instruction, k_demos, k_questions, fs), error);
    // Similarity selection against all questions: keep the 2 demonstrations most like them.
    few_shot_options sim;
    sim.similarity = bag_of_words_cosine;
    sim.k = 2;
    const auto sel = build_batch_prompt(k_instruction, k_demos, std::vector<std::string>{"2 plus 2", "3 plus 5"}, sim);
    EXPECT_EQ(sel.used.size(), 2u);
}

// Savings with a real BPE tokenizer (GPT-2's): k separate prompts against one batch prompt.
TEST(BatchPrompt, SavingWithGpt2Tokenizer) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
    const tokenizer tok = load_tokenizer(test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
    few_shot_options fs;
    fs.count_tokens = [&](std::string_view t) { return tok.encode(t, false).size(); };
    std::vector<std::string> questions;
    for (int i = 0; i < 8; ++i) questions.push_back(std::to_string(10 + i) + "+" + std::to_string(3 * i));
    const auto b = build_batch_prompt(k_instruction, k_demos, questions, fs);
    std::size_t separate = 0;
    for (std::size_t i = 0; i < questions.size(); ++i) separate += tok.encode(separate_prompt(b, questions, i, fs), false).size();
    EXPECT_EQ(b.n_tokens_separate, separate);
    EXPECT_EQ(b.n_tokens, tok.encode(b.text, false).size());
    EXPECT_GT(b.tokens_saved(), 0);
    std::printf("GPT-2 tokens: 8 separate prompts %zu, one batch prompt %zu, saved %td (%.0f%%)\n", b.n_tokens_separate,
                b.n_tokens, b.tokens_saved(), 100.0 * double(b.tokens_saved()) / double(b.n_tokens_separate));
}

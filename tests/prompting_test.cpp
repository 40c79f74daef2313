// Prompt builders and reasoning loops on the scripted session: exact prompt strings and token
// counts (hand-counted), answer extraction rules, few-shot budgets and similarity selection
// (cosines computed by hand), chain-of-thought and self-consistency (one prefill, n forks, exact
// votes). Critique, tool use and the real-model smoke run are in prompting_loops_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "minigpt/prompt.hpp"
#include "prompting_helpers.hpp"

using namespace minigpt;

using minigpt::test::count_words;
using minigpt::test::plain;
using minigpt::test::valid_utf8;

// ---------------------------------------------------------------------------------------------
// scripted_session

TEST(ScriptedSession, CountsOneTokenPerFourBytes) {
    scripted_session s;
    EXPECT_EQ(s.count_tokens(""), 0u);
    EXPECT_EQ(s.count_tokens("abcd"), 1u);
    EXPECT_EQ(s.count_tokens("abcde"), 2u);
    EXPECT_EQ(s.count_tokens("Hello, world"), 3u);   // 12 bytes
    s.append("Hello");                               // 5 bytes: 2 tokens
    s.append("abc");                                 // 1 token: appends are tokenized separately
    EXPECT_EQ(s.n_tokens(), 3u);
    EXPECT_EQ(s.transcript(), "Helloabc");
    EXPECT_EQ(s.log().n_appends, 2u);
    EXPECT_EQ(s.log().n_prefill_tokens, 3u);
}

TEST(ScriptedSession, GeneratesRepliesInPieces) {
    scripted_session s({{"0123456789"}, {"xyz"}});
    s.append("P");
    auto r = s.generate(plain());
    EXPECT_EQ(r.text, "0123456789");
    EXPECT_EQ(r.n_tokens, 3);
    EXPECT_EQ(r.reason, stop_reason::end_of_generation);
    EXPECT_EQ(s.n_tokens(), 4u);
    // max_tokens cuts the reply after whole pieces; the rest of that reply is discarded.
    scripted_session t({{"0123456789"}, {"xyz"}});
    r = t.generate(plain(2));
    EXPECT_EQ(r.text, "01234567");
    EXPECT_EQ(r.reason, stop_reason::max_tokens);
    r = t.generate(plain());
    EXPECT_EQ(r.text, "xyz");
    EXPECT_EQ(t.transcript(), "01234567xyz");
    EXPECT_THROW(t.generate(plain()), error);   // nothing left to say
}

TEST(ScriptedSession, StopStringAcrossPieceBoundary) {
    // Pieces: "Hell" "o wo" "rld,": the stop "lo w" spans the first two.
    scripted_session s({{"Hello world, bye"}});
    auto r = s.generate(plain(-1, {"zzz", "lo w"}));
    EXPECT_EQ(r.reason, stop_reason::stop_string);
    EXPECT_EQ(r.stop_string, "lo w");
    EXPECT_EQ(r.text, "Hel");
    EXPECT_EQ(r.n_tokens, 2);
    // The context keeps the stop string, not the rest of its piece.
    EXPECT_EQ(s.transcript(), "Hello w");
    EXPECT_EQ(s.n_tokens(), 2u);
}

TEST(ScriptedSession, EarliestStopStringWins) {
    scripted_session s({{"abcdefgh"}});
    auto r = s.generate(plain(-1, {"fg", "cd"}));
    EXPECT_EQ(r.stop_string, "cd");
    EXPECT_EQ(r.text, "ab");
}

TEST(ScriptedSession, CallbackHoldsBackPossibleStopStrings) {
    // Pieces: "abc " "[END" "] ta" "il": "[END" could start the stop string, so it is held back.
    scripted_session s({{"abc [END] tail"}});
    std::vector<std::string> pieces;
    auto r = s.generate(plain(-1, {"[END]"}), [&](std::string_view p) {
        pieces.emplace_back(p);
        return true;
    });
    EXPECT_EQ(r.text, "abc ");
    ASSERT_EQ(pieces.size(), 1u);
    EXPECT_EQ(pieces[0], "abc ");
}

TEST(ScriptedSession, CallbackGetsWholeUtf8) {
    // "aaa\xC3" ends inside "é" (C3 A9): the callback sees "aaa", then the rest.
    scripted_session s({{"aaa\xC3\xA9" "bbbccc"}});
    std::vector<std::string> pieces;
    auto r = s.generate(plain(), [&](std::string_view p) {
        pieces.emplace_back(p);
        return true;
    });
    std::string joined;
    for (const auto& p : pieces) {
        EXPECT_TRUE(valid_utf8(p)) << p;
        joined += p;
    }
    EXPECT_EQ(pieces.front(), "aaa");
    EXPECT_EQ(joined, r.text);
    EXPECT_EQ(r.text, "aaa\xC3\xA9" "bbbccc");
}

TEST(ScriptedSession, CallbackCanStop) {
    scripted_session s({{"one two three four"}});
    int calls = 0;
    auto r = s.generate(plain(), [&](std::string_view) { return ++calls < 2; });
    EXPECT_EQ(r.reason, stop_reason::callback);
    EXPECT_EQ(r.n_tokens, 2);
    EXPECT_EQ(r.text, "one two ");
}

TEST(ScriptedSession, ConditionsPickTheReply) {
    scripted_session s({{"for seed 7", "", 7u}, {"about cats", "cat"}, {"anything"}});
    s.append("a dog");
    EXPECT_EQ(s.generate(plain()).text, "anything");           // the others' conditions fail
    s.append(" and a cat");
    EXPECT_EQ(s.generate(plain()).text, "about cats");
    generation_options g = plain();
    g.sampling.seed = 7;
    EXPECT_EQ(s.generate(g).text, "for seed 7");
    EXPECT_EQ(s.n_pending_replies(), 0u);
}

TEST(ScriptedSession, ForkCopiesStateAndSharesTheLog) {
    scripted_session s({{"A"}, {"B"}});
    s.append("prompt");
    auto f = s.fork();
    EXPECT_EQ(f->transcript(), "prompt");
    EXPECT_EQ(f->n_tokens(), s.n_tokens());
    EXPECT_EQ(f->generate(plain()).text, "A");
    EXPECT_EQ(s.transcript(), "prompt");                 // the parent is untouched
    EXPECT_EQ(s.generate(plain()).text, "A");            // and still has its own queue
    EXPECT_EQ(s.log().n_forks, 1u);
    EXPECT_EQ(s.log().n_generates, 2u);                  // both sessions report to one log
    EXPECT_EQ(s.log().n_appends, 1u);
}

TEST(ScriptedSession, ContextLimits) {
    scripted_session s({{"0123456789abcdef"}}, 3);
    s.append("abcd");
    EXPECT_THROW(s.append("123456789"), error);   // 3 more tokens would make 4 > 3
    auto r = s.generate(plain());
    EXPECT_EQ(r.reason, stop_reason::context_full);
    EXPECT_EQ(r.text, "01234567");
    EXPECT_EQ(s.n_tokens(), 3u);
    scripted_session e({{"x"}});
    EXPECT_THROW(e.generate(plain(-1, {""})), error);
}

// ---------------------------------------------------------------------------------------------
// answer parsing

TEST(AnswerParser, Numbers) {
    EXPECT_EQ(extract_number("The answer is 42."), "42");
    EXPECT_EQ(extract_number("Step 1: 5 + 13 = 18. The answer is 18."), "18");
    EXPECT_EQ(extract_number("He paid $1,234.50 for 3 items"), "3");
    EXPECT_EQ(extract_number("Total: 1,234.50"), "1234.5");
    EXPECT_EQ(extract_number("12,345,678 people"), "12345678");
    EXPECT_EQ(extract_number("1,23"), "23");
    EXPECT_EQ(extract_number("1234,567"), "567");
    EXPECT_EQ(extract_number("-7 degrees"), "-7");
    EXPECT_EQ(extract_number("it is (-12)"), "-12");
    EXPECT_EQ(extract_number("pages 3-4"), "4");
    EXPECT_EQ(extract_number("x-1"), "1");
    EXPECT_EQ(extract_number("+5"), "5");
    EXPECT_EQ(extract_number("fell to -0.0"), "0");
    EXPECT_EQ(extract_number("3.0"), "3");
    EXPECT_EQ(extract_number("2.50"), "2.5");
    EXPECT_EQ(extract_number("007"), "7");
    EXPECT_EQ(extract_number("about .5 litres"), "0.5");
    EXPECT_EQ(extract_number("version 1.2.3"), "3");
    EXPECT_EQ(extract_number("1/2 of the cake"), "1/2");
    EXPECT_EQ(extract_number("a ratio of -04/08"), "-4/8");
    EXPECT_FALSE(extract_number("no digits here").has_value());
}

TEST(AnswerParser, Choices) {
    EXPECT_EQ(extract_choice("The answer is (C)."), "C");
    EXPECT_EQ(extract_choice("(A) is wrong, so (B)"), "B");
    EXPECT_EQ(extract_choice("I think the answer is B because A is wrong"), "B");
    EXPECT_EQ(extract_choice("Therefore: D"), "D");
    EXPECT_EQ(extract_choice("Options A, B"), "B");
    EXPECT_EQ(extract_choice("E.\nThat is all"), "E");
    EXPECT_FALSE(extract_choice("A dog ran home").has_value());   // an article, not a choice
    EXPECT_FALSE(extract_choice("(F) or (c)").has_value());
    EXPECT_EQ(extract_choice("(F)", "ABCDEF"), "F");
}

TEST(AnswerParser, FreeText) {
    EXPECT_EQ(extract_free_text("The capital is Paris. It is big."), "The capital is Paris");
    EXPECT_EQ(extract_free_text("So the answer is: Paris.\nMore text"), "Paris");
    EXPECT_EQ(extract_free_text("Answer is 3.5 metres. ok"), "3.5 metres");
    EXPECT_EQ(extract_free_text("  first line\nsecond"), "first line");
    EXPECT_FALSE(extract_free_text("   \n").has_value());
}

// ---------------------------------------------------------------------------------------------
// few-shot prompts

namespace {
const std::vector<demonstration> k_arith = {{"2+2", "4"}, {"3+5", "8"}, {"10-7", "3"}};
}

TEST(FewShot, ExactLayout) {
    const auto p = build_few_shot("Answer the arithmetic question.", k_arith, "6+1");
    EXPECT_EQ(p.text, "Answer the arithmetic question.\n\nQ: 2+2\nA: 4\n\nQ: 3+5\nA: 8\n\nQ: 10-7\nA: 3\n\nQ: 6+1\nA:");
    EXPECT_EQ(p.used, (std::vector<std::size_t>{0, 1, 2}));
    EXPECT_TRUE(p.dropped.empty());
    few_shot_options o;
    o.format = {"Input: ", " | ", "Output:", " ", "\n"};
    EXPECT_EQ(build_few_shot("", k_arith, "6+1", o).text,
              "Input: 2+2 | Output: 4\nInput: 3+5 | Output: 8\nInput: 10-7 | Output: 3\nInput: 6+1 | Output:");
}

TEST(FewShot, TokenCountsAndDropping) {
    few_shot_options o;
    o.count_tokens = count_words;
    // 4 (instruction) + 3 x 4 (demonstrations) + 3 (query) words.
    EXPECT_EQ(build_few_shot("Answer the arithmetic question.", k_arith, "6+1", o).n_tokens, 19u);
    o.max_tokens = 15;
    auto p = build_few_shot("Answer the arithmetic question.", k_arith, "6+1", o);
    EXPECT_EQ(p.n_tokens, 15u);
    EXPECT_EQ(p.used, (std::vector<std::size_t>{1, 2}));    // the one farthest from the query goes
    EXPECT_EQ(p.dropped, (std::vector<std::size_t>{0}));
    EXPECT_EQ(p.text, "Answer the arithmetic question.\n\nQ: 3+5\nA: 8\n\nQ: 10-7\nA: 3\n\nQ: 6+1\nA:");
    o.max_tokens = 7;   // room for the instruction and query only
    p = build_few_shot("Answer the arithmetic question.", k_arith, "6+1", o);
    EXPECT_EQ(p.text, "Answer the arithmetic question.\n\nQ: 6+1\nA:");
    EXPECT_EQ(p.dropped, (std::vector<std::size_t>{0, 1, 2}));
    o.max_tokens = 6;
    try {
        build_few_shot("Answer the arithmetic question.", k_arith, "6+1", o);
        FAIL() << "expected the budget error";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("7 tokens"), std::string::npos) << e.what();
    }
    few_shot_options no_counter;
    no_counter.max_tokens = 10;
    EXPECT_THROW(build_few_shot("", k_arith, "6+1", no_counter), error);
}

TEST(FewShot, TruncatesAtWordBoundary) {
    const std::vector<demonstration> demos = {{"What is the capital of France?", "Paris is the capital of France."},
                                              {"What is the capital of Spain?", "Madrid."}};
    few_shot_options o;
    o.count_tokens = count_words;
    o.overflow = overflow_policy::truncate;
    // Full: 14 + 9 + 8 = 31 words; the budget of 27 leaves 10 words of the first demonstration.
    o.max_tokens = 27;
    const auto p = build_few_shot("", demos, "What is the capital of Italy?", o);
    EXPECT_EQ(p.text,
              "Q: What is the capital of France?\nA: Paris is\n\nQ: What is the capital of Spain?\nA: Madrid.\n\n"
              "Q: What is the capital of Italy?\nA:");
    EXPECT_EQ(p.n_tokens, 27u);
    ASSERT_TRUE(p.truncated.has_value());
    EXPECT_EQ(*p.truncated, 0u);
    EXPECT_EQ(p.used, (std::vector<std::size_t>{0, 1}));
    EXPECT_TRUE(p.dropped.empty());
}

TEST(FewShot, BagOfWordsCosine) {
    // (the:1 cat:1 sat:1) . (the:2 cat:1 sat:1 on:1 mat:1) = 4; norms sqrt(3), sqrt(8).
    EXPECT_NEAR(bag_of_words_cosine("The cat sat", "the cat sat on the mat"), 4.0 / std::sqrt(24.0), 1e-15);
    EXPECT_NEAR(bag_of_words_cosine("the cat sat", "a dog ran in the park"), 1.0 / std::sqrt(18.0), 1e-15);
    EXPECT_NEAR(bag_of_words_cosine("the cat sat", "the cat ate the fish"), 3.0 / std::sqrt(21.0), 1e-15);
    EXPECT_EQ(bag_of_words_cosine("", "x"), 0.0);
    const auto sim = embedding_cosine([](std::string_view t) {
        return t == "a" ? std::vector<float>{1, 0} : t == "b" ? std::vector<float>{1, 1} : std::vector<float>{1, 2, 3};
    });
    EXPECT_NEAR(sim("a", "b"), 1.0 / std::sqrt(2.0), 1e-12);
    EXPECT_THROW(sim("a", "c"), shape_error);
}

TEST(FewShot, SelectsMostSimilar) {
    const std::vector<demonstration> demos = {
        {"the cat sat on the mat", "A"}, {"a dog ran in the park", "B"}, {"the cat ate the fish", "C"}};
    few_shot_options o;
    o.similarity = bag_of_words_cosine;
    o.k = 2;
    auto p = build_few_shot("", demos, "the cat sat", o);   // scores: 0.816, 0.236, 0.655
    EXPECT_EQ(p.used, (std::vector<std::size_t>{2, 0}));    // most similar last, nearest the query
    EXPECT_EQ(p.not_selected, (std::vector<std::size_t>{1}));
    EXPECT_EQ(p.text, "Q: the cat ate the fish\nA: C\n\nQ: the cat sat on the mat\nA: A\n\nQ: the cat sat\nA:");
    o.order = demo_order::most_similar_first;
    EXPECT_EQ(build_few_shot("", demos, "the cat sat", o).used, (std::vector<std::size_t>{0, 2}));
    // With a budget, the least similar demonstration is dropped first, wherever it sits.
    o.k = 0;
    o.order = demo_order::as_given;
    o.count_tokens = count_words;
    o.max_tokens = 22;   // 9 + 9 + 8 + 5 = 31 words in full
    p = build_few_shot("", demos, "the cat sat", o);
    EXPECT_EQ(p.used, (std::vector<std::size_t>{0, 2}));
    EXPECT_EQ(p.dropped, (std::vector<std::size_t>{1}));
    EXPECT_EQ(p.n_tokens, 22u);
}

TEST(FewShot, Placeholders) {
    EXPECT_EQ(fill_placeholders("{question} {x} {answer}{", {{"question", "Q"}, {"answer", "A"}}), "Q {x} A{");
}

// ---------------------------------------------------------------------------------------------
// chain of thought

TEST(Reasoning, FewShotChainOfThought) {
    const std::vector<cot_demonstration> demos = {
        {"Roger has 5 balls and buys 2 cans of 3 balls. How many balls?", "He buys 2 * 3 = 6 balls. 5 + 6 = 11.", "11"}};
    const auto prompt = build_few_shot_cot("", demos, "I have 4 pens and get 3 more. How many pens?");
    EXPECT_EQ(prompt.text,
              "Q: Roger has 5 balls and buys 2 cans of 3 balls. How many balls?\nA: He buys 2 * 3 = 6 balls. 5 + 6 = 11. "
              "The answer is 11.\n\nQ: I have 4 pens and get 3 more. How many pens?\nA:");
    scripted_session s({{" 4 + 3 = 7. The answer is 7.\n\nQ: next"}});
    const auto r = chain_of_thought(s, prompt.text);
    EXPECT_EQ(r.reasoning, " 4 + 3 = 7. The answer is 7.");
    ASSERT_TRUE(r.answer.has_value());
    EXPECT_EQ(*r.answer, "7");
    EXPECT_EQ(s.transcript(), prompt.text + " 4 + 3 = 7. The answer is 7.\n\n");
}

TEST(Reasoning, ZeroShotChainOfThoughtTwoStages) {
    scripted_session s({{" I start with 3 apples. Buying 2 more gives 3 + 2 = 5.\n\nQ: next"},
                        {" 5.\nQ: more", "Therefore, the answer is"}});
    const auto r = zero_shot_cot(s, "I have 3 apples and buy 2 more. How many apples?");
    EXPECT_EQ(r.reasoning, " I start with 3 apples. Buying 2 more gives 3 + 2 = 5.");
    EXPECT_EQ(r.answer_text, " 5.");
    ASSERT_TRUE(r.answer.has_value());
    EXPECT_EQ(*r.answer, "5");
    EXPECT_EQ(s.transcript(),
              "Q: I have 3 apples and buy 2 more. How many apples?\nA: Let's think step by step. I start with 3 apples. "
              "Buying 2 more gives 3 + 2 = 5.\n\nTherefore, the answer is 5.\n");
    // Two appends (question, trigger): the reasoning is not fed again.
    ASSERT_EQ(s.log().appended.size(), 2u);
    EXPECT_EQ(s.log().appended[1], "Therefore, the answer is");
}

TEST(Reasoning, ZeroShotTriggerAfterASpaceWhenCutOff) {
    scripted_session s({{" It is 2 + 2 = 4 and more words"}, {" 4."}});
    zero_shot_cot_options o;
    o.reasoning_generation.max_tokens = 4;   // 16 bytes: " It is 2 + 2 = 4"
    const auto r = zero_shot_cot(s, "2+2?", o);
    EXPECT_EQ(r.reasoning, " It is 2 + 2 = 4");
    EXPECT_EQ(s.log().appended[1], " Therefore, the answer is");
    EXPECT_EQ(*r.answer, "4");
}

// ---------------------------------------------------------------------------------------------
// self-consistency

namespace {
const std::string k_sc_prompt = "Q: Janet has 16 eggs and eats 3. She sells the rest at $2. How much does she earn?\nA:";

scripted_session sc_session(const std::vector<std::pair<std::uint64_t, std::string>>& by_seed) {
    scripted_session s;
    for (const auto& [seed, text] : by_seed) s.add_reply({text, "", seed});
    return s;
}
}  // namespace

TEST(SelfConsistency, OnePrefillNForksExactVotes) {
    auto s = sc_session({{1, " 16 - 3 = 13 eggs, 13 * 2 = 26. The answer is 26."},
                         {2, " She keeps 16 - 3 = 13, earning 13 * $2 = $26."},
                         {3, " 16 - 3 = 13. 13 + 2 = 15. The answer is 15."},
                         {4, " I am not sure."},
                         {5, " 13 eggs at $2 is $26.00."}});
    self_consistency_options o;
    const auto r = self_consistency(s, k_sc_prompt, o);
    // The prompt was fed once, to the parent; every path is a fork of it.
    EXPECT_EQ(s.log().n_forks, 5u);
    EXPECT_EQ(s.log().n_appends, 1u);
    EXPECT_EQ(s.log().appends_containing("Janet has 16 eggs"), 1u);
    EXPECT_EQ(s.log().n_prefill_tokens, scripted_session::tokens_in(k_sc_prompt));
    ASSERT_EQ(s.log().requests.size(), 5u);
    for (std::size_t i = 0; i < 5; ++i) {
        EXPECT_EQ(s.log().requests[i].sampling.seed, i + 1);
        EXPECT_FLOAT_EQ(s.log().requests[i].sampling.temperature, 0.7f);
    }
    ASSERT_EQ(r.paths.size(), 5u);
    EXPECT_EQ(r.paths[1].answer, "26");
    EXPECT_EQ(r.paths[2].answer, "15");
    EXPECT_FALSE(r.paths[3].answer.has_value());
    EXPECT_EQ(r.paths[4].answer, "26");   // "$26.00" normalises to 26
    EXPECT_EQ(r.n_abstained, 1u);
    ASSERT_EQ(r.votes.size(), 2u);
    EXPECT_EQ(r.votes[0].answer, "26");
    EXPECT_EQ(r.votes[0].count, 3u);
    EXPECT_EQ(r.votes[1].answer, "15");
    EXPECT_EQ(r.votes[1].count, 1u);
    EXPECT_EQ(r.answer, "26");
    EXPECT_EQ(s.transcript(), k_sc_prompt);   // the paths went to the forks
}

TEST(SelfConsistency, TiesGoToTheEarliestAnswer) {
    // 2 votes each; "26" came first, although "18" sorts before it as text.
    auto s = sc_session({{1, " 26"}, {2, " 18"}, {3, " 18"}, {4, " 26"}});
    self_consistency_options o;
    o.n_paths = 4;
    const auto r = self_consistency(s, k_sc_prompt, o);
    ASSERT_EQ(r.votes.size(), 2u);
    EXPECT_EQ(r.votes[0].count, 2u);
    EXPECT_EQ(r.votes[1].count, 2u);
    EXPECT_EQ(r.answer, "26");
    EXPECT_EQ(r.votes[0].first_path, 0u);
    EXPECT_EQ(r.votes[1].first_path, 1u);
}

TEST(SelfConsistency, AnswerTriggerPerPath) {
    scripted_session s;
    for (std::uint64_t seed = 10; seed < 13; ++seed) {
        s.add_reply({" some reasoning\n\n", "", seed});
        s.add_reply({seed == 11 ? " (B)\n" : " (A)\n", "Therefore", seed});
    }
    self_consistency_options o;
    o.n_paths = 3;
    o.seed = 10;
    o.extract = choice_extractor();
    o.answer_trigger = "Therefore, among A through E, the answer is";
    const auto r = self_consistency(s, "Q: pick one\nA: Let's think step by step.", o);
    EXPECT_EQ(r.answer, "A");
    EXPECT_EQ(r.votes[0].count, 2u);
    EXPECT_EQ(r.paths[1].answer, "B");
    EXPECT_EQ(r.paths[0].answer_text, " (A)");
    EXPECT_EQ(s.log().n_forks, 3u);
    // One prompt append plus one trigger per fork.
    EXPECT_EQ(s.log().n_appends, 4u);
    EXPECT_EQ(s.log().appends_containing("pick one"), 1u);
}

TEST(SelfConsistency, RejectsGreedyAndZeroPaths) {
    scripted_session s;
    self_consistency_options o;
    o.generation.sampling.temperature = 0.0f;
    EXPECT_THROW(self_consistency(s, "x", o), error);
    o = {};
    o.n_paths = 0;
    EXPECT_THROW(self_consistency(s, "x", o), error);
    EXPECT_EQ(s.log().n_appends, 0u);   // validated before anything was fed
}

TEST(SelfConsistency, TallyVotes) {
    const std::vector<std::optional<std::string>> a = {std::nullopt, "b", "a", "a", "b", "c"};
    const auto v = tally_votes(a);
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[0].answer, "b");
    EXPECT_EQ(v[0].first_path, 1u);
    EXPECT_EQ(v[1].answer, "a");
    EXPECT_EQ(v[2].answer, "c");
    EXPECT_EQ(v[2].count, 1u);
}

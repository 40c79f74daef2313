// Prompt builders and generation loops, end to end on the scripted session: exact prompt strings and
// token counts (hand-counted), answer extraction rules, few-shot budgets and similarity selection
// (cosines computed by hand), chain-of-thought, self-consistency (one prefill, n forks, exact
// votes), self-critique with one or two sessions, and the tool loop with its error paths and limits.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "minigpt/prompt.hpp"

using namespace minigpt;

namespace {

// An independent token counter for budget tests: whitespace-separated words.
std::size_t count_words(std::string_view s) {
    std::size_t n = 0;
    bool in_word = false;
    for (char c : s) {
        const bool space = c == ' ' || c == '\n' || c == '\t';
        if (!space && !in_word) ++n;
        in_word = !space;
    }
    return n;
}

generation_options plain(std::int32_t max_tokens = -1, std::vector<std::string> stop = {}) {
    generation_options g;
    g.max_tokens = max_tokens;
    g.stop = std::move(stop);
    g.sampling = sampling_params::greedy();
    return g;
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const std::size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

}  // namespace

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

// ---------------------------------------------------------------------------------------------
// self-critique

TEST(Critique, SameSessionReviseThenAccept) {
    scripted_session s({{" 12\n"}, {" The sum is wrong: 7 + 6 = 13.\n"}, {" 13\n"}, {" CORRECT\n"}});
    const auto r = self_critique(s, "What is 7 + 6?");
    EXPECT_TRUE(r.accepted);
    EXPECT_EQ(r.n_rounds, 2u);
    EXPECT_EQ(r.final_answer, "13");
    ASSERT_EQ(r.transcript.size(), 5u);
    EXPECT_EQ(r.transcript[0].role, "user");
    EXPECT_EQ(r.transcript[1].role, "solver");
    EXPECT_EQ(r.transcript[1].text, "12");
    EXPECT_EQ(r.transcript[2].role, "critic");
    EXPECT_EQ(r.transcript[2].text, "The sum is wrong: 7 + 6 = 13.");
    EXPECT_EQ(r.transcript[3].role, "solver");
    EXPECT_EQ(r.transcript[3].round, 1u);
    EXPECT_EQ(r.transcript[4].text, "CORRECT");
    EXPECT_EQ(r.transcript[4].round, 2u);
    const std::string review = "Review the answer above. If it is correct, reply CORRECT. Otherwise explain the mistake.\nReview:";
    EXPECT_EQ(s.transcript(), "Question: What is 7 + 6?\nAnswer: 12\n" + review + " The sum is wrong: 7 + 6 = 13.\nRevised answer: 13\n" +
                                  review + " CORRECT\n");
}

TEST(Critique, SeparateCriticSession) {
    scripted_session solver({{" 12\n"}, {" 13\n"}});
    scripted_session critic({{" Wrong, 7 + 6 = 13.\n"}, {" correct, well done\n"}});
    const auto r = self_critique(solver, "What is 7 + 6?", {}, &critic);
    EXPECT_TRUE(r.accepted);   // the accept prefix is matched in any case
    EXPECT_EQ(r.final_answer, "13");
    EXPECT_EQ(solver.transcript(), "Question: What is 7 + 6?\nAnswer: 12\nFeedback: Wrong, 7 + 6 = 13.\nRevised answer: 13\n");
    const std::string ask = "If the answer is correct, reply CORRECT. Otherwise explain the mistake.\nReview:";
    EXPECT_EQ(critic.transcript(), "Question: What is 7 + 6?\nProposed answer: 12\n" + ask + " Wrong, 7 + 6 = 13.\n" +
                                       "Question: What is 7 + 6?\nProposed answer: 13\n" + ask + " correct, well done\n");
}

TEST(Critique, StopsAfterMaxRounds) {
    scripted_session solver({{" 10\n"}, {" 11\n"}, {" 12\n"}});
    scripted_session critic({{" Incorrect, try again.\n"}, {" INCORRECT\n"}});
    critique_options o;
    o.max_rounds = 2;
    const auto r = self_critique(solver, "What is 7 + 6?", o, &critic);
    EXPECT_FALSE(r.accepted);   // "Incorrect" does not start with "correct"
    EXPECT_EQ(r.n_rounds, 2u);
    EXPECT_EQ(r.final_answer, "12");
    EXPECT_EQ(r.transcript.size(), 6u);
    EXPECT_EQ(solver.n_pending_replies(), 0u);
    EXPECT_EQ(critic.n_pending_replies(), 0u);
    EXPECT_THROW(self_critique(solver, "x", o, &solver), error);
}

// ---------------------------------------------------------------------------------------------
// tool use

namespace {

struct test_tools {
    int n_calc = 0;
    std::vector<std::string> search_args;
    tool_registry registry;
    test_tools() {
        registry.add("calc", [this](const std::string& a) -> std::string {
            ++n_calc;
            if (a == "(3+4)*5") return "35";
            if (a == "1/0") throw error("division by zero");
            return "?";
        });
        registry.add("search", [this](const std::string& a) {
            search_args.push_back(a);
            return std::string("Paris is the capital of France.");
        });
    }
};

tool_use_options marker_options() {
    tool_use_options o;
    o.markers = {{"[SEARCH]", "[END]", "search"}, {"[CALC]", "[END]", "calc"}};
    o.generation = plain(64);
    return o;
}

}  // namespace

TEST(ToolUse, MarkerCallResultInsertedAndGenerationContinues) {
    test_tools t;
    const std::string prompt = "Question: What is (3+4)*5? Use tools.\n";
    scripted_session s({{"I will compute. [CALC] (3+4)*5 [END] junk after"}, {" The answer is 35.", "[/RESULT]"}});
    s.append(prompt);
    const auto r = run_tool_loop(s, t.registry, marker_options());
    EXPECT_EQ(r.text, "I will compute. [CALC] (3+4)*5 [END] [RESULT] 35 [/RESULT] The answer is 35.");
    EXPECT_EQ(r.final_text, " The answer is 35.");
    EXPECT_EQ(r.reason, stop_reason::end_of_generation);
    ASSERT_EQ(r.calls.size(), 1u);
    EXPECT_EQ(r.calls[0].tool, "calc");
    EXPECT_EQ(r.calls[0].arguments, "(3+4)*5");
    EXPECT_EQ(r.calls[0].result, "35");
    EXPECT_TRUE(r.calls[0].ok);
    EXPECT_EQ(r.calls[0].result_offset, std::string("I will compute. [CALC] (3+4)*5 [END]").size());
    EXPECT_EQ(s.transcript(), prompt + r.text);
    // The prefix was never fed again: the only appends are the prompt and the result block.
    ASSERT_EQ(s.log().appended.size(), 2u);
    EXPECT_EQ(s.log().appended[1], " [RESULT] 35 [/RESULT]");
    EXPECT_EQ(s.log().n_prefill_tokens, scripted_session::tokens_in(prompt) + 6u);   // 22 bytes -> 6 tokens
    // Generation paused on the closing marker, which was added to the stop strings.
    EXPECT_EQ(s.log().requests[0].stop, (std::vector<std::string>{"[END]"}));
}

TEST(ToolUse, JsonCalls) {
    test_tools t;
    tool_use_options o;
    o.markers.clear();
    o.json = json_call_tags{};
    o.result_prefix = "\n<tool_response>\n";
    o.result_suffix = "\n</tool_response>\n";
    o.generation = plain(64);
    scripted_session s({{"<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"capital of France\"}}\n</tool_call>"},
                        {"Paris.", "</tool_response>"}});
    const auto r = run_tool_loop(s, t.registry, o);
    ASSERT_EQ(t.search_args.size(), 1u);
    EXPECT_EQ(t.search_args[0], "{\"query\":\"capital of France\"}");
    EXPECT_EQ(r.text,
              "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"capital of France\"}}\n</tool_call>\n<tool_response>\n"
              "Paris is the capital of France.\n</tool_response>\nParis.");
}

TEST(ToolUse, ErrorsAreFedBackAsResults) {
    test_tools t;
    tool_use_options o = marker_options();
    o.json = json_call_tags{};
    o.max_calls = 10;
    scripted_session s({{"<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>"},
                        {" <tool_call>{\"name\": \"calc\", \"arguments\": </tool_call>"},
                        {" <tool_call>[1, 2]</tool_call>"},
                        {" oops [END]"},
                        {" [CALC] 1/0 [END]"},
                        {" I give up."}});
    const auto r = run_tool_loop(s, t.registry, o);
    ASSERT_EQ(r.calls.size(), 5u);
    for (const auto& c : r.calls) EXPECT_FALSE(c.ok);
    EXPECT_EQ(r.calls[0].result, "error: unknown tool 'weather' (available: calc, search)");
    EXPECT_EQ(r.calls[0].arguments, "{\"city\":\"Paris\"}");
    EXPECT_EQ(r.calls[1].result.rfind("error: malformed tool call JSON: ", 0), 0u) << r.calls[1].result;
    EXPECT_EQ(r.calls[2].result, "error: a tool call must be a JSON object with a string \"name\"");
    EXPECT_EQ(r.calls[3].result, "error: '[END]' without an opening marker before it");
    EXPECT_EQ(r.calls[4].result, "error: tool 'calc' failed: division by zero");
    EXPECT_EQ(t.n_calc, 1);
    EXPECT_EQ(r.final_text, " I give up.");
    EXPECT_NE(s.transcript().find("[END] [RESULT] error: tool 'calc' failed: division by zero [/RESULT] I give up."), std::string::npos);
}

TEST(ToolUse, CallLimit) {
    test_tools t;
    tool_use_options o = marker_options();
    o.max_calls = 2;
    scripted_session s({{"[CALC] (3+4)*5 [END]"}, {" [CALC] (3+4)*5 [END]"}, {" [CALC] (3+4)*5 [END]"},
                        {" Fine: [CALC] 1+1 [END] is 2."}});
    const auto r = run_tool_loop(s, t.registry, o);
    EXPECT_EQ(t.n_calc, 2);                  // the third call was not run
    ASSERT_EQ(r.calls.size(), 3u);
    EXPECT_TRUE(r.calls[1].ok);
    EXPECT_FALSE(r.calls[2].ok);
    EXPECT_EQ(r.calls[2].result, "error: tool call limit of 2 reached; answer without tools");
    EXPECT_TRUE(r.limit_reached);
    EXPECT_EQ(r.n_generations, 4u);
    // After the limit the closing marker is no longer a stop string: a call is just text.
    EXPECT_TRUE(s.log().requests.back().stop.empty());
    EXPECT_EQ(r.final_text, " Fine: [CALC] 1+1 [END] is 2.");
    EXPECT_EQ(r.reason, stop_reason::end_of_generation);
}

TEST(ToolUse, RegistryValidation) {
    tool_registry reg;
    EXPECT_THROW(reg.add("", [](const std::string&) { return std::string(); }), error);
    EXPECT_THROW(reg.add("x", tool_function{}), error);
    reg.add("b", [](const std::string&) { return std::string(); }, "does b").add("a", [](const std::string&) { return std::string(); });
    EXPECT_EQ(reg.describe(), "a\nb: does b\n");
    scripted_session s;
    tool_use_options o;
    o.markers = {{"", "[END]", "a"}};
    EXPECT_THROW(run_tool_loop(s, reg, o), error);
}

// ---------------------------------------------------------------------------------------------
// smoke run on a real model (GPT-2 architecture, random weights, real GPT-2 vocabulary): the loops
// run on a model-backed session, forks share the prefilled prompt, and a fork continues exactly as
// a session that was fed the same text from scratch.

#if __has_include("minigpt/generate/model_session.hpp")
#include "minigpt/generate/model_session.hpp"
#include "test_data.hpp"

TEST(PromptingOnModel, SelfConsistencyForksAndToolLoop) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const auto lm = llm::load(test::shared_path("models/gpt2-tiny.gguf"));
    model_session session(lm);
    const std::string prompt = "Q: What is 2+2?\nA: Let's think step by step.";
    self_consistency_options o;
    o.n_paths = 3;
    o.generation.max_tokens = 8;
    const auto r = self_consistency(session, prompt, o);
    const std::size_t prompt_tokens = session.n_tokens();
    EXPECT_GE(prompt_tokens, session.count_tokens(prompt));   // plus BOS if the vocabulary adds one
    EXPECT_EQ(session.transcript(), prompt);                  // the paths went to the forks
    ASSERT_EQ(r.paths.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(r.paths[i].seed, i + 1);
        if (r.paths[i].reason == stop_reason::max_tokens) EXPECT_EQ(r.paths[i].n_tokens, 8);
        else EXPECT_LE(r.paths[i].n_tokens, 8);
    }

    // A fork continues greedily exactly like a session prefilled from scratch with the same text.
    generation_options greedy;
    greedy.max_tokens = 6;
    greedy.sampling = sampling_params::greedy();
    auto fork = session.fork();
    const auto from_fork = fork->generate(greedy);
    model_session fresh(lm);
    fresh.append(prompt);
    const auto from_fresh = fresh.generate(greedy);
    EXPECT_EQ(from_fork.text, from_fresh.text);
    EXPECT_EQ(session.n_tokens(), prompt_tokens);             // the fork's generation left the parent alone

    // The tool loop terminates on a model that never calls a tool (or calls one: either is fine).
    tool_registry tools;
    tools.add("search", [](const std::string&) { return std::string("nothing found"); });
    tool_use_options t;
    t.generation = greedy;
    t.max_calls = 1;
    const auto loop = run_tool_loop(*session.fork(), tools, t);
    EXPECT_GE(loop.n_generations, 1u);
    EXPECT_LE(loop.n_generations, 3u);
}
#endif

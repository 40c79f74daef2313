// Self-critique (one or two sessions), the tool loop with its error paths and limits, on the
// scripted session; and a smoke run of the loops on a real model (gpt2-tiny).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "minigpt/generate/model_session.hpp"
#include "minigpt/prompt.hpp"
#include "prompting_helpers.hpp"
#include "test_data.hpp"

using namespace minigpt;
using minigpt::test::count_words;
using minigpt::test::plain;

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
    EXPECT_EQ(r.calls[2].result, "error: a tool call must be a JSON object with a non-empty string \"name\"");
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

// Chain-of-thought prompting on a text_session: few-shot CoT (demonstrations with worked reasoning)
// and zero-shot CoT in two stages ("Let's think step by step." then "Therefore, the answer is").
//
// The model is a scripted_session that plays planned replies (no weights needed), so the output
// shows exactly what is appended, what is generated and what the answer extractor takes from it.
// The same calls run unchanged on a model-backed session (minigpt::model_session).
#include <cstdio>
#include <string>
#include <vector>

#include "minigpt/generate/reasoning.hpp"
#include "minigpt/generate/scripted_session.hpp"

int main() {
    using namespace minigpt;
    try {
        // Few-shot CoT: the demonstrations' outputs are "{reasoning} The answer is {answer}."
        const std::vector<cot_demonstration> demos = {
            {"Roger has 5 tennis balls. He buys 2 cans of 3 balls each. How many tennis balls does he have now?",
             "Roger started with 5 balls. 2 cans of 3 balls is 6 balls. 5 + 6 = 11.", "11"},
            {"There are 15 trees. Workers plant trees until there are 21. How many trees did they plant?",
             "There were 15 trees and now there are 21, so they planted 21 - 15 = 6.", "6"},
        };
        const std::string question = "A baker makes 4 trays of 12 rolls and sells 30. How many rolls are left?";
        const auto prompt = build_few_shot_cot("", demos, question);
        scripted_session few_shot_model{{" 4 trays of 12 rolls is 4 * 12 = 48 rolls. 48 - 30 = 18. The answer is 18.\n\nQ:"}};
        const auto cot = chain_of_thought(few_shot_model, prompt.text);
        std::printf("== few-shot chain of thought: transcript\n%s\n", few_shot_model.transcript().c_str());
        std::printf("-> reasoning:%s\n-> extracted answer: %s\n\n", cot.reasoning.c_str(), cot.answer.value_or("(none)").c_str());

        // Zero-shot CoT: stage 1 generates the reasoning, stage 2 appends only the answer trigger.
        scripted_session zero_shot_model{
            {" The baker makes 4 * 12 = 48 rolls. After selling 30, 48 - 30 = 18 rolls are left.\n\n"},
            {" 18.\n", "Therefore, the answer is"},
        };
        const auto z = zero_shot_cot(zero_shot_model, question);
        std::printf("== zero-shot chain of thought: transcript\n%s\n", zero_shot_model.transcript().c_str());
        std::printf("-> stage 1 reasoning:%s\n-> stage 2 answer text:%s\n-> extracted answer: %s\n", z.reasoning.c_str(),
                    z.answer_text.c_str(), z.answer.value_or("(none)").c_str());
        std::printf("-> appended %zu times: the question once, then the trigger; the reasoning was not fed again\n",
                    zero_shot_model.log().n_appends);
        return 0;
    } catch (const error& e) {
        std::fprintf(stderr, "example_chain_of_thought: %s\n", e.what());
        return 1;
    }
}

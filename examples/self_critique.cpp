// Self-critique: the model answers, a critic reviews the answer, the model revises on feedback,
// until the critic replies CORRECT or the round limit is reached. Shown twice: the model reviewing
// its own answer in its own context, and a second session acting as the critic (a two-model
// dialogue).
//
// Both models are scripted_sessions playing planned replies (no weights needed).
// The same calls run unchanged on a model-backed session (minigpt::model_session).
#include <cstdio>
#include <string>

#include "minigpt/generate/critique.hpp"
#include "minigpt/generate/scripted_session.hpp"

namespace {

void show(const minigpt::critique_result& r) {
    for (const auto& t : r.transcript) std::printf("  [round %zu] %-6s: %s\n", t.round, t.role.c_str(), t.text.c_str());
    std::printf("  -> final answer: %s (%s after %zu review(s))\n", r.final_answer.c_str(), r.accepted ? "accepted" : "not accepted",
                r.n_rounds);
}

}  // namespace

int main() {
    using namespace minigpt;
    try {
        const std::string question = "A shirt costs $20 and is discounted by 15%. What is the new price?";

        scripted_session self_model{
            {" $15\n"},
            {" The discount is 15% of $20, which is $3, not $5. The price should be $20 - $3.\n"},
            {" $17\n"},
            {" CORRECT\n"},
        };
        const auto a = self_critique(self_model, question);
        std::printf("== self-review in one session; its context:\n%s\n", self_model.transcript().c_str());
        show(a);

        scripted_session solver{{" $15\n"}, {" $17\n"}};
        scripted_session critic{{" Wrong: 15% of $20 is $3, so the price is $17.\n"}, {" CORRECT, 20 - 3 = 17.\n"}};
        const auto b = self_critique(solver, question, {}, &critic);
        std::printf("\n== two sessions; the solver's context:\n%s\nthe critic's context:\n%s\n", solver.transcript().c_str(),
                    critic.transcript().c_str());
        show(b);
        return 0;
    } catch (const error& e) {
        std::fprintf(stderr, "example_self_critique: %s\n", e.what());
        return 1;
    }
}

// Self-consistency (Wang et al. 2023): several reasoning paths sampled from ONE prefilled prompt
// (the session is forked once per path, each with its own seed), an answer extracted from each,
// and a majority vote.
//
// The model is a scripted_session whose replies depend on the sampling seed, standing in for a
// sampled model (no weights needed). The log shows the prompt was fed once and forked n times.
// The same calls run unchanged on a model-backed session (minigpt::model_session).
#include <cstdio>
#include <string>

#include "minigpt/generate/reasoning.hpp"
#include "minigpt/generate/scripted_session.hpp"

int main() {
    using namespace minigpt;
    try {
        const std::string prompt =
            "Q: Janet's ducks lay 16 eggs per day. She eats 3 and bakes with 4. She sells the rest at $2 each. "
            "How much does she make every day?\nA: Let's think step by step.";
        scripted_session model;
        model.add_reply({" She has 16 - 3 - 4 = 9 eggs left and sells them for 9 * $2 = $18. The answer is 18.", "", 1});
        model.add_reply({" 16 - 3 = 13 eggs, and 13 * 2 = 26. The answer is 26.", "", 2});
        model.add_reply({" She uses 3 + 4 = 7 eggs, so 16 - 7 = 9 remain, earning $18 a day.", "", 3});
        model.add_reply({" The ducks lay 16 eggs; the rest after 7 is 9, times $2.00 makes $18.00.", "", 4});
        model.add_reply({" It depends on the market.", "", 5});

        self_consistency_options o;
        o.n_paths = 5;
        o.seed = 1;
        o.generation.sampling.temperature = 0.7f;
        const auto r = self_consistency(model, prompt, o);

        std::printf("prompt:\n%s\n\n", prompt.c_str());
        for (std::size_t i = 0; i < r.paths.size(); ++i)
            std::printf("path %zu (seed %llu):%s\n  -> answer: %s\n", i + 1, static_cast<unsigned long long>(r.paths[i].seed),
                        r.paths[i].text.c_str(), r.paths[i].answer.value_or("(abstains)").c_str());
        std::printf("\nvotes:");
        for (const auto& v : r.votes) std::printf("  %s x%zu", v.answer.c_str(), v.count);
        std::printf("  (abstained: %zu)\nmajority answer: %s\n", r.n_abstained, r.answer.value_or("(none)").c_str());
        std::printf("prompt appended %zu time(s) (%zu tokens prefilled), sessions forked %zu times, %zu tokens sampled\n",
                    model.log().n_appends, model.log().n_prefill_tokens, model.log().n_forks, model.log().n_generated_tokens);
        return 0;
    } catch (const error& e) {
        std::fprintf(stderr, "example_self_consistency: %s\n", e.what());
        return 1;
    }
}

// An LLM cascade on real model files (FrugalGPT): a cheap stage answers first, its mean token
// log-probability decides whether the answer is kept, else a dearer stage answers.
//
//   example_frugal_cascade CHEAP_MODEL [STRONG_MODEL] [TARGET]
//
// With one model file (e.g. stories260K.gguf) the cheap stage is that model sampling at temperature 1
// and the strong stage the same model decoding greedily; with two files the second is the strong one.
// "Correct" means "the same 6 tokens the strong stage writes" — the cascade tries to give the strong
// stage's answers for less. Thresholds are fitted on 60 story openings and checked on 60 others.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "minigpt/frugal/cascade.hpp"

using namespace minigpt;
using namespace minigpt::frugal;

namespace {

std::vector<std::string> openings(std::size_t from, std::size_t n) {
    const char* who[] = {"girl", "boy", "dog", "cat", "bird", "fish", "bear", "frog", "king", "queen", "tree", "car"};
    const char* name[] = {"Lily", "Tom", "Sue", "Max", "Ben", "Mia", "Sam", "Anna", "Tim", "Lucy"};
    const char* verb[] = {"liked to play", "was very sad", "had a big red ball", "wanted to go to the park", "found a box"};
    std::vector<std::string> out;
    for (std::size_t i = from; i < from + n; ++i)
        out.push_back(std::string("Once upon a time, there was a little ") + who[i % 12] + " named " + name[(i / 12) % 10] + ". " +
                      (i % 2 ? "She " : "He ") + verb[(i / 7) % 5]);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s CHEAP_MODEL [STRONG_MODEL] [TARGET_ACCURACY]\n", argv[0]);
        return 1;
    }
    try {
        const llm cheap = llm::load(argv[1]);
        const llm strong = argc > 2 ? llm::load(argv[2]) : cheap;
        const double target = argc > 3 ? std::atof(argv[3]) : 0.8;
        generation_params sampled, greedy;
        sampled.max_tokens = greedy.max_tokens = 6;
        sampled.sampling.temperature = 1.0f;
        sampled.sampling.seed = 1234;
        greedy.sampling = sampling_params::greedy();
        const context_params cp{.n_ctx = 256, .n_threads = 1};
        std::vector<cascade_stage> stages(2);
        stages[0] = {"cheap (sampled)", model_stage(cheap, cp, sampled), 0.1, 0.2};
        stages[1] = {"strong (greedy)", model_stage(strong, cp, greedy), 1.0, 2.0};
        const auto scorer = logprob_scorer();

        // Labels: the strong stage's own answers.
        auto labels_for = [&](const std::vector<std::string>& qs) {
            std::vector<std::string> l;
            for (const auto& q : qs) l.push_back(stages[1].answer(q).text);
            return l;
        };
        const auto dev = openings(0, 60), test = openings(60, 60);
        const auto dev_labels = labels_for(dev), test_labels = labels_for(test);
        const auto outcomes = collect_outcomes(stages, scorer, dev, [&](std::size_t i, const std::string& a) { return a == dev_labels[i]; });
        const auto fit = fit_thresholds(outcomes, target);
        std::printf("dev set (60): cost/accuracy frontier\n");
        for (const auto& p : fit.curve)
            std::printf("  threshold %8.3f  accuracy %.3f  cost %.5f\n", p.thresholds[0], p.accuracy, p.cost);
        std::printf("fitted for target %.2f: threshold %.3f, dev accuracy %.3f, dev cost %.5f (strongest alone %.3f at %.5f)%s\n", target,
                    fit.best.thresholds[0], fit.best.accuracy, fit.best.cost, fit.strongest.accuracy, fit.strongest.cost,
                    fit.reached ? "" : " -- target not reached");

        stages[0].threshold = fit.best.thresholds[0];
        double cost = 0, strong_cost = 0;
        std::size_t right = 0, by_cheap = 0;
        for (std::size_t i = 0; i < test.size(); ++i) {
            const auto r = run_cascade(stages, scorer, test[i]);
            cost += r.cost;
            right += r.answer == test_labels[i];
            by_cheap += r.stage == 0;
            strong_cost += stages[1].cost(stages[1].answer(test[i]));
            if (i < 3)
                std::printf("  \"%s\" -> stage %zu (cost %.5f):%s\n", test[i].c_str(), r.stage, r.cost, r.answer.c_str());
        }
        std::printf("held out (60): accuracy %.3f, cost %.5f per question, %zu answered by the cheap stage; strongest alone: cost %.5f\n",
                    double(right) / 60.0, cost / 60.0, by_cheap, strong_cost / 60.0);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

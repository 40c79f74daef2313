// `minigpt cascade`: FrugalGPT's LLM cascade over model files (minigpt/frugal/cascade.hpp). The
// cheapest model answers first; its answer is scored and accepted at or above that stage's
// threshold, else the next model is asked. Prints each stage's answer, score and cost.
#include <cstdio>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "command.hpp"
#include "minigpt/frugal/cascade.hpp"
#include "sampling_flags.hpp"

namespace minigpt::tool {
namespace {

// Pulls every occurrence of a repeatable flag ("--model X" or "--model=X") out of args.
std::vector<std::string> take_repeated(std::vector<std::string>& args, const std::vector<std::string>& names) {
    std::vector<std::string> values, rest;
    for (std::size_t i = 0; i < args.size(); ++i) {
        bool taken = false;
        for (const auto& n : names) {
            if (args[i] == n) {
                if (i + 1 >= args.size()) throw usage_error("flag " + n + " needs a value");
                values.push_back(args[++i]);
                taken = true;
            } else if (args[i].rfind(n + "=", 0) == 0) {
                values.push_back(args[i].substr(n.size() + 1));
                taken = true;
            }
            if (taken) break;
        }
        if (!taken) rest.push_back(args[i]);
    }
    args = std::move(rest);
    return values;
}

double number(const std::string& s, const std::string& what) {
    try {
        std::size_t used = 0;
        const double v = std::stod(s, &used);
        if (used == s.size()) return v;
    } catch (const std::logic_error&) {
    }
    throw usage_error(what + ": '" + s + "' is not a number");
}

int run_cascade_cmd(const std::vector<std::string>& all_args) {
    std::vector<std::string> args = all_args;
    const auto models = take_repeated(args, {"-m", "--model"});
    const auto costs = take_repeated(args, {"--cost"});
    const auto thresholds = take_repeated(args, {"--threshold"});
    flags f("usage: minigpt cascade --model CHEAP.gguf [--model BETTER.gguf]... [--cost IN,OUT]... [--threshold T]...\n"
            "                       -p QUESTION [--scorer logprob|judge] [--judge JUDGE.gguf] [-n N]\n"
            "--model, --cost and --threshold repeat, cheapest model first; --cost is the price per 1k prompt tokens\n"
            "and per 1k generated tokens of that model; --threshold is the score at or above which a stage's answer\n"
            "is accepted (one per stage but the last, which always answers).");
    f.value({"-p", "--prompt"}, "the question")
        .value({"--prefix"}, "text before the question", "")
        .value({"--suffix"}, "text after the question", "")
        .value({"-n", "--n-predict"}, "tokens each model generates at most", "32")
        .value({"-c", "--ctx-size"}, "context size (0: the model's)", "0")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .value({"-r", "--reverse-prompt"}, "stop string")
        .value({"--scorer"}, "logprob (mean token log-probability) or judge (judge model's P(yes))", "logprob")
        .value({"--judge"}, "judge model for --scorer judge (default: the last --model)");
    declare_sampling_flags(f);
    f.parse(args);
    if (f.help()) { std::cout << f.usage() << "  --model X, -m X             a model file (repeat, cheapest first)\n"
                                             "  --cost IN,OUT               price per 1k prompt / generated tokens (repeat)\n"
                                             "  --threshold T               acceptance score of a stage (repeat)\n"; return 0; }
    if (models.empty()) throw usage_error("give at least one --model");
    if (!costs.empty() && costs.size() != models.size()) throw usage_error("give one --cost per --model (or none)");
    if (thresholds.size() > models.size()) throw usage_error("more --threshold values than models");
    if (models.size() > 1 && thresholds.size() < models.size() - 1) throw usage_error("give a --threshold for every stage but the last");
    const std::string question = f.require("--prompt");

    generation_params gp;
    gp.max_tokens = static_cast<std::int32_t>(f.integer("--n-predict"));
    gp.sampling = read_sampling_flags(f);
    if (f.has("--reverse-prompt")) gp.stop.push_back(f.str("--reverse-prompt"));
    const context_params cp{.n_ctx = f.integer("--ctx-size"), .n_threads = static_cast<int>(f.integer("--threads"))};

    std::vector<frugal::cascade_stage> stages;
    std::vector<llm> loaded;
    for (std::size_t i = 0; i < models.size(); ++i) {
        loaded.push_back(llm::load(models[i]));
        frugal::cascade_stage s;
        s.name = models[i];
        s.answer = frugal::model_stage(loaded.back(), cp, gp, f.str("--prefix"), f.str("--suffix"));
        if (!costs.empty()) {
            const auto comma = costs[i].find(',');
            if (comma == std::string::npos) throw usage_error("--cost '" + costs[i] + "' is not IN,OUT");
            s.cost_per_1k_prompt = number(costs[i].substr(0, comma), "--cost");
            s.cost_per_1k_generated = number(costs[i].substr(comma + 1), "--cost");
        }
        if (i < thresholds.size()) s.threshold = number(thresholds[i], "--threshold");
        stages.push_back(std::move(s));
    }
    frugal::answer_scorer scorer;
    const std::string kind = f.str("--scorer");
    if (kind == "logprob") scorer = frugal::logprob_scorer();
    else if (kind == "judge") scorer = frugal::judge_scorer(f.has("--judge") ? llm::load(f.str("--judge")) : loaded.back(), cp);
    else throw usage_error("--scorer must be logprob or judge");

    const auto r = frugal::run_cascade(stages, scorer, question);
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
        const auto& s = r.steps[i];
        std::printf("stage %zu %s: %zu prompt + %zu generated tokens, cost %.6f, score %s -> %s\n  %s\n", i, s.stage.c_str(),
                    s.answer.n_prompt_tokens, s.answer.n_generated_tokens, s.cost,
                    std::isnan(s.score) ? "(last stage)" : std::to_string(s.score).c_str(), s.accepted ? "accepted" : "escalate",
                    s.answer.text.c_str());
    }
    std::printf("answer (stage %zu, total cost %.6f): %s\n", r.stage, r.cost, r.answer.c_str());
    return 0;
}

const register_command reg_cascade("cascade", "answer with the cheapest model whose answer scores above its threshold (FrugalGPT)", run_cascade_cmd);

}  // namespace
}  // namespace minigpt::tool

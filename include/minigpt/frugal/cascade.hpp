// LLM cascade (FrugalGPT, Chen, Zaharia & Zou 2023): ask the cheapest model first, score its answer,
// accept it at or above that stage's threshold, else ask the next model; the last stage's answer is
// always accepted. A query pays for every stage it reached.
//
// Stages are functions question -> answer (with token counts and, when known, the mean token
// log-probability), so a stage can be a real model (model_stage), a text_session (session_stage:
// scripted sessions in tests) or anything else. Cost of one call = prompt tokens / 1000 * price per
// 1k prompt tokens + generated tokens / 1000 * price per 1k generated tokens.
// Scorers: mean token log-probability of the answer (logprob_scorer); a judge model's probability
// of " yes" after "Is this answer correct?", normalised over " yes" and " no" (judge_scorer); or any
// user function. Higher is more confident.
// fit_thresholds: on a labelled dev set (every stage run on every question once), try per-stage
// thresholds drawn from the observed scores (plus "skip this stage", which neither calls nor pays
// for it) and keep the cheapest setting whose accuracy reaches the target, with the cost/accuracy
// Pareto curve of all settings tried. The search is exhaustive over the candidate grid, whose size
// per stage is cut so the whole grid stays under `max_settings`.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/frugal/completion_cache.hpp"
#include "minigpt/generate/text_session.hpp"

namespace minigpt::frugal {

struct stage_answer {
    std::string text;
    std::size_t n_prompt_tokens = 0, n_generated_tokens = 0;
    double mean_logprob = std::numeric_limits<double>::quiet_NaN();  // NaN: the stage cannot tell
};

using answer_function = std::function<stage_answer(const std::string& question)>;
using answer_scorer = std::function<double(const std::string& question, const stage_answer& answer)>;

struct cascade_stage {
    std::string name;
    answer_function answer;
    double cost_per_1k_prompt = 0, cost_per_1k_generated = 0;
    double threshold = -std::numeric_limits<double>::infinity();  // accept at or above; +inf: skip the stage

    double cost(const stage_answer& a) const {
        return double(a.n_prompt_tokens) / 1000.0 * cost_per_1k_prompt + double(a.n_generated_tokens) / 1000.0 * cost_per_1k_generated;
    }
};

struct cascade_step {
    std::string stage;
    stage_answer answer;
    double score = 0, cost = 0;
    bool accepted = false;
};

struct cascade_result {
    std::string answer;
    std::size_t stage = 0;      // index of the stage whose answer was accepted
    double cost = 0;            // total over every stage called
    std::vector<cascade_step> steps;
};

inline bool skipped(const cascade_stage& s) { return std::isinf(s.threshold) && s.threshold > 0; }

inline cascade_result run_cascade(const std::vector<cascade_stage>& stages, const answer_scorer& scorer, const std::string& question) {
    if (stages.empty()) throw error("cascade: no stages");
    if (!scorer) throw error("cascade: no scorer");
    cascade_result r;
    std::size_t last = stages.size();
    while (last > 0 && skipped(stages[last - 1])) --last;
    if (last == 0) throw error("cascade: every stage is skipped");
    for (std::size_t i = 0; i < last; ++i) {
        const auto& s = stages[i];
        if (skipped(s)) continue;
        if (!s.answer) throw error("cascade: stage " + std::to_string(i) + " (" + s.name + ") has no answer function");
        cascade_step step;
        step.stage = s.name;
        step.answer = s.answer(question);
        step.cost = s.cost(step.answer);
        r.cost += step.cost;
        const bool final_stage = i + 1 == last;
        step.score = final_stage ? std::numeric_limits<double>::quiet_NaN() : scorer(question, step.answer);
        step.accepted = final_stage || step.score >= s.threshold;
        r.steps.push_back(step);
        if (step.accepted) {
            r.answer = step.answer.text;
            r.stage = i;
            break;
        }
    }
    return r;
}

// Scores by the answer's mean token log-probability (requires stages that report it).
inline answer_scorer logprob_scorer() {
    return [](const std::string&, const stage_answer& a) {
        if (std::isnan(a.mean_logprob)) throw error("logprob_scorer: the stage does not report log-probabilities");
        return a.mean_logprob;
    };
}

// A stage backed by a text_session: each question gets a fork of `base` (which may hold shared
// instructions), the prompt is `prompt_prefix + question + prompt_suffix`.
inline answer_function session_stage(std::shared_ptr<const text_session> base, std::string prompt_prefix, std::string prompt_suffix,
                                     generation_options options) {
    return [=](const std::string& q) {
        auto s = base->fork();
        const std::size_t before = s->n_tokens();
        s->append(prompt_prefix + q + prompt_suffix);
        stage_answer a;
        a.n_prompt_tokens = s->n_tokens() - before;
        const auto g = s->generate(options);
        a.text = g.text;
        a.n_generated_tokens = static_cast<std::size_t>(g.n_tokens);
        return a;
    };
}

// A stage backed by a model: greedy or sampled generation recording token log-probabilities.
inline answer_function model_stage(llm lm, context_params cp, generation_params gp, std::string prompt_prefix = {},
                                   std::string prompt_suffix = {}) {
    return [=](const std::string& q) {
        context ctx(lm.weights, cp);
        const auto ids = lm.vocab->encode(prompt_prefix + q + prompt_suffix, gp.add_bos && lm.vocab->add_bos_default());
        const completion c = generate_completion(lm, ctx, ids, gp);
        stage_answer a;
        a.text = c.text;
        a.n_prompt_tokens = ids.size();
        a.n_generated_tokens = c.tokens.size();
        if (!c.logprobs.empty()) a.mean_logprob = c.mean_logprob();
        return a;
    };
}

// The judge's P(" yes") / (P(" yes") + P(" no")) for the next token after the judging prompt
// (the first token of each word; leading-space forms as a BPE/SentencePiece vocabulary spells them).
inline double judge_yes_probability(const llm& judge, context& ctx, const std::string& prompt) {
    const auto ids = judge.vocab->encode(prompt, judge.vocab->add_bos_default());
    const auto yes = judge.vocab->encode(" yes", false), no = judge.vocab->encode(" no", false);
    if (yes.empty() || no.empty() || yes[0] == no[0]) throw error("judge: the vocabulary cannot tell ' yes' from ' no'");
    ctx.truncate(0);
    ctx.decode(ids);
    const auto row = ctx.logits(0);
    const double ly = row[static_cast<std::size_t>(yes[0])], ln = row[static_cast<std::size_t>(no[0])];
    const double m = std::max(ly, ln);
    return std::exp(ly - m) / (std::exp(ly - m) + std::exp(ln - m));
}

inline std::string judge_prompt(const std::string& question, const std::string& answer) {
    return "Question: " + question + "\nAnswer: " + answer + "\nIs this answer correct? Answer yes or no:";
}

inline answer_scorer judge_scorer(llm judge, context_params cp = {}) {
    auto ctx = std::make_shared<context>(judge.weights, cp);
    return [judge = std::move(judge), ctx](const std::string& q, const stage_answer& a) {
        return judge_yes_probability(judge, *ctx, judge_prompt(q, a.text));
    };
}

// ---- threshold fitting ----

struct dev_outcome {
    double score = 0;     // the scorer's value for this stage's answer
    bool correct = false;
    double cost = 0;      // this stage's cost for this question
};

struct cascade_point {
    std::vector<double> thresholds;  // one per stage; the last is -inf (always accept) unless skipped
    double accuracy = 0, cost = 0;   // over the dev set; cost is per question
};

struct threshold_fit {
    cascade_point best;              // cheapest reaching the target (or the most accurate, if none does)
    bool reached = false;
    cascade_point strongest;         // always the last stage alone
    std::vector<cascade_point> curve;  // Pareto frontier: cost ascending, accuracy strictly ascending
    std::size_t n_settings = 0;      // settings evaluated
};

// outcomes[stage][question]: every stage on every dev question.
inline cascade_point evaluate_thresholds(const std::vector<std::vector<dev_outcome>>& outcomes, const std::vector<double>& thresholds) {
    const std::size_t m = outcomes.size(), n = outcomes.empty() ? 0 : outcomes[0].size();
    cascade_point p;
    p.thresholds = thresholds;
    std::size_t last = m;
    while (last > 0 && std::isinf(thresholds[last - 1]) && thresholds[last - 1] > 0) --last;
    if (last == 0) { p.accuracy = 0; p.cost = 0; return p; }
    double cost = 0;
    std::size_t right = 0;
    for (std::size_t q = 0; q < n; ++q) {
        for (std::size_t s = 0; s < last; ++s) {
            if (std::isinf(thresholds[s]) && thresholds[s] > 0) continue;
            const auto& o = outcomes[s][q];
            cost += o.cost;
            if (s + 1 == last || o.score >= thresholds[s]) {
                right += o.correct;
                break;
            }
        }
    }
    p.accuracy = n ? double(right) / double(n) : 0;
    p.cost = n ? cost / double(n) : 0;
    return p;
}

inline threshold_fit fit_thresholds(const std::vector<std::vector<dev_outcome>>& outcomes, double target_accuracy,
                                    std::size_t max_settings = 50000) {
    const std::size_t m = outcomes.size();
    if (m == 0) throw error("fit_thresholds: no stages");
    const std::size_t n = outcomes[0].size();
    if (n == 0) throw error("fit_thresholds: empty dev set");
    for (std::size_t s = 0; s < m; ++s)
        if (outcomes[s].size() != n) throw error("fit_thresholds: stage " + std::to_string(s) + " has " + std::to_string(outcomes[s].size()) + " outcomes, stage 0 has " + std::to_string(n));
    const double inf = std::numeric_limits<double>::infinity();
    // Candidates per non-final stage: observed scores (thinned to evenly spaced quantiles), -inf (always
    // accept) and +inf (skip). The final stage: -inf (always accept) or +inf (skip).
    const double per_stage = m > 1 ? std::pow(double(max_settings) / 2.0, 1.0 / double(m - 1)) : 1.0;
    const std::size_t k = std::max<std::size_t>(3, static_cast<std::size_t>(per_stage));
    std::vector<std::vector<double>> cand(m);
    for (std::size_t s = 0; s + 1 < m; ++s) {
        std::vector<double> sc;
        for (const auto& o : outcomes[s]) sc.push_back(o.score);
        std::sort(sc.begin(), sc.end());
        sc.erase(std::unique(sc.begin(), sc.end()), sc.end());
        std::vector<double> c = {-inf, inf};
        if (sc.size() + 2 <= k) c.insert(c.end(), sc.begin(), sc.end());
        else
            for (std::size_t i = 0; i + 2 < k; ++i) c.push_back(sc[(i * (sc.size() - 1)) / (k - 3 > 0 ? k - 3 : 1)]);
        std::sort(c.begin(), c.end());
        c.erase(std::unique(c.begin(), c.end()), c.end());
        cand[s] = std::move(c);
    }
    cand[m - 1] = {-inf, inf};

    threshold_fit fit;
    std::vector<double> t(m, -inf);
    t.assign(m, inf);
    t[m - 1] = -inf;
    fit.strongest = evaluate_thresholds(outcomes, t);
    std::vector<cascade_point> all;
    std::vector<std::size_t> idx(m, 0);
    while (true) {
        for (std::size_t s = 0; s < m; ++s) t[s] = cand[s][idx[s]];
        all.push_back(evaluate_thresholds(outcomes, t));
        std::size_t s = 0;
        while (s < m && ++idx[s] == cand[s].size()) idx[s++] = 0;
        if (s == m) break;
    }
    fit.n_settings = all.size();
    bool have = false;
    for (const auto& p : all) {
        if (p.accuracy >= target_accuracy && (!have || p.cost < fit.best.cost || (p.cost == fit.best.cost && p.accuracy > fit.best.accuracy))) {
            fit.best = p;
            have = true;
        }
    }
    fit.reached = have;
    if (!have)
        for (const auto& p : all)
            if (!have || p.accuracy > fit.best.accuracy || (p.accuracy == fit.best.accuracy && p.cost < fit.best.cost)) { fit.best = p; have = true; }
    std::sort(all.begin(), all.end(), [](const cascade_point& a, const cascade_point& b) {
        return a.cost != b.cost ? a.cost < b.cost : a.accuracy > b.accuracy;
    });
    double best_acc = -1;
    for (const auto& p : all)
        if (p.accuracy > best_acc) { fit.curve.push_back(p); best_acc = p.accuracy; }
    return fit;
}

// Runs every stage on every dev question (answers compared with `is_correct`) for fit_thresholds.
inline std::vector<std::vector<dev_outcome>> collect_outcomes(const std::vector<cascade_stage>& stages, const answer_scorer& scorer,
                                                              const std::vector<std::string>& questions,
                                                              const std::function<bool(std::size_t, const std::string&)>& is_correct) {
    std::vector<std::vector<dev_outcome>> out(stages.size());
    for (std::size_t s = 0; s < stages.size(); ++s)
        for (std::size_t q = 0; q < questions.size(); ++q) {
            const auto a = stages[s].answer(questions[q]);
            dev_outcome o;
            o.cost = stages[s].cost(a);
            o.correct = is_correct(q, a.text);
            o.score = s + 1 < stages.size() ? scorer(questions[q], a) : 0.0;
            out[s].push_back(o);
        }
    return out;
}

}  // namespace minigpt::frugal

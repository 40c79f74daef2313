// Reasoning prompts: few-shot chain-of-thought (Wei et al. 2022), zero-shot chain-of-thought
// (Kojima et al. 2022) and self-consistency (Wang et al. 2023), on any text_session.
//
// Few-shot CoT: demonstrations carry worked reasoning, rendered as the output
// "{reasoning} The answer is {answer}." through the few-shot builder (so budgets and similarity
// selection apply), and the answer is extracted from the generated reasoning.
// Zero-shot CoT, two stages on one session: append "Q: {question}\nA: Let's think step by step."
// and generate the reasoning; the reasoning is then already in the context (generation appends to
// it), so stage two only appends the answer trigger ("Therefore, the answer is", after a space
// unless the context already ends in whitespace) and generates the answer, from which the
// extractor takes the final answer. Nothing is recomputed.
// Self-consistency: the prompt is appended ONCE to the given session; each of the n paths is a
// fork() of it (the forks share the prefilled prompt, e.g. its KV cache), sampled with its own
// seed (seed + i, skipping the "random" seed value) at a temperature > 0. Each path's answer is
// extracted (optionally after an answer trigger, as in zero-shot CoT); paths without an answer
// abstain. Majority vote: most votes first; ties go to the answer that the earliest path gave.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/rng.hpp"
#include "minigpt/generate/text_session.hpp"
#include "minigpt/text/answer_parser.hpp"
#include "minigpt/text/few_shot.hpp"

namespace minigpt {

struct cot_demonstration {
    std::string question, reasoning, answer;
};

struct cot_format {
    std::string answer_prefix = " The answer is ";   // between the reasoning and the answer
    std::string answer_suffix = ".";
};

inline std::vector<demonstration> cot_demonstrations(std::span<const cot_demonstration> demos, const cot_format& format = {}) {
    std::vector<demonstration> out;
    out.reserve(demos.size());
    for (const auto& d : demos) out.push_back({d.question, d.reasoning + format.answer_prefix + d.answer + format.answer_suffix});
    return out;
}

inline few_shot_prompt build_few_shot_cot(std::string_view instruction, std::span<const cot_demonstration> demos,
                                          std::string_view question, const few_shot_options& options = {},
                                          const cot_format& format = {}) {
    const auto plain = cot_demonstrations(demos, format);
    return build_few_shot(instruction, plain, question, options);
}

struct reasoning_result {
    std::string reasoning;                 // generated reasoning (stage 1)
    std::string answer_text;               // generated answer (zero-shot stage 2); for few-shot CoT, the reasoning
    std::optional<std::string> answer;     // extracted answer
    generation_result reasoning_generation;
    generation_result answer_generation;   // zero-shot CoT only
};

inline generation_options default_reasoning_generation() {
    generation_options g;
    g.max_tokens = 256;
    g.stop = {"\n\n"};
    g.sampling = sampling_params::greedy();
    return g;
}

inline generation_options default_answer_generation() {
    generation_options g;
    g.max_tokens = 32;
    g.stop = {"\n"};
    g.sampling = sampling_params::greedy();
    return g;
}

// Appends a (few-shot CoT) prompt, generates the reasoning and extracts its answer.
inline reasoning_result chain_of_thought(text_session& session, std::string_view prompt,
                                         const generation_options& generation = default_reasoning_generation(),
                                         const answer_extractor& extract = number_extractor()) {
    if (!extract) throw error("chain_of_thought: no answer extractor given");
    session.append(prompt);
    reasoning_result r;
    r.reasoning_generation = session.generate(generation);
    r.reasoning = r.reasoning_generation.text;
    r.answer_text = r.reasoning;
    r.answer = extract(r.reasoning);
    return r;
}

struct zero_shot_cot_options {
    std::string question_prefix = "Q: ";
    std::string reasoning_trigger = "\nA: Let's think step by step.";
    std::string answer_trigger = "Therefore, the answer is";
    generation_options reasoning_generation = default_reasoning_generation();
    generation_options answer_generation = default_answer_generation();
    answer_extractor extract = number_extractor();
};

namespace detail {

// What separates generated text from an appended trigger: nothing if the context already ends in
// whitespace (the generated text plus its stop string), else one space.
inline std::string trigger_after(const generation_result& g, const std::string& trigger) {
    const std::string tail = g.text + g.stop_string;
    const bool ends_in_space = !tail.empty() && std::isspace(static_cast<unsigned char>(tail.back()));
    return ends_in_space ? trigger : " " + trigger;
}

}  // namespace detail

inline reasoning_result zero_shot_cot(text_session& session, std::string_view question, const zero_shot_cot_options& options = {}) {
    if (!options.extract) throw error("zero_shot_cot: no answer extractor given");
    session.append(options.question_prefix + std::string(question) + options.reasoning_trigger);
    reasoning_result r;
    r.reasoning_generation = session.generate(options.reasoning_generation);
    r.reasoning = r.reasoning_generation.text;
    session.append(detail::trigger_after(r.reasoning_generation, options.answer_trigger));
    r.answer_generation = session.generate(options.answer_generation);
    r.answer_text = r.answer_generation.text;
    r.answer = options.extract(r.answer_text);
    return r;
}

struct self_consistency_options {
    std::size_t n_paths = 5;
    generation_options generation = [] {
        generation_options g = default_reasoning_generation();
        g.sampling = sampling_params{};
        g.sampling.temperature = 0.7f;
        return g;
    }();
    std::uint64_t seed = 1;               // path i samples with seed + i; k_random_seed: a random base
    answer_extractor extract = number_extractor();
    std::string answer_trigger;           // non-empty: each path then appends it and generates its answer
    generation_options answer_generation = default_answer_generation();
};

struct reasoning_path {
    std::uint64_t seed = 0;
    std::string text;                     // the sampled reasoning
    std::string answer_text;              // text the answer was extracted from
    std::optional<std::string> answer;
    stop_reason reason = stop_reason::max_tokens;
    std::int32_t n_tokens = 0;            // tokens generated on this path (both stages)
};

struct answer_vote {
    std::string answer;
    std::size_t count = 0;
    std::size_t first_path = 0;           // index of the first path that gave it
};

struct self_consistency_result {
    std::optional<std::string> answer;    // the majority answer; nullopt if every path abstained
    std::vector<answer_vote> votes;       // most votes first, ties by first_path
    std::vector<reasoning_path> paths;    // in sampling order
    std::size_t n_abstained = 0;
};

// Tallies answers (nullopt = abstain) into a vote, most votes first, ties to the earliest answer.
inline std::vector<answer_vote> tally_votes(std::span<const std::optional<std::string>> answers) {
    std::vector<answer_vote> votes;
    for (std::size_t i = 0; i < answers.size(); ++i) {
        if (!answers[i]) continue;
        auto it = std::find_if(votes.begin(), votes.end(), [&](const answer_vote& v) { return v.answer == *answers[i]; });
        if (it == votes.end()) votes.push_back({*answers[i], 1, i});
        else ++it->count;
    }
    std::stable_sort(votes.begin(), votes.end(), [](const answer_vote& a, const answer_vote& b) {
        return a.count != b.count ? a.count > b.count : a.first_path < b.first_path;
    });
    return votes;
}

inline self_consistency_result self_consistency(text_session& session, std::string_view prompt,
                                                const self_consistency_options& options = {}) {
    if (options.n_paths == 0) throw error("self_consistency: n_paths must be at least 1");
    if (!(options.generation.sampling.temperature > 0.0f))
        throw error("self_consistency: generation temperature is " + std::to_string(options.generation.sampling.temperature) +
                    "; it must be > 0, or every path is the same greedy one");
    if (!options.extract) throw error("self_consistency: no answer extractor given");

    session.append(prompt);
    std::uint64_t seed = options.seed == k_random_seed ? rng::random_seed() : options.seed;
    self_consistency_result result;
    std::vector<std::optional<std::string>> answers;
    for (std::size_t i = 0; i < options.n_paths; ++i, ++seed) {
        if (seed == k_random_seed) ++seed;   // that value asks the sampler for a random seed
        auto path_session = session.fork();
        generation_options g = options.generation;
        g.sampling.seed = seed;
        reasoning_path p;
        p.seed = seed;
        const generation_result reasoning = path_session->generate(g);
        p.text = reasoning.text;
        p.reason = reasoning.reason;
        p.n_tokens = reasoning.n_tokens;
        p.answer_text = reasoning.text;
        if (!options.answer_trigger.empty()) {
            path_session->append(detail::trigger_after(reasoning, options.answer_trigger));
            generation_options ag = options.answer_generation;
            ag.sampling.seed = seed;
            const generation_result answer = path_session->generate(ag);
            p.answer_text = answer.text;
            p.n_tokens += answer.n_tokens;
        }
        p.answer = options.extract(p.answer_text);
        if (!p.answer) ++result.n_abstained;
        answers.push_back(p.answer);
        result.paths.push_back(std::move(p));
    }
    result.votes = tally_votes(answers);
    if (!result.votes.empty()) result.answer = result.votes.front().answer;
    return result;
}

}  // namespace minigpt

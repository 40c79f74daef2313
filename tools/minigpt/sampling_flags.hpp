// Sampling and model flags shared by the generate, chat and perplexity subcommands,
// spelt as llama-cli spells them.
#pragma once

#include <string>

#include "command.hpp"
#include "minigpt/generate/sampling_params.hpp"

namespace minigpt::tool {

inline void declare_sampling_flags(flags& f) {
    const sampling_params d;
    f.value({"--temp"}, "temperature (0: greedy)", std::to_string(d.temperature))
        .value({"--top-k"}, "top-k (0: off)", std::to_string(d.top_k))
        .value({"--top-p"}, "top-p (1: off)", std::to_string(d.top_p))
        .value({"--min-p"}, "min-p (0: off)", std::to_string(d.min_p))
        .value({"--typical"}, "locally typical sampling p (1: off)", std::to_string(d.typical_p))
        .value({"--repeat-penalty"}, "repetition penalty (1: off)", std::to_string(d.repeat_penalty))
        .value({"--repeat-last-n"}, "tokens the penalties look at (-1: whole context)", std::to_string(d.penalty_last_n))
        .value({"--presence-penalty"}, "presence penalty", std::to_string(d.presence_penalty))
        .value({"--frequency-penalty"}, "frequency penalty", std::to_string(d.frequency_penalty))
        .value({"-s", "--seed"}, "random seed (-1: random)", "-1");
}

inline sampling_params read_sampling_flags(const flags& f) {
    sampling_params p;
    p.temperature = static_cast<float>(f.real("--temp"));
    p.top_k = static_cast<std::int32_t>(f.integer("--top-k"));
    p.top_p = static_cast<float>(f.real("--top-p"));
    p.min_p = static_cast<float>(f.real("--min-p"));
    p.typical_p = static_cast<float>(f.real("--typical"));
    p.repeat_penalty = static_cast<float>(f.real("--repeat-penalty"));
    p.penalty_last_n = static_cast<std::int32_t>(f.integer("--repeat-last-n"));
    p.presence_penalty = static_cast<float>(f.real("--presence-penalty"));
    p.frequency_penalty = static_cast<float>(f.real("--frequency-penalty"));
    const auto seed = f.integer("--seed");
    p.seed = seed < 0 ? k_random_seed : static_cast<std::uint64_t>(seed);
    return p;
}

}  // namespace minigpt::tool

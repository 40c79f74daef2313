// Sampling and model flags shared by the generate, chat and perplexity subcommands,
// spelt as llama-cli spells them.
#pragma once

#include <climits>
#include <cstdint>
#include <cstdio>
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

// Every value is range-checked here, before a model is loaded, so a typo costs no load time and
// nothing (no prompt echo) is printed before the error.
inline sampling_params read_sampling_flags(const flags& f) {
    constexpr double big = 1e30;
    sampling_params p;
    p.temperature = static_cast<float>(f.real_in("--temp", 0.0, big, "0 for greedy, or positive"));
    p.top_k = static_cast<std::int32_t>(f.integer_in("--top-k", 0, INT32_MAX, "0 for off, or a positive count"));
    p.top_p = static_cast<float>(f.real_in("--top-p", 0.0, 1.0, "a probability in [0, 1]; 1: off"));
    p.min_p = static_cast<float>(f.real_in("--min-p", 0.0, 1.0, "a probability in [0, 1]; 0: off"));
    p.typical_p = static_cast<float>(f.real_in("--typical", 0.0, 1.0, "a probability in [0, 1]; 1: off"));
    p.repeat_penalty = static_cast<float>(f.real_in("--repeat-penalty", 1e-6, big, "positive; 1: off"));
    p.penalty_last_n = static_cast<std::int32_t>(f.integer_in("--repeat-last-n", -1, INT32_MAX, "-1 for the whole context, or >= 0"));
    p.presence_penalty = static_cast<float>(f.real_in("--presence-penalty", -big, big, "finite"));
    p.frequency_penalty = static_cast<float>(f.real_in("--frequency-penalty", -big, big, "finite"));
    const auto seed = f.integer("--seed");
    p.seed = seed < 0 ? k_random_seed : static_cast<std::uint64_t>(seed);
    return p;
}

// -t: llama.cpp's -1 (and 0) mean the default (physical cores). More threads than the machine runs at
// once only make them wait for each other, so larger values are capped with a warning.
inline int read_threads(const flags& f, const std::string& name = "--threads") {
    const auto t = f.integer_in(name, -1, 1 << 20, "-1 or 0 for the physical cores, or a positive count");
    if (t <= 0) return 0;
    const int hw = hardware_threads();
    if (t > hw) {
        std::fprintf(stderr, "minigpt: warning: -t %lld is more than the %d hardware threads; using %d\n", static_cast<long long>(t), hw, hw);
        return hw;
    }
    return static_cast<int>(t);
}

// -c: 0 (the model's, at most 4096) or a positive number of positions.
inline std::int64_t read_ctx(const flags& f, const std::string& name = "--ctx-size") {
    return f.integer_in(name, 0, 1 << 24, "0 for the model's context, or a positive number of tokens up to 16777216");
}

// -b: at least one token per forward chunk.
inline std::int64_t read_batch(const flags& f, const std::string& name = "--batch-size") {
    return f.integer_in(name, 1, 1 << 24, "a positive number of tokens");
}

// -n: as llama.cpp, -1 (until end of generation) and -2 (until the context is full) both generate until
// something stops it; anything below is a mistake.
inline std::int32_t read_n_predict(const flags& f, const std::string& name = "--n-predict") {
    return static_cast<std::int32_t>(f.integer_in(name, -2, INT32_MAX, "-1 or -2 for no limit, or >= 0"));
}

}  // namespace minigpt::tool

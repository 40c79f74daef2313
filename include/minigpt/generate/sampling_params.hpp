// sampling_params: the knobs of the sampler chain, named and defaulted as in llama.cpp.
//
// The chain applies, in llama.cpp's default order: logit bias / banned tokens,
// repetition + frequency + presence penalties over the last `penalty_last_n` tokens,
// top-k, typical-p, top-p, min-p, temperature, then a seeded draw. A temperature of
// 0 (or below) means greedy: the most likely token after bias and penalties.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace minigpt {

struct sampling_params {
    float temperature = 0.8f;       // <= 0: greedy
    std::int32_t top_k = 40;        // <= 0: off
    float top_p = 0.95f;            // >= 1: off
    float min_p = 0.05f;            // <= 0: off
    float typical_p = 1.0f;         // >= 1: off
    float repeat_penalty = 1.0f;    // 1: off (llama.cpp's --repeat-penalty)
    float frequency_penalty = 0.0f; // 0: off
    float presence_penalty = 0.0f;  // 0: off
    std::int32_t penalty_last_n = 64;  // how many recent tokens the penalties look at; -1: the whole context
    std::uint64_t seed = 0xFFFFFFFFu;  // llama.cpp's LLAMA_DEFAULT_SEED means "pick one at random"
    // (token id, added logit); -infinity bans the token.
    std::vector<std::pair<std::int32_t, float>> logit_bias;

    static sampling_params greedy() {
        sampling_params p;
        p.temperature = 0.0f;
        return p;
    }
};

inline constexpr std::uint64_t k_random_seed = 0xFFFFFFFFu;

}  // namespace minigpt

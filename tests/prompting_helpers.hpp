// Helpers shared by the prompting tests.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/prompt.hpp"

namespace minigpt::test {


// An independent token counter for budget tests: whitespace-separated words.
inline std::size_t count_words(std::string_view s) {
    std::size_t n = 0;
    bool in_word = false;
    for (char c : s) {
        const bool space = c == ' ' || c == '\n' || c == '\t';
        if (!space && !in_word) ++n;
        in_word = !space;
    }
    return n;
}

inline generation_options plain(std::int32_t max_tokens = -1, std::vector<std::string> stop = {}) {
    generation_options g;
    g.max_tokens = max_tokens;
    g.stop = std::move(stop);
    g.sampling = sampling_params::greedy();
    return g;
}

inline bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const std::size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}


}  // namespace minigpt::test

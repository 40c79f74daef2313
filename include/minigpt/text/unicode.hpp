// Unicode character properties for the pre-tokenizers: general-category group and White_Space,
// and the lower-case / NFD-base maps WordPiece uses (unicode_case_tables.hpp).
//
// The data are the generated ranges in unicode_tables.hpp (one entry where the properties change).
// Pre-tokenizers ask for the properties of every character of the input, so lookups go through a
// two-level table built once from those ranges at first use (256-code-point blocks, identical
// blocks shared: 142 blocks, 45 KB); `flags_by_search` is the plain binary search over the ranges that
// the table is built from.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/text/unicode_case_tables.hpp"
#include "minigpt/text/unicode_tables.hpp"

namespace minigpt::unicode {

// General-category groups (Unicode's first letter of the category), as the generator numbers them.
enum class cpt_group : std::uint8_t {
    other = 0,        // Cf, Cs, Co, Cn (format, surrogate, private use, unassigned)
    letter = 1,       // L*  (\p{L})
    mark = 2,         // M*  (\p{M})
    number = 3,       // N*  (\p{N})
    punctuation = 4,  // P*  (\p{P})
    symbol = 5,       // S*  (\p{S})
    separator = 6,    // Z*  (\p{Z})
    control = 7,      // Cc
};

inline constexpr char32_t k_max_code_point = 0x10FFFF;

struct cpt_flags {
    std::uint8_t bits = 0;
    cpt_group group() const noexcept { return static_cast<cpt_group>(bits & 7); }
    bool is_whitespace() const noexcept { return (bits & 8) != 0; }  // the White_Space property (regex \s)
    bool is_letter() const noexcept { return group() == cpt_group::letter; }
    bool is_number() const noexcept { return group() == cpt_group::number; }
};

inline const char* unicode_version() noexcept { return tables::k_unicode_version; }

// Reference lookup: binary search over the generated ranges. Code points above U+10FFFF are "other".
inline cpt_flags flags_by_search(char32_t cp) noexcept {
    if (cp > k_max_code_point) return {};
    const auto* begin = std::begin(tables::k_cpt_ranges);
    const auto* end = std::end(tables::k_cpt_ranges);
    // Last entry whose first code point is <= cp; the first entry is U+0000, so there is one.
    const auto* it = std::upper_bound(begin, end, cp, [](char32_t c, std::uint32_t e) { return c < (e >> 8); });
    return {static_cast<std::uint8_t>(*(it - 1) & 0xFF)};
}

namespace detail {

struct flags_table {
    static constexpr std::uint32_t block_bits = 8;
    static constexpr std::uint32_t n_blocks = (k_max_code_point >> block_bits) + 1;
    std::array<std::uint16_t, n_blocks> block_of{};       // (n_blocks) index into blocks
    std::vector<std::array<std::uint8_t, 256>> blocks;     // (n_unique_blocks, 256) flag bytes

    flags_table() {
        std::map<std::array<std::uint8_t, 256>, std::uint16_t> seen;
        const auto& ranges = tables::k_cpt_ranges;
        const std::size_t n_ranges = std::size(ranges);
        std::size_t r = 0;
        std::array<std::uint8_t, 256> block{};
        for (std::uint32_t b = 0; b < n_blocks; ++b) {
            for (std::uint32_t i = 0; i < 256; ++i) {
                const std::uint32_t cp = (b << block_bits) | i;
                while (r + 1 < n_ranges && (ranges[r + 1] >> 8) <= cp) ++r;
                block[i] = static_cast<std::uint8_t>(ranges[r] & 0xFF);
            }
            auto [it, inserted] = seen.emplace(block, static_cast<std::uint16_t>(blocks.size()));
            if (inserted) blocks.push_back(block);
            block_of[b] = it->second;
        }
    }
};

inline const flags_table& table() {
    static const auto t = std::make_unique<const flags_table>();
    return *t;
}

}  // namespace detail

// Fast lookup used by the tokenizers. Code points above U+10FFFF are "other".
inline cpt_flags flags_of(char32_t cp) {
    if (cp > k_max_code_point) return {};
    const auto& t = detail::table();
    return {t.blocks[t.block_of[cp >> detail::flags_table::block_bits]][cp & 0xFF]};
}

// The first code point of cp's lower-case form (str.lower()), cp itself if it has none.
inline char32_t to_lower(char32_t cp) noexcept {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    const auto& t = tables::k_lowercase_pairs;
    std::size_t lo = 0, hi = std::size(t) / 2;
    while (lo < hi) {
        const std::size_t mid = (lo + hi) / 2;
        if (t[2 * mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < std::size(t) / 2 && t[2 * lo] == cp ? static_cast<char32_t>(t[2 * lo + 1]) : cp;
}

// The first code point of cp's canonical decomposition (NFD): U+00E9 -> 'e'; cp itself if none.
inline char32_t nfd_base(char32_t cp) noexcept {
    if (cp < 0xC0) return cp;
    const auto& t = tables::k_nfd_base_ranges;
    std::size_t lo = 0, hi = std::size(t) / 3;  // first range whose last >= cp
    while (lo < hi) {
        const std::size_t mid = (lo + hi) / 2;
        if (t[3 * mid + 1] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < std::size(t) / 3 && t[3 * lo] <= cp ? static_cast<char32_t>(t[3 * lo + 2]) : cp;
}

}  // namespace minigpt::unicode

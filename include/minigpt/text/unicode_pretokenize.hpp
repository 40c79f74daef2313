// GPT-2's pre-tokenizer, written out by hand over code points (no regex engine).
//
// Byte-level BPE never merges across the pieces of this split. The original is the regex
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (Python `regex` semantics: the first alternative that matches at a position wins, each greedy).
// Here each alternative is one branch of a scan that looks at most one character ahead, except
// `\s+(?!\S)`, which takes a whitespace run but leaves its last character to start the next
// piece when a non-space follows (so " world" keeps its space).
//
// Ill-formed UTF-8 is not repaired: each ill-formed byte sequence counts as one character of the
// `[^\s\p{L}\p{N}]` kind (as U+FFFD would), so the pieces always concatenate to the input bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "minigpt/text/unicode.hpp"
#include "minigpt/text/utf8.hpp"

namespace minigpt::unicode {

namespace detail {

// Character classes of the GPT-2 pattern.
enum pre_class : std::uint8_t { cls_other = 0, cls_letter = 1, cls_number = 2, cls_space = 3, cls_end = 4 };

inline constexpr std::array<std::uint8_t, 128> k_ascii_class = [] {
    std::array<std::uint8_t, 128> t{};
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = cls_letter;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = cls_letter;
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = cls_number;
    for (int c : {'\t', '\n', '\v', '\f', '\r', ' '}) t[static_cast<std::size_t>(c)] = cls_space;
    return t;
}();

struct pre_char {
    std::uint8_t cls;
    std::uint8_t length;  // bytes
};

inline pre_char classify(const unsigned char* p, std::size_t n) {
    if (p[0] < 0x80) return {k_ascii_class[p[0]], 1};
    const auto d = utf8::decode(p, n);
    if (d.state != utf8::status::ok) return {cls_other, d.length};
    const auto f = flags_of(d.cp);
    const std::uint8_t cls = f.is_whitespace() ? cls_space : f.is_letter() ? cls_letter : f.is_number() ? cls_number : cls_other;
    return {cls, d.length};
}

}  // namespace detail

// Calls on_piece(std::string_view) for each piece of `text`, in order.
template <class Fn>
void split_gpt2(std::string_view text, Fn&& on_piece) {
    using namespace detail;
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    auto at = [&](std::size_t i) { return classify(s + i, n - i); };
    // End of the run of characters of class `cls` starting at byte i.
    auto run_end = [&](std::size_t i, std::uint8_t cls) {
        while (i < n) {
            const auto c = at(i);
            if (c.cls != cls) break;
            i += c.length;
        }
        return i;
    };
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        std::size_t end = 0;
        if (c == '\'' && i + 1 < n) {
            const unsigned char c1 = s[i + 1];
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') end = i + 2;
            else if (i + 2 < n) {
                const unsigned char c2 = s[i + 2];
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) end = i + 3;
            }
        }
        if (end == 0) {
            const auto here = at(i);
            // " ?X+" alternatives: an optional leading space, then a run of one class.
            std::size_t body = i;
            std::uint8_t cls = here.cls;
            if (c == ' ') {
                body = i + 1;
                cls = body < n ? at(body).cls : static_cast<std::uint8_t>(cls_end);
            }
            if (cls == cls_letter || cls == cls_number || cls == cls_other) {
                end = run_end(body, cls);
            } else {
                // Whitespace at i: `\s+(?!\S)` leaves the run's last character when a non-space follows.
                std::size_t j = i, last = i, count = 0;
                while (j < n) {
                    const auto w = at(j);
                    if (w.cls != cls_space) break;
                    last = j;
                    j += w.length;
                    ++count;
                }
                end = (count > 1 && j < n) ? last : j;
            }
        }
        on_piece(std::string_view(text.data() + i, end - i));
        i = end;
    }
}

}  // namespace minigpt::unicode

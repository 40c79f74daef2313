// UTF-8 decoding, encoding and repair, shared by the tokenizers and the streaming detokenizer.
//
// Decoding follows the Unicode Standard's table of well-formed byte sequences (Table 3-7): no
// overlongs, no surrogates, nothing above U+10FFFF. Ill-formed input is never an error here; a
// decoder reports the "maximal subpart" of an ill-formed sequence (the longest prefix of the bytes
// that could still have started a well-formed character, at least one byte), which is the unit
// the Unicode Standard recommends replacing with one U+FFFD. That rule depends only on bytes
// already seen, so a stream repaired piece by piece gives exactly the bytes of the whole text
// repaired at once, as long as an unfinished last character is held back (status::truncated).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace minigpt::utf8 {

inline constexpr char32_t k_replacement = 0xFFFD;
inline constexpr std::string_view k_replacement_utf8 = "\xEF\xBF\xBD";

enum class status : std::uint8_t {
    ok,         // a well-formed character of `length` bytes
    invalid,    // `length` bytes (the maximal subpart) can never be part of a well-formed character
    truncated,  // all `length` bytes left are a valid start, but the character needs more bytes
};

struct decoded {
    char32_t cp;          // the character, or U+FFFD unless status is ok
    std::uint8_t length;  // bytes consumed, >= 1
    status state;
};

// Decodes the character starting at p[0]; n >= 1 bytes are available.
inline decoded decode(const unsigned char* p, std::size_t n) noexcept {
    const unsigned char b0 = p[0];
    if (b0 < 0x80) return {b0, 1, status::ok};
    std::uint8_t need;      // total bytes of the sequence
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Table 3-7)
    char32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) { need = 2; cp = b0 & 0x1F; }
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3; cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;        // no overlongs below U+0800
        else if (b0 == 0xED) hi = 0x9F;   // no surrogates U+D800..U+DFFF
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4; cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;        // no overlongs below U+10000
        else if (b0 == 0xF4) hi = 0x8F;   // nothing above U+10FFFF
    } else {
        return {k_replacement, 1, status::invalid};  // 80..C1 and F5..FF never start a character
    }
    for (std::uint8_t i = 1; i < need; ++i) {
        if (i >= n) return {k_replacement, i, status::truncated};
        const unsigned char b = p[i];
        const unsigned char min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
        if (b < min || b > max) return {k_replacement, i, status::invalid};
        cp = (cp << 6) | (b & 0x3F);
    }
    return {cp, need, status::ok};
}

inline decoded decode(std::string_view s, std::size_t pos) noexcept {
    return decode(reinterpret_cast<const unsigned char*>(s.data()) + pos, s.size() - pos);
}

// Appends the UTF-8 form of cp (which must be a scalar value: <= U+10FFFF, not a surrogate).
inline void append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

inline std::string encode(char32_t cp) {
    std::string s;
    append(s, cp);
    return s;
}

inline bool is_valid(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const auto d = decode(s, i);
        if (d.state != status::ok) return false;
        i += d.length;
    }
    return true;
}

// Appends s to out with every ill-formed subsequence replaced by U+FFFD. When `hold_back_tail`
// is set, an unfinished character at the very end is not written; the number of bytes held back
// is returned (0..3) so a stream can retry them with the next bytes.
inline std::size_t append_repaired(std::string& out, std::string_view s, bool hold_back_tail = false) {
    std::size_t i = 0;
    while (i < s.size()) {
        // Runs of ASCII and well-formed characters are copied in one go.
        const std::size_t run = i;
        decoded d{};
        while (i < s.size()) {
            if (static_cast<unsigned char>(s[i]) < 0x80) { ++i; continue; }
            d = decode(s, i);
            if (d.state != status::ok) break;
            i += d.length;
        }
        out.append(s.data() + run, i - run);
        if (i >= s.size()) break;
        if (d.state == status::truncated && hold_back_tail) return s.size() - i;
        out.append(k_replacement_utf8);
        i += d.length;
    }
    return 0;
}

inline std::string repair(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    append_repaired(out, s);
    return out;
}

}  // namespace minigpt::utf8

// Answer extraction: pull a final answer (a number, a choice letter, or a short phrase) out of a
// model's free-form reply, normalised so that equal answers compare equal in a majority vote.
//
// extract_number: the LAST number in the text. A number is digits with optional thousands commas
//   (a first group of 1-3 digits, then groups of exactly 3: "1,234,567"; "1,23" is two numbers),
//   an optional decimal part ".5" (a '.' not followed by a digit ends the number, so "is 18." is
//   18; a '.' with no digit before it starts one: ".5" is 0.5), or a fraction "3/4" (integers only). A '-' or '+' right before the digits is its sign unless
//   a letter, digit or '.' precedes it ("3-4" is 3 and 4; "x-1" is 1). Normalised: commas and '+'
//   removed, leading zeros of integers removed, trailing decimal zeros removed ("2.50" -> "2.5",
//   "3.0" -> "3"), "-0" -> "0"; fractions are not reduced.
// extract_choice: a letter from `letters` (default A-E, case-sensitive). In order of precedence:
//   the last "(X)"; else the first standalone X after the last "answer" (any case); else the last
//   standalone X followed by punctuation ) . : , ; ! ? or a line end or the end of the text.
//   "Standalone" means no letter or digit directly on either side.
// extract_free_text: the text after the last "answer is" (any case) if present, else the whole
//   text; leading whitespace and ':' skipped; up to the first newline or the first '.' followed by
//   whitespace or the end ("3.5" is kept); trimmed. Empty -> nullopt.
#pragma once

#include <cctype>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace minigpt {

using answer_extractor = std::function<std::optional<std::string>(std::string_view)>;

namespace detail {

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

inline std::string strip_leading_zeros(std::string_view digits) {
    std::size_t i = 0;
    while (i + 1 < digits.size() && digits[i] == '0') ++i;
    return std::string(digits.substr(i));
}

inline std::string lower_ascii(std::string_view s) {
    std::string r(s);
    for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
}

// Reads the number starting at text[i] (a digit); returns its normalised form and the end offset.
inline std::pair<std::string, std::size_t> read_number(std::string_view text, std::size_t i) {
    const std::size_t n = text.size();
    std::string integer;
    std::size_t j = i;
    while (j < n && is_digit(text[j])) integer += text[j++];
    // Thousands groups: only after a first group of 1-3 digits, exactly 3 digits each.
    if (integer.size() <= 3) {
        while (j + 3 < n && text[j] == ',' && is_digit(text[j + 1]) && is_digit(text[j + 2]) && is_digit(text[j + 3]) &&
               (j + 4 >= n || !is_digit(text[j + 4]))) {
            integer.append(text.substr(j + 1, 3));
            j += 4;
        }
    }
    integer = strip_leading_zeros(integer);
    if (j + 1 < n && text[j] == '.' && is_digit(text[j + 1])) {
        std::size_t k = j + 1;
        std::string frac;
        while (k < n && is_digit(text[k])) frac += text[k++];
        while (!frac.empty() && frac.back() == '0') frac.pop_back();
        return {frac.empty() ? integer : integer + "." + frac, k};
    }
    if (j + 1 < n && text[j] == '/' && is_digit(text[j + 1])) {
        std::size_t k = j + 1;
        std::string den;
        while (k < n && is_digit(text[k])) den += text[k++];
        return {integer + "/" + strip_leading_zeros(den), k};
    }
    return {integer, j};
}

inline bool standalone_at(std::string_view text, std::size_t i) {
    return (i == 0 || !is_alnum(text[i - 1])) && (i + 1 >= text.size() || !is_alnum(text[i + 1]));
}

}  // namespace detail

inline std::optional<std::string> extract_number(std::string_view text) {
    std::optional<std::string> last;
    for (std::size_t i = 0; i < text.size();) {
        if (!detail::is_digit(text[i])) {
            ++i;
            continue;
        }
        // ".5": a '.' with no digit before it starts the number.
        const bool leading_point = i > 0 && text[i - 1] == '.' && (i < 2 || !detail::is_digit(text[i - 2]));
        const std::size_t start = leading_point ? i - 1 : i;
        bool negative = false;
        if (start > 0 && (text[start - 1] == '-' || text[start - 1] == '+')) {
            const bool sign_ok = start < 2 || !(detail::is_alnum(text[start - 2]) || text[start - 2] == '.');
            negative = sign_ok && text[start - 1] == '-';
        }
        std::string value;
        std::size_t end = i;
        if (leading_point) {
            while (end < text.size() && detail::is_digit(text[end])) ++end;
            std::string frac(text.substr(i, end - i));
            while (!frac.empty() && frac.back() == '0') frac.pop_back();
            value = frac.empty() ? "0" : "0." + frac;
        } else {
            std::tie(value, end) = detail::read_number(text, i);
        }
        last = (negative && value != "0") ? "-" + value : value;
        i = end;
    }
    return last;
}

inline std::optional<std::string> extract_choice(std::string_view text, std::string_view letters = "ABCDE") {
    auto is_choice = [&](char c) { return letters.find(c) != std::string_view::npos; };
    // 1. the last "(X)"
    for (std::size_t i = text.size(); i >= 3; --i) {
        const std::size_t p = i - 3;
        if (text[p] == '(' && is_choice(text[p + 1]) && text[p + 2] == ')') return std::string(1, text[p + 1]);
    }
    // 2. the first standalone X after the last "answer"
    const std::string lower = detail::lower_ascii(text);
    const std::size_t a = lower.rfind("answer");
    if (a != std::string::npos) {
        for (std::size_t i = a + 6; i < text.size(); ++i)
            if (is_choice(text[i]) && detail::standalone_at(text, i)) return std::string(1, text[i]);
    }
    // 3. the last standalone X that ends a clause
    for (std::size_t i = text.size(); i-- > 0;) {
        if (!is_choice(text[i]) || !detail::standalone_at(text, i)) continue;
        std::size_t k = i + 1;
        if (k < text.size() && std::string_view(").:,;!?").find(text[k]) != std::string_view::npos) return std::string(1, text[i]);
        while (k < text.size() && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r')) ++k;
        if (k == text.size() || text[k] == '\n') return std::string(1, text[i]);
    }
    return std::nullopt;
}

inline std::optional<std::string> extract_free_text(std::string_view text) {
    const std::string lower = detail::lower_ascii(text);
    std::size_t start = 0;
    const std::size_t a = lower.rfind("answer is");
    if (a != std::string::npos) start = a + 9;
    while (start < text.size() && (std::isspace(static_cast<unsigned char>(text[start])) || text[start] == ':')) ++start;
    std::size_t end = start;
    while (end < text.size()) {
        if (text[end] == '\n') break;
        if (text[end] == '.' && (end + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[end + 1])))) break;
        ++end;
    }
    std::size_t e = end;
    while (e > start && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
    if (e == start) return std::nullopt;
    return std::string(text.substr(start, e - start));
}

inline answer_extractor number_extractor() {
    return [](std::string_view t) { return extract_number(t); };
}
inline answer_extractor choice_extractor(std::string letters = "ABCDE") {
    return [letters = std::move(letters)](std::string_view t) { return extract_choice(t, letters); };
}
inline answer_extractor free_text_extractor() {
    return [](std::string_view t) { return extract_free_text(t); };
}

}  // namespace minigpt

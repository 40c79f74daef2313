// A small backtracking regex engine over code points, for the pre-tokenizer patterns llama.cpp uses.
//
// Supported: literals (UTF-8 in the pattern), `.`-free character classes with ranges and negation,
// the escapes \s \S \d \D \w \W \r \n \t \f \v \xHH \uHHHH and escaped punctuation, the Unicode
// categories \p{L} \p{N} \p{P} \p{M} \p{S}, groups `( )` and `(?: )`, lookahead `(?= )` `(?! )`,
// alternation, the quantifiers * + ? {n} {n,} {n,m} (greedy, lazy `?` suffix, possessive `+`
// suffix) and the anchors ^ $ (start and end of the searched range). Matching follows ECMAScript
// (std::regex) semantics, which llama.cpp uses: at each start position the alternatives are tried
// left to right with backtracking, and the first overall match wins.
//
// The matcher works on a caller-supplied array of "regex code points": llama.cpp runs a pattern
// that uses \p{..} on a "collapsed" text where every non-ASCII character is replaced by one stand-in
// per category (and its \p{..} classes become the stand-in plus an ASCII list), and every other
// pattern on the code points with non-ASCII whitespace replaced by U+000B. regex::map_text builds
// that view (collapsed() says which one a pattern needs), so the quirks of that scheme (ASCII '~'
// is in neither \p{P} nor \p{S}; a non-ASCII letter is both upper- and lower-case for [^a-z]) are
// reproduced. Quantified single-character items are matched by a loop, not recursion, so a run of
// any length costs no stack; recursion depth is bounded by the pattern's size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/text/unicode.hpp"
#include "minigpt/text/utf8.hpp"

namespace minigpt::unicode {

class regex {
public:
    // Stand-ins for non-ASCII characters in collapsed text (above U+10FFFF, so they never equal a
    // pattern literal); the order is llama.cpp's 0xD0..0xD5.
    static constexpr char32_t k_other = 0x110000, k_number = 0x110001, k_letter = 0x110002, k_punct = 0x110003,
                              k_mark = 0x110004, k_symbol = 0x110005;

    explicit regex(std::string_view pattern) : pattern_(pattern) {
        for (const std::string_view cat : {"\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}"})
            if (pattern.find(cat) != std::string_view::npos) collapsed_ = true;
        std::size_t pos = 0;
        root_ = parse_alt(pos);
        if (pos != pattern_.size()) fail(pos, "unexpected ')'");
        for (std::size_t i = 0; i < nodes_.size(); ++i) nodes_[i].unit = is_unit(static_cast<int>(i));
    }

    // Whether the pattern runs on collapsed text (it uses a \p{..} category).
    bool collapsed() const noexcept { return collapsed_; }
    const std::string& pattern() const noexcept { return pattern_; }

    // The regex view of one code point of the input text (see the header comment).
    static char32_t map_char(char32_t cp, bool collapsed) {
        if (cp < 0x80) return cp;
        const cpt_flags f = flags_of(cp);
        if (f.is_whitespace()) return 0x0B;
        if (!collapsed) return cp;
        switch (f.group()) {
            case cpt_group::number: return k_number;
            case cpt_group::letter: return k_letter;
            case cpt_group::punctuation: return k_punct;
            case cpt_group::mark: return k_mark;
            case cpt_group::symbol: return k_symbol;
            default: return k_other;
        }
    }

    // The leftmost non-empty match in text[from, end), where the searched range is [begin, end)
    // (anchors and lookaheads see only that range). Returns false if there is none.
    bool search(const char32_t* text, std::size_t begin, std::size_t end, std::size_t from, std::size_t& match_begin,
                std::size_t& match_end) const {
        const run r{text, begin, end};
        for (std::size_t start = from; start < end; ++start) {
            std::size_t found = 0;
            auto accept = [&](std::size_t p) {
                if (p == start) return false;
                found = p;
                return true;
            };
            if (match(r, root_, start, cont(accept))) {
                match_begin = start;
                match_end = found;
                return true;
            }
        }
        return false;
    }

private:
    struct run {
        const char32_t* text;
        std::size_t begin, end;
    };

    // A non-owning callable reference: the continuation of a match.
    struct cont {
        void* obj;
        bool (*fn)(void*, std::size_t);
        template <class F>
        explicit cont(F& f) : obj(&f), fn([](void* o, std::size_t p) { return (*static_cast<F*>(o))(p); }) {}
        bool operator()(std::size_t p) const { return fn(obj, p); }
    };

    struct char_class {
        std::vector<std::pair<char32_t, char32_t>> ranges;
        bool negated = false;
        bool not_space = false, not_digit = false, not_word = false;  // \S \D \W inside [ ]

        bool contains(char32_t c) const {
            bool in = false;
            for (const auto& [lo, hi] : ranges)
                if (c >= lo && c <= hi) {
                    in = true;
                    break;
                }
            if (!in && not_space && !is_space(c)) in = true;
            if (!in && not_digit && !(c >= '0' && c <= '9')) in = true;
            if (!in && not_word && !is_word(c)) in = true;
            return in != negated;
        }
    };

    enum class kind : std::uint8_t { cls, seq, alt, repeat, look, bol, eol };
    enum class greed : std::uint8_t { greedy, lazy, possessive };

    struct node {
        kind k = kind::seq;
        int cls = -1;            // kind::cls: index into classes_
        std::vector<int> kids;   // seq / alt: children; repeat / look: the body
        int min = 0, max = -1;   // repeat; max -1 = unbounded
        greed g = greed::greedy;
        bool negative = false;   // look: (?! )
        bool unit = false;       // always matches exactly one character (no choice of length)
    };

    static bool is_space(char32_t c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }
    static bool is_word(char32_t c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    }

    [[noreturn]] void fail(std::size_t pos, const std::string& what) const {
        throw error("regex '" + pattern_ + "' at offset " + std::to_string(pos) + ": " + what);
    }

    static node make(kind k) {
        node n;
        n.k = k;
        return n;
    }
    int add(node n) {
        nodes_.push_back(std::move(n));
        return static_cast<int>(nodes_.size()) - 1;
    }
    int add_class(char_class c) {
        classes_.push_back(std::move(c));
        node n = make(kind::cls);
        n.cls = static_cast<int>(classes_.size()) - 1;
        return add(std::move(n));
    }

    // ---- parsing ----

    int parse_alt(std::size_t& pos) {
        std::vector<int> alts{parse_seq(pos)};
        while (pos < pattern_.size() && pattern_[pos] == '|') {
            ++pos;
            alts.push_back(parse_seq(pos));
        }
        if (alts.size() == 1) return alts[0];
        node n = make(kind::alt);
        n.kids = std::move(alts);
        return add(std::move(n));
    }

    int parse_seq(std::size_t& pos) {
        node n = make(kind::seq);
        while (pos < pattern_.size() && pattern_[pos] != '|' && pattern_[pos] != ')') {
            const int atom = parse_atom(pos);
            n.kids.push_back(parse_quantifier(pos, atom));
        }
        if (n.kids.size() == 1) return n.kids[0];
        return add(std::move(n));
    }

    int parse_quantifier(std::size_t& pos, int atom) {
        if (pos >= pattern_.size()) return atom;
        int min, max;
        const char c = pattern_[pos];
        if (c == '*') { min = 0; max = -1; ++pos; }
        else if (c == '+') { min = 1; max = -1; ++pos; }
        else if (c == '?') { min = 0; max = 1; ++pos; }
        else if (c == '{') {
            std::size_t p = pos + 1;
            auto number = [&](int& v) {
                const std::size_t start = p;
                v = 0;
                while (p < pattern_.size() && pattern_[p] >= '0' && pattern_[p] <= '9') {
                    v = v * 10 + (pattern_[p++] - '0');
                    if (v > 100000) fail(start, "repeat count too large");
                }
                return p > start;
            };
            if (!number(min)) fail(pos, "'{' not followed by a count");
            max = min;
            if (p < pattern_.size() && pattern_[p] == ',') {
                ++p;
                if (!number(max)) max = -1;
            }
            if (p >= pattern_.size() || pattern_[p] != '}') fail(p, "unterminated {n,m}");
            if (max >= 0 && max < min) fail(pos, "{n,m} with m < n");
            pos = p + 1;
        } else {
            return atom;
        }
        const kind ak = nodes_[static_cast<std::size_t>(atom)].k;
        if (ak == kind::look || ak == kind::bol || ak == kind::eol) fail(pos, "quantifier after an assertion");
        node n = make(kind::repeat);
        n.kids = {atom};
        n.min = min;
        n.max = max;
        if (pos < pattern_.size() && pattern_[pos] == '?') { n.g = greed::lazy; ++pos; }
        else if (pos < pattern_.size() && pattern_[pos] == '+') { n.g = greed::possessive; ++pos; }
        return add(std::move(n));
    }

    int parse_atom(std::size_t& pos) {
        const char c = pattern_[pos];
        if (c == '(') {
            ++pos;
            int look = 0;  // 0 group, 1 (?= , 2 (?!
            if (pattern_.compare(pos, 2, "?:") == 0) pos += 2;
            else if (pattern_.compare(pos, 2, "?=") == 0) { pos += 2; look = 1; }
            else if (pattern_.compare(pos, 2, "?!") == 0) { pos += 2; look = 2; }
            else if (pos < pattern_.size() && pattern_[pos] == '?') fail(pos, "unsupported group kind '(?" + std::string(1, pattern_[pos + 1 < pattern_.size() ? pos + 1 : pos]) + "'");
            const int body = parse_alt(pos);
            if (pos >= pattern_.size() || pattern_[pos] != ')') fail(pos, "missing ')'");
            ++pos;
            if (look == 0) return body;
            node n = make(kind::look);
            n.kids = {body};
            n.negative = look == 2;
            return add(std::move(n));
        }
        if (c == '[') return add_class(parse_class(pos));
        if (c == '^') { ++pos; return add(make(kind::bol)); }
        if (c == '$') { ++pos; return add(make(kind::eol)); }
        if (c == '*' || c == '+' || c == '?' || c == '{') fail(pos, "quantifier with nothing to repeat");
        if (c == '.') fail(pos, "'.' is not supported");
        char_class cls;
        if (c == '\\') {
            parse_escape(pos, cls, false);
        } else {
            const char32_t cp = literal(pos);
            cls.ranges.push_back({cp, cp});
        }
        return add_class(std::move(cls));
    }

    // One UTF-8 character of the pattern.
    char32_t literal(std::size_t& pos) {
        const auto d = utf8::decode(pattern_, pos);
        if (d.state != utf8::status::ok) fail(pos, "ill-formed UTF-8");
        pos += d.length;
        return d.cp;
    }

    void add_category(char_class& cls, char cat, std::size_t pos) {
        // llama.cpp's ASCII members of each category in collapsed text (its k_ucat_map).
        switch (cat) {
            case 'N':
                cls.ranges.push_back({k_number, k_number});
                cls.ranges.push_back({'0', '9'});
                break;
            case 'L':
                cls.ranges.push_back({k_letter, k_letter});
                cls.ranges.push_back({'A', 'Z'});
                cls.ranges.push_back({'a', 'z'});
                break;
            case 'P':
                cls.ranges.push_back({k_punct, k_punct});
                for (const auto& r : {std::pair<char32_t, char32_t>{0x21, 0x23}, {0x25, 0x2A}, {0x2C, 0x2F}, {0x3A, 0x3B},
                                      {0x3F, 0x40}, {0x5B, 0x5D}, {0x5F, 0x5F}, {0x7B, 0x7B}, {0x7D, 0x7D}})
                    cls.ranges.push_back(r);
                break;
            case 'M': cls.ranges.push_back({k_mark, k_mark}); break;
            case 'S':
                cls.ranges.push_back({k_symbol, k_symbol});
                for (const char32_t c : {U'$', U'+', U'<', U'=', U'>', U'^', U'`', U'|'}) cls.ranges.push_back({c, c});
                break;
            default: fail(pos, std::string("unsupported category \\p{") + cat + "}");
        }
    }

    // An escape at pattern_[pos] == '\\'; adds its characters to cls. Returns the single code
    // point it stands for, or -1 for a class escape.
    std::int64_t parse_escape(std::size_t& pos, char_class& cls, bool in_class) {
        if (pos + 1 >= pattern_.size()) fail(pos, "pattern ends with '\\'");
        const char e = pattern_[pos + 1];
        pos += 2;
        auto single = [&](char32_t cp) {
            cls.ranges.push_back({cp, cp});
            return static_cast<std::int64_t>(cp);
        };
        auto hex = [&](int digits) {
            char32_t v = 0;
            for (int i = 0; i < digits; ++i, ++pos) {
                if (pos >= pattern_.size()) fail(pos, "short hex escape");
                const char h = pattern_[pos];
                const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) fail(pos, "bad hex digit");
                v = v * 16 + static_cast<char32_t>(d);
            }
            return v;
        };
        switch (e) {
            case 'r': return single('\r');
            case 'n': return single('\n');
            case 't': return single('\t');
            case 'f': return single('\f');
            case 'v': return single('\v');
            case '0': return single(0);
            case 'x': return single(hex(2));
            case 'u': return single(hex(4));
            case 's': cls.ranges.push_back({' ', ' '}); cls.ranges.push_back({0x09, 0x0D}); return -1;
            case 'd': cls.ranges.push_back({'0', '9'}); return -1;
            case 'w':
                for (const auto& r : {std::pair<char32_t, char32_t>{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}}) cls.ranges.push_back(r);
                return -1;
            case 'S': case 'D': case 'W':
                if (!in_class && cls.ranges.empty()) {
                    // Outside a class: the complement of \s \d \w.
                    parse_escape_complement(cls, e);
                    return -1;
                }
                (e == 'S' ? cls.not_space : e == 'D' ? cls.not_digit : cls.not_word) = true;
                return -1;
            case 'p': {
                if (pos + 2 >= pattern_.size() || pattern_[pos] != '{' || pattern_[pos + 2] != '}')
                    fail(pos - 2, "only the categories \\p{L} \\p{N} \\p{P} \\p{M} \\p{S} are supported");
                add_category(cls, pattern_[pos + 1], pos - 2);
                pos += 3;
                return -1;
            }
            default:
                if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '1' && e <= '9'))
                    fail(pos - 2, std::string("unsupported escape '\\") + e + "'");
                pos -= 1;
                return single(literal(pos));  // escaped punctuation (or any other character) stands for itself
        }
    }

    void parse_escape_complement(char_class& cls, char e) {
        cls.negated = true;
        if (e == 'S') { cls.ranges.push_back({' ', ' '}); cls.ranges.push_back({0x09, 0x0D}); }
        else if (e == 'D') cls.ranges.push_back({'0', '9'});
        else for (const auto& r : {std::pair<char32_t, char32_t>{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}}) cls.ranges.push_back(r);
    }

    char_class parse_class(std::size_t& pos) {
        const std::size_t open = pos++;
        char_class cls;
        if (pos < pattern_.size() && pattern_[pos] == '^') {
            cls.negated = true;
            ++pos;
        }
        bool first = true;
        for (;;) {
            if (pos >= pattern_.size()) fail(open, "missing ']'");
            if (pattern_[pos] == ']' && !first) {
                ++pos;
                return cls;
            }
            first = false;
            std::int64_t lo;
            if (pattern_[pos] == '\\') lo = parse_escape(pos, cls, true);
            else {
                lo = literal(pos);
                cls.ranges.push_back({static_cast<char32_t>(lo), static_cast<char32_t>(lo)});
            }
            // A range "a-b": '-' followed by something other than ']'.
            if (lo >= 0 && pos + 1 < pattern_.size() && pattern_[pos] == '-' && pattern_[pos + 1] != ']') {
                ++pos;
                std::int64_t hi;
                char_class tmp;
                if (pattern_[pos] == '\\') hi = parse_escape(pos, tmp, true);
                else hi = literal(pos);
                if (hi < 0) fail(pos, "a class escape cannot end a range");
                if (hi < lo) fail(pos, "range out of order");
                cls.ranges.back().second = static_cast<char32_t>(hi);
            }
        }
    }

    bool is_unit(int i) const {
        const node& n = nodes_[static_cast<std::size_t>(i)];
        switch (n.k) {
            case kind::cls: return true;
            case kind::alt:
                for (const int k : n.kids)
                    if (!is_unit(k)) return false;
                return true;
            case kind::seq: {
                int units = 0;
                for (const int k : n.kids) {
                    const kind kk = nodes_[static_cast<std::size_t>(k)].k;
                    if (kk == kind::look) continue;
                    if (!is_unit(k)) return false;
                    ++units;
                }
                return units == 1;
            }
            default: return false;
        }
    }

    // ---- matching ----

    // For a unit node: does it match the one character at pos?
    bool match_unit(const run& r, int i, std::size_t pos) const {
        const node& n = nodes_[static_cast<std::size_t>(i)];
        switch (n.k) {
            case kind::cls: return pos < r.end && classes_[static_cast<std::size_t>(n.cls)].contains(r.text[pos]);
            case kind::alt:
                for (const int k : n.kids)
                    if (match_unit(r, k, pos)) return true;
                return false;
            case kind::seq:
                for (const int k : n.kids) {
                    if (nodes_[static_cast<std::size_t>(k)].k == kind::look) {
                        auto any = [](std::size_t) { return true; };
                        if (!match(r, k, pos, cont(any))) return false;
                    } else if (!match_unit(r, k, pos)) {
                        return false;
                    }
                }
                return true;
            default: return false;
        }
    }

    bool match(const run& r, int i, std::size_t pos, cont k) const {
        const node& n = nodes_[static_cast<std::size_t>(i)];
        switch (n.k) {
            case kind::cls:
                return pos < r.end && classes_[static_cast<std::size_t>(n.cls)].contains(r.text[pos]) && k(pos + 1);
            case kind::bol: return pos == r.begin && k(pos);
            case kind::eol: return pos == r.end && k(pos);
            case kind::alt:
                for (const int kid : n.kids)
                    if (match(r, kid, pos, k)) return true;
                return false;
            case kind::seq: return match_seq(r, n, 0, pos, k);
            case kind::look: {
                auto any = [](std::size_t) { return true; };
                const bool found = match(r, n.kids[0], pos, cont(any));
                return found != n.negative && k(pos);
            }
            case kind::repeat: {
                const int body = n.kids[0];
                const std::size_t max = n.max < 0 ? r.end - pos : static_cast<std::size_t>(n.max);
                const auto min = static_cast<std::size_t>(n.min);
                if (nodes_[static_cast<std::size_t>(body)].unit) {
                    std::size_t count = 0;
                    while (count < max && match_unit(r, body, pos + count)) ++count;
                    if (count < min) return false;
                    switch (n.g) {
                        case greed::possessive: return k(pos + count);
                        case greed::greedy:
                            for (std::size_t c = count + 1; c-- > min;)
                                if (k(pos + c)) return true;
                            return false;
                        case greed::lazy:
                            for (std::size_t c = min; c <= count; ++c)
                                if (k(pos + c)) return true;
                            return false;
                    }
                    return false;
                }
                return match_repeat(r, n, 0, pos, k);
            }
        }
        return false;
    }

    bool match_seq(const run& r, const node& n, std::size_t i, std::size_t pos, cont k) const {
        if (i == n.kids.size()) return k(pos);
        auto next = [&](std::size_t p) { return match_seq(r, n, i + 1, p, k); };
        return match(r, n.kids[i], pos, cont(next));
    }

    // General repetition (body of variable width): recursion, one level per repetition.
    bool match_repeat(const run& r, const node& n, int count, std::size_t pos, cont k) const {
        const bool can_stop = count >= n.min;
        const bool can_go = n.max < 0 || count < n.max;
        auto more = [&](std::size_t p) { return p != pos && match_repeat(r, n, count + 1, p, k); };
        if (n.g == greed::lazy) {
            if (can_stop && k(pos)) return true;
            return can_go && match(r, n.kids[0], pos, cont(more));
        }
        // Possessive bodies of variable width are matched greedily (no pattern llama.cpp ships has one).
        if (can_go && match(r, n.kids[0], pos, cont(more))) return true;
        return can_stop && k(pos);
    }

    std::string pattern_;
    bool collapsed_ = false;
    std::vector<node> nodes_;
    std::vector<char_class> classes_;
    int root_ = -1;
};

}  // namespace minigpt::unicode

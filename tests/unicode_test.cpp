// Tests of the text layer's building blocks: UTF-8 decoding and repair, Unicode character
// properties, and GPT-2's pre-tokenizer split. References are hand-derived from the Unicode
// Standard (Table 3-7 well-formed sequences, the U+FFFD "maximal subpart" example of section 3.9)
// and from the semantics of GPT-2's regex, worked out by hand for each input.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "minigpt/text/unicode.hpp"
#include "minigpt/text/unicode_pretokenize.hpp"
#include "minigpt/text/utf8.hpp"

namespace {

using namespace minigpt;

const std::string fffd = "\xEF\xBF\xBD";

TEST(Utf8, DecodesBoundaryCodePoints) {
    struct case_t {
        std::string bytes;
        char32_t cp;
    };
    const case_t cases[] = {
        {"A", 0x41},          {"\x7F", 0x7F},          {"\xC2\x80", 0x80},        {"\xC3\xA9", 0xE9},
        {"\xDF\xBF", 0x7FF},  {"\xE0\xA0\x80", 0x800}, {"\xE4\xB8\xAD", 0x4E2D},  {"\xED\x9F\xBF", 0xD7FF},
        {"\xEE\x80\x80", 0xE000}, {"\xEF\xBF\xBF", 0xFFFF}, {"\xF0\x90\x80\x80", 0x10000},
        {"\xF0\x9F\x98\x80", 0x1F600}, {"\xF4\x8F\xBF\xBF", 0x10FFFF},
    };
    for (const auto& c : cases) {
        const auto d = utf8::decode(c.bytes, 0);
        EXPECT_EQ(d.state, utf8::status::ok) << std::hex << static_cast<std::uint32_t>(c.cp);
        EXPECT_EQ(d.cp, c.cp);
        EXPECT_EQ(d.length, c.bytes.size());
        EXPECT_EQ(utf8::encode(c.cp), c.bytes);
        EXPECT_TRUE(utf8::is_valid(c.bytes));
    }
}

TEST(Utf8, ReplacesEachMaximalSubpartOnce) {
    // The Unicode Standard's own example (section 3.9, "U+FFFD Substitution of Maximal Subparts").
    EXPECT_EQ(utf8::repair("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
              "a" + fffd + fffd + fffd + "b" + fffd + "c" + fffd + fffd + "d");
    EXPECT_EQ(utf8::repair("\xC0\xAF"), fffd + fffd);                  // overlong '/': C0 never starts a character
    EXPECT_EQ(utf8::repair("\xE0\x80\xAF"), fffd + fffd + fffd);       // overlong 3-byte: E0 needs A0..BF next
    EXPECT_EQ(utf8::repair("\xED\xA0\x80"), fffd + fffd + fffd);       // surrogate U+D800
    EXPECT_EQ(utf8::repair("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // above U+10FFFF
    EXPECT_EQ(utf8::repair("\xF5\xFF"), fffd + fffd);
    EXPECT_EQ(utf8::repair("x\xE4\xB8"), "x" + fffd);                   // truncated at the end: one subpart
    EXPECT_EQ(utf8::repair("\x80\x80"), fffd + fffd);                   // lone continuation bytes
    EXPECT_EQ(utf8::repair("ok \xE4\xB8\xAD"), "ok \xE4\xB8\xAD");
    EXPECT_FALSE(utf8::is_valid("\xE4\xB8"));
    EXPECT_FALSE(utf8::is_valid("\xC0\xAF"));
}

TEST(Utf8, HoldsBackAnUnfinishedLastCharacter) {
    std::string out;
    EXPECT_EQ(utf8::append_repaired(out, "ab\xF0\x9F\x98", true), 3u);
    EXPECT_EQ(out, "ab");
    out.clear();
    // An ill-formed byte before the end is replaced, not held back.
    EXPECT_EQ(utf8::append_repaired(out, "\xF0" "a\xE4", true), 1u);
    EXPECT_EQ(out, fffd + "a");
    out.clear();
    EXPECT_EQ(utf8::append_repaired(out, "ab\xF0\x9F\x98", false), 0u);
    EXPECT_EQ(out, "ab" + fffd);
}

TEST(Unicode, CategoriesOfKnownCodePoints) {
    using unicode::cpt_group;
    struct case_t {
        char32_t cp;
        cpt_group group;
        bool whitespace;
    };
    const case_t cases[] = {
        {U'a', cpt_group::letter, false},      {U'Z', cpt_group::letter, false},
        {0xE9, cpt_group::letter, false},      {0x4E2D, cpt_group::letter, false},      // é, 中 (Lo)
        {0x02B0, cpt_group::letter, false},    {0x0663, cpt_group::number, false},      // ʰ (Lm), Arabic-Indic 3
        {0x00BD, cpt_group::number, false},    {0x2167, cpt_group::number, false},      // ½ (No), Ⅷ (Nl)
        {0x0301, cpt_group::mark, false},      {U'!', cpt_group::punctuation, false},
        {0x3002, cpt_group::punctuation, false}, {U'$', cpt_group::symbol, false},      // 。
        {0x1F600, cpt_group::symbol, false},   {U' ', cpt_group::separator, true},
        {0x3000, cpt_group::separator, true},  {0x00A0, cpt_group::separator, true},
        {0x2028, cpt_group::separator, true},  {U'\t', cpt_group::control, true},
        {U'\n', cpt_group::control, true},     {0x0085, cpt_group::control, true},
        {0x001F, cpt_group::control, false},   {0x200B, cpt_group::other, false},       // ZWSP is Cf, not White_Space
        {0x180E, cpt_group::other, false},     {0xE000, cpt_group::other, false},       // Mongolian VS (Cf), private use
        {0x10FFFF, cpt_group::other, false},   {0x110000, cpt_group::other, false},     // unassigned, beyond Unicode
    };
    for (const auto& c : cases) {
        const auto f = unicode::flags_of(c.cp);
        EXPECT_EQ(f.group(), c.group) << "U+" << std::hex << static_cast<std::uint32_t>(c.cp);
        EXPECT_EQ(f.is_whitespace(), c.whitespace) << "U+" << std::hex << static_cast<std::uint32_t>(c.cp);
    }
}

TEST(Unicode, FastTableMatchesTheRanges) {
    for (char32_t cp = 0; cp <= unicode::k_max_code_point; ++cp)
        ASSERT_EQ(unicode::flags_of(cp).bits, unicode::flags_by_search(cp).bits) << "U+" << std::hex << static_cast<std::uint32_t>(cp);
}

// Values from the Unicode Character Database (UnicodeData.txt decompositions and case mappings).
TEST(Unicode, LowerCaseAndNfdBase) {
    EXPECT_EQ(unicode::to_lower(U'A'), U'a');
    EXPECT_EQ(unicode::to_lower(U'z'), U'z');
    EXPECT_EQ(unicode::to_lower(0x00C4), 0x00E4u);   // Ä -> ä
    EXPECT_EQ(unicode::to_lower(0x0130), U'i');      // İ -> "i̇": its first code point
    EXPECT_EQ(unicode::to_lower(0x0391), 0x03B1u);   // Α -> α
    EXPECT_EQ(unicode::to_lower(0x10400), 0x10428u); // Deseret
    EXPECT_EQ(unicode::to_lower(0x4E2D), 0x4E2Du);   // no case
    EXPECT_EQ(unicode::nfd_base(0x00E9), U'e');      // é = e + U+0301
    EXPECT_EQ(unicode::nfd_base(0x1E69), U's');      // ṩ = s + U+0323 + U+0307
    EXPECT_EQ(unicode::nfd_base(0xAC00), 0x1100u);   // 가 = U+1100 U+1161
    EXPECT_EQ(unicode::nfd_base(0xD7A3), 0x1112u);   // 힣, the last syllable
    EXPECT_EQ(unicode::nfd_base(0x212B), U'A');      // Å (angstrom sign) -> U+00C5 -> A + ring
    EXPECT_EQ(unicode::nfd_base(U'x'), U'x');
    EXPECT_EQ(unicode::nfd_base(0x00C6), 0x00C6u);   // Æ has no decomposition
}

std::vector<std::string> split(std::string_view s) {
    std::vector<std::string> out;
    unicode::split_gpt2(s, [&](std::string_view piece) { out.emplace_back(piece); });
    return out;
}

using pieces = std::vector<std::string>;

TEST(Gpt2Split, WordsKeepTheirLeadingSpace) {
    EXPECT_EQ(split("Hello world"), (pieces{"Hello", " world"}));
    EXPECT_EQ(split("Hello  world"), (pieces{"Hello", " ", " world"}));
    EXPECT_EQ(split("  Hello"), (pieces{" ", " Hello"}));
    EXPECT_EQ(split("3.14 and 42nd"), (pieces{"3", ".", "14", " and", " 42", "nd"}));
    EXPECT_EQ(split("Zürich"), (pieces{"Zürich"}));
    EXPECT_EQ(split("中文。English"), (pieces{"中文", "。", "English"}));
    EXPECT_EQ(split("😀😀!? ok"), (pieces{"😀😀!?", " ok"}));
    EXPECT_EQ(split(""), pieces{});
}

TEST(Gpt2Split, ContractionsAreLowerCaseOnly) {
    EXPECT_EQ(split("I'm here, they're 'RE'"), (pieces{"I", "'m", " here", ",", " they", "'re", " '", "RE", "'"}));
    EXPECT_EQ(split("we'll've'd"), (pieces{"we", "'ll", "'ve", "'d"}));
    EXPECT_EQ(split("'"), (pieces{"'"}));
}

TEST(Gpt2Split, WhitespaceRunsLeaveTheirLastCharacterToTheNextWord) {
    EXPECT_EQ(split("x\n\ny"), (pieces{"x", "\n", "\n", "y"}));
    EXPECT_EQ(split("a \t b"), (pieces{"a", " \t", " b"}));
    EXPECT_EQ(split("end   "), (pieces{"end", "   "}));
    EXPECT_EQ(split("\u3000\u3000x"), (pieces{"\u3000", "\u3000", "x"}));  // ideographic space is \s, not " "
    EXPECT_EQ(split(" "), (pieces{" "}));
}

TEST(Gpt2Split, IllFormedBytesArePunctuationLikeAndKept) {
    EXPECT_EQ(split("ab\xFF\xFE" "cd"), (pieces{"ab", "\xFF\xFE", "cd"}));
    EXPECT_EQ(split(" \xFF"), (pieces{" \xFF"}));
    // Pieces always concatenate to the input, whatever the bytes.
    std::string soup;
    std::uint32_t state = 12345;
    for (int i = 0; i < 4000; ++i) {
        state = state * 1103515245u + 12345u;
        soup.push_back(static_cast<char>(state >> 23));
    }
    std::string joined;
    for (const auto& p : split(soup)) {
        EXPECT_FALSE(p.empty());
        joined += p;
    }
    EXPECT_EQ(joined, soup);
}

}  // namespace

// Pre-tokenizer and regex engine tests.
//
// References: splits derived by hand from the published regexes (llama.cpp's src/llama-vocab.cpp
// lists, ECMAScript backtracking semantics, each regex re-cutting every chunk), written out below
// with the reasoning where it is not obvious; and, for the GPT-2 pattern, the hand-written scanner
// in unicode_pretokenize.hpp as a second, independent implementation run over every input of
// llama.cpp's tokenizer vectors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "minigpt/text.hpp"
#include "minigpt/text/pretokenizer.hpp"
#include "minigpt/text/regex.hpp"
#include "test_data.hpp"

namespace {

using namespace minigpt;
using words = std::vector<std::string>;

words split(const unicode::pretokenizer& p, std::string_view text) {
    words out;
    p.split(text, [&](std::string_view w) { out.emplace_back(w); });
    return out;
}

words split(std::string_view pre_name, std::string_view text) {
    return split(unicode::pretokenizer(unicode::pre_spec_for(pre_name)), text);
}

TEST(Regex, BacktrackingAlternationAndLookahead) {
    const char32_t text[] = {' ', ' ', 'a', 'b', 'c', '1', '2'};
    std::size_t b = 0, e = 0;
    const unicode::regex ws("\\s+(?!\\S)");
    ASSERT_TRUE(ws.search(text, 0, 7, 0, b, e));
    EXPECT_EQ(b, 0u);
    EXPECT_EQ(e, 1u);  // the last space is left to the word
    const unicode::regex first_alt("ab|abc");
    ASSERT_TRUE(first_alt.search(text, 0, 7, 0, b, e));
    EXPECT_EQ(e - b, 2u);  // ECMAScript: the first alternative that matches wins, not the longest
    const unicode::regex counted("[0-9]{1,3}$");
    ASSERT_TRUE(counted.search(text, 0, 7, 0, b, e));
    EXPECT_EQ(b, 5u);
    EXPECT_EQ(e, 7u);
    const unicode::regex lazy("a[a-z]+?");
    ASSERT_TRUE(lazy.search(text, 0, 7, 0, b, e));
    EXPECT_EQ(e - b, 2u);
    const unicode::regex nested("(?:(a|b)c?)+1");
    ASSERT_TRUE(nested.search(text, 0, 7, 0, b, e));
    EXPECT_EQ(b, 2u);
    EXPECT_EQ(e, 6u);
}

TEST(Regex, BadPatternsNameTheirOffset) {
    for (const char* bad : {"(ab", "[a-", "a{3,1}", "\\p{Lu}", "\\q", "*a", "a.b", "(?<x>a)"}) {
        try {
            unicode::regex r(bad);
            ADD_FAILURE() << "no error for " << bad;
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find("offset"), std::string::npos) << e.what();
        }
    }
}

// The regex engine on GPT-2's pattern against the hand-written scanner, over every input of the
// three vector files and some extra strings (non-ASCII whitespace, marks, ill-formed UTF-8).
TEST(Pretokenizer, Gpt2RegexEqualsTheHandWrittenScanner) {
    const unicode::pre_spec spec = unicode::pre_spec_for("gpt-2");
    const unicode::pretokenizer scanner(spec, true), engine(spec, false);
    std::vector<std::string> inputs = {"\xC2\xA0\xE3\x80\x80x\xE2\x80\x83 y", "e\xCC\x81t\xC3\xA9 'll 'LL", "\xFF\xC0 ab\xE2\x82",
                                       "\t\t\n \n  z", "1\xD9\xA3 \xE2\x85\xA0"};
    for (const char* name : {"gpt-2", "llama-spm", "deepseek-llm"}) {
        const std::string path = test::shared_path(std::string("vocab/ggml-vocab-") + name + ".gguf.inp");
        if (!std::filesystem::exists(path)) continue;
        const std::string raw = test::read_text(path);
        const std::string sep = "\n__ggml_vocab_test__\n";
        for (std::size_t pos = 0; pos < raw.size();) {
            const std::size_t next = raw.find(sep, pos);
            inputs.push_back(raw.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
            if (next == std::string::npos) break;
            pos = next + sep.size();
        }
    }
    EXPECT_GT(inputs.size(), 100u);
    for (const auto& text : inputs) EXPECT_EQ(split(engine, text), split(scanner, text)) << "input: '" << text << "'";
}

TEST(Pretokenizer, Llama3) {
    // " 12345": no alternative before \s+ takes the lone space (\s+(?!\S) fails before '1'), then
    // \p{N}{1,3} cuts 3+2. "\n\n  x": \s*[\r\n]+ backtracks to "\n\n"; of the two spaces
    // \s+(?!\S) takes one and " x" takes the other. Contractions are case-insensitive.
    EXPECT_EQ(split("llama-bpe", "Hello world's 12345 \xE6\x97\xA5\xE6\x9C\xAC\n\n  x  \n"),
              (words{"Hello", " world", "'s", " ", "123", "45", " \xE6\x97\xA5\xE6\x9C\xAC", "\n\n", " ", " x", "  \n"}));
    EXPECT_EQ(split("llama3", "I'M ok!!\n\n"), (words{"I", "'M", " ok", "!!\n\n"}));
    EXPECT_EQ(split("gpt-2", "I'M"), (words{"I", "'", "M"}));  // GPT-2's contractions are lower-case only
}

TEST(Pretokenizer, Qwen2DigitsOneByOne) {
    EXPECT_EQ(split("qwen2", "x 12345"), (words{"x", " ", "1", "2", "3", "4", "5"}));
    EXPECT_EQ(split("smollm", "x 12345"), (words{"x", " ", "1", "2", "3", "4", "5"}));  // \p{N} first, then GPT-2
}

TEST(Pretokenizer, DeepseekCoder) {
    // "[\r\n]" cuts the newline out; "\s?\p{L}+" then finds " 你好" in "12 你好", and the CJK regex
    // finds "你好" inside that, leaving the space; "\p{N}" splits the digits.
    EXPECT_EQ(split("deepseek-coder", "Hello, world!\n12 \xE4\xBD\xA0\xE5\xA5\xBD"),
              (words{"Hello", ",", " world", "!", "\n", "1", "2", " ", "\xE4\xBD\xA0\xE5\xA5\xBD"}));
}

TEST(Pretokenizer, DeepseekV3) {
    EXPECT_EQ(split("deepseek-v3", "Hello, \xE4\xB8\x96\xE7\x95\x8C" "123456!\n"),
              (words{"Hello", ",", " ", "\xE4\xB8\x96\xE7\x95\x8C", "123", "456", "!\n"}));
    // '~' is listed explicitly in the first alternative's punctuation class, so "~b" stays one word.
    EXPECT_EQ(split("deepseek-v3", "a~b"), (words{"a", "~b"}));
}

TEST(Pretokenizer, FalconAndDefault) {
    // Falcon: punctuation runs first, then GPT-2, then "[0-9][0-9][0-9]" inside " 1234".
    EXPECT_EQ(split("falcon", "a+b 1234"), (words{"a", "+", "b", " ", "123", "4"}));
    // No tokenizer.ggml.pre: llama.cpp's default list.
    EXPECT_EQ(split("", "a+b=12345"), (words{"a", "+", "b", "=", "123", "45"}));
}

TEST(Pretokenizer, StarcoderFamilySplitsDigitsFirst) {
    EXPECT_EQ(split("starcoder", "x 123"), (words{"x", " ", "1", "2", "3"}));
    EXPECT_EQ(split("refact", "x 123"), split("starcoder", "x 123"));
}

TEST(Pretokenizer, PoroBloomViking) {
    // " ?[^(\s|.,!?…。，、।۔،)]+": the characters in the class (including '(' '|' ')') are cut
    // out; unmatched text between matches stays one gap piece ("! (").
    EXPECT_EQ(split("bloom", "Hello, world! (ok)"), (words{"Hello", ",", " world", "! (", "ok", ")"}));
    EXPECT_EQ(split("viking", "ab12 c"), (words{"ab", "1", "2", " c"}));
}

TEST(Pretokenizer, TekkenCaseRuns) {
    // Upper-case run then lower-case run; " ABC" has no lower-case letter after it, so only the
    // second alternative (upper+ lower*) matches it.
    EXPECT_EQ(split("tekken", "HelloWorld ABC abc 12"), (words{"Hello", "World", " ABC", " abc", " ", "1", "2"}));
    EXPECT_EQ(split("gpt-4o", "Don't 12345"), (words{"Don't", " ", "123", "45"}));
}

TEST(Pretokenizer, ChameleonEveryRegexCutsEveryChunk) {
    // The sentinel regex isolates "<sentinel:12>", but the later regexes cut it again (digits,
    // punctuation, GPT-2), exactly as llama.cpp applies each regex to all chunks.
    EXPECT_EQ(split("chameleon", "<sentinel:12>IMGIMGABZ  x9, y"),
              (words{"<", "sentinel", ":", "1", "2", ">", "IMGIMGABZ", "  ", "x", "9", ",", " y"}));
}

TEST(Pretokenizer, EveryNameCompilesAndCoversItsInput) {
    const std::string text = "Hello, World! It's 2024-06-01.\n\n  \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\xA6\x99 caf\xC3\xA9\t~x";
    for (const char* name : {"", "default", "llama3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "deepseek-llm", "deepseek-coder",
                             "deepseek-v3", "hunyuan-dense", "falcon", "mpt", "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de",
                             "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "refact",
                             "command-r", "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "olmo", "poro-chat", "chatglm-bpe",
                             "glm4", "viking", "jais", "tekken", "smollm", "codeshell", "bloom", "gpt3-finnish", "exaone",
                             "exaone4", "chameleon", "minerva-7b", "gpt-4o", "llama4", "trillion", "granite-docling",
                             "bailingmoe", "seed-coder", "hunyuan", "grok-2", "minimax-m2", "a.x-4.0", "mellum", "kormo"}) {
        std::string joined;
        for (const auto& w : split(name, text)) {
            EXPECT_FALSE(w.empty()) << name;
            joined += w;
        }
        EXPECT_EQ(joined, text) << name;
    }
    for (const char* bad : {"kimi-k2", "afmoe", "superbpe", "no-such-pre"}) {
        try {
            (void)unicode::pre_spec_for(bad);
            ADD_FAILURE() << bad;
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
        }
    }
}

TEST(Pretokenizer, LongRunsDoNotRecurse) {
    const std::string spaces(200000, ' '), letters(200000, 'a');
    EXPECT_EQ(split("qwen2", spaces + "x").size(), 2u);
    EXPECT_EQ(split("tekken", letters).size(), 1u);
}

}  // namespace

// WordPiece ("bert") and Unigram ("t5") tokenizers on small vocabularies built here; every
// expected id list is derived by hand from the algorithms (BERT's basic tokenizer + greedy
// longest-match-first WordPiece; SentencePiece's normaliser + unigram Viterbi), with the
// arithmetic written next to it.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/text.hpp"

namespace {

using namespace minigpt;
using ids_t = std::vector<std::int32_t>;

vocab_data bert_vocab() {
    vocab_data v;
    v.model = "bert";
    apply_model_defaults(v);
    v.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "\xE2\x96\x81hello", "\xE2\x96\x81world", "\xE2\x96\x81un", "aff", "able",
                "\xE2\x96\x81!", "\xE2\x96\x81,", "\xE2\x96\x81" "cafe", "\xE2\x96\x81\xE4\xB8\xAD", "\xE2\x96\x81\xE6\x96\x87",
                "\xE2\x96\x81" "a", "b"};
    v.types.assign(v.tokens.size(), token_type::normal);
    for (int i = 0; i < 4; ++i) v.types[static_cast<std::size_t>(i)] = token_type::control;
    v.types[1] = token_type::unknown;
    v.unk_id = 1;
    v.bos_id = 2;
    v.pad_id = 0;
    return v;
}

TEST(WordPiece, SplitsLowercasesStripsAccentsAndCutsLongestFirst) {
    const tokenizer bert(bert_vocab());
    // Words: hello , world ! unaffable cafe 中 文 xyz ab ab. "▁unaffable" -> "▁un" (the longest
    // prefix that is a token) + "aff" + "able"; "Café" -> "cafe" (NFD base of é is e);
    // "▁xyz" has no token for any prefix -> [UNK]; the BEL control character is dropped.
    const std::string text = "Hello, WORLD! unaffable Caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 xyz ab a\x07" "b";
    EXPECT_EQ(bert.encode(text, false), (ids_t{4, 10, 5, 9, 6, 7, 8, 11, 12, 13, 1, 14, 15, 14, 15}));
    EXPECT_EQ(bert.encode("hello", true), (ids_t{2, 4}));  // [CLS] as BOS
    EXPECT_TRUE(bert.add_bos_default());
    // A word that cuts only partly is one [UNK] ("▁hello" then "x" has no token).
    EXPECT_EQ(bert.encode("hellox", false), (ids_t{1}));
    EXPECT_EQ(bert.decode(ids_t{4, 5}), " hello world");  // llama.cpp keeps the phantom space (add_space_prefix off)
}

TEST(WordPiece, WordsFollowBertsBasicTokenizer) {
    using text_detail::wpm_encoder;
    EXPECT_EQ(wpm_encoder::words("  A\xC3\x84\xC3\xA7 x+y\t\xE2\x80\x83z$ 1.5 "),
              (std::vector<std::string>{"aac", "x", "+", "y", "z", "$", "1", ".", "5"}));
    // Non-ASCII symbols stay inside words; CJK ideographs stand alone.
    EXPECT_EQ(wpm_encoder::words("a\xE2\x82\xAC" "b\xE5\xAD\x97" "c"), (std::vector<std::string>{"a\xE2\x82\xAC" "b", "\xE5\xAD\x97", "c"}));
    vocab_data v = bert_vocab();
    v.unk_id = -1;
    EXPECT_THROW((void)tokenizer{v}, error);
}

vocab_data t5_vocab() {
    vocab_data v;
    v.model = "t5";
    apply_model_defaults(v);
    v.add_space_prefix = true;
    v.tokens = {"<pad>", "</s>", "<unk>", "\xE2\x96\x81", "\xE2\x96\x81he", "llo", "\xE2\x96\x81hello", "h", "e", "l", "o",
                "\xE2\x96\x81hel", "lo", "<sep>", "\xE2\x96\x81w", "orld"};
    v.scores = {0, 0, 0, -2.0f, -3.0f, -3.0f, -7.0f, -4.0f, -4.0f, -4.0f, -4.0f, -2.5f, -2.5f, 0, -5.0f, -5.0f};
    v.types.assign(v.tokens.size(), token_type::normal);
    v.types[0] = v.types[1] = token_type::control;
    v.types[2] = token_type::unknown;
    v.types[13] = token_type::user_defined;
    return v;
}

TEST(Unigram, ViterbiPicksTheBestTotalScore) {
    const tokenizer t5(t5_vocab());
    // "▁hello": ▁hel+lo = -5.0 beats ▁he+llo = -6.0, ▁hello = -7.0, ▁he+l+lo = -9.5, ▁+h+e+l+l+o = -22.
    EXPECT_EQ(t5.encode("hello", false), (ids_t{11, 12}));
    // "▁world" = ▁w+orld = -10 (▁ + [UNK] w + orld = -2 - 17 - 5 = -24; [UNK] = min score -7 minus 10).
    EXPECT_EQ(t5.encode("hello world", false), (ids_t{11, 12, 14, 15}));
    // "▁hi": ▁ + h + [UNK](i).
    EXPECT_EQ(t5.encode("hi", false), (ids_t{3, 7, 2}));
    // Consecutive [UNK]s merge into one.
    EXPECT_EQ(t5.encode("xy", false), (ids_t{3, 2}));
    // Without remove_extra_whitespaces every space is a "▁" and one "▁" is prepended before the
    // first word: "▁▁▁hello▁▁▁world▁".
    EXPECT_EQ(t5.encode("  hello   world ", false), (ids_t{3, 3, 11, 12, 3, 3, 14, 15, 3}));
    EXPECT_EQ(t5.decode(ids_t{11, 12, 14, 15}), "hello world");
    EXPECT_FALSE(t5.add_bos_default());
}

TEST(Unigram, MergesSpacesAndKeepsUserDefinedTokens) {
    vocab_data v = t5_vocab();
    v.remove_extra_whitespaces = true;
    const tokenizer merged(v);
    EXPECT_EQ(merged.encode("  hello   world ", false), (ids_t{11, 12, 14, 15}));
    // A user-defined token is cut out before normalisation; each fragment gets its own "▁".
    const tokenizer t5(t5_vocab());
    EXPECT_EQ(t5.encode("a<sep>b", false), (ids_t{3, 2, 13, 3, 2}));
}

// A one-rule charsmap built by hand: 'Q' -> "hel". Double array: root BASE 1; 'Q' (0x51) leads
// to node 1 ^ 0x51 = 80, whose LCHECK is 0x51, LEAF set, BASE 1; its value sits at 80 ^ 1 = 81.
TEST(Unigram, PrecompiledCharsmapReplacesLongestMatches) {
    std::vector<std::uint32_t> xcda(82, 0);
    xcda[0] = 1u << 10;
    xcda[80] = (1u << 10) | 0x100u | 0x51u;
    xcda[81] = 0x80000000u | 0u;  // replacement at offset 0
    std::vector<std::uint8_t> blob(4 + xcda.size() * 4);
    const std::uint32_t n = static_cast<std::uint32_t>(xcda.size() * 4);
    std::memcpy(blob.data(), &n, 4);
    std::memcpy(blob.data() + 4, xcda.data(), n);
    for (const char c : std::string("hel")) blob.push_back(static_cast<std::uint8_t>(c));
    blob.push_back(0);
    vocab_data v = t5_vocab();
    v.precompiled_charsmap = blob;
    const tokenizer t5(v);
    EXPECT_EQ(t5.encode("Qlo", false), (ids_t{11, 12}));  // "▁hello"
    EXPECT_EQ(t5.encode("Q", false), (ids_t{11}));
    EXPECT_EQ(t5.encode("hello", false), (ids_t{11, 12}));  // other bytes pass through
    // Through GGUF and back: the blob survives.
    io::gguf_writer w;
    write_vocab(w, v);
    const auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
    const vocab_data back = vocab_from_gguf(io::gguf_file::from_memory(bytes, "t5.gguf"));
    EXPECT_EQ(back, v);
    // A blob whose double array does not fit is an error naming the key.
    v.precompiled_charsmap.resize(10);
    try {
        (void)tokenizer{v};
        ADD_FAILURE() << "no error";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("precompiled_charsmap"), std::string::npos);
    }
}

}  // namespace

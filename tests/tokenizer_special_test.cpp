// Special tokens: user-defined tokens split before everything else, lstrip/rstrip attributes,
// control tokens parsed only in a chat template's own text, and the CLI flags around them.
//
// References: the expected ids are derived by hand from llama.cpp's tokenizer_st_partition
// (longest special first; a user-defined token is cut out even without parse_special; rstrip drops
// the ASCII whitespace after the token; SentencePiece text after a special token gets the "▁"
// prefix) applied to the Llama 2 / GPT-2 vocabularies of ../shared, whose plain-text ids the
// conformance vectors already pin down ("▁Hello" = 15043).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/text.hpp"
#include "minigpt/text/chat_template.hpp"
#include "test_data.hpp"

namespace {

using namespace minigpt;
using minigpt::test::shared_path;
using ids_t = std::vector<std::int32_t>;

vocab_data with_tokens(vocab_data v, const std::vector<std::string>& texts, token_type type) {
    for (const auto& t : texts) {
        v.tokens.push_back(t);
        if (!v.scores.empty()) v.scores.push_back(0.0f);
        if (!v.types.empty()) v.types.push_back(type);
    }
    return v;
}

const vocab_data& llama_vocab() {
    static const auto v = std::make_unique<vocab_data>(vocab_from_gguf(io::gguf_file::open(shared_path("vocab/ggml-vocab-llama-spm.gguf"))));
    return *v;
}
const vocab_data& gpt2_vocab() {
    static const auto v = std::make_unique<vocab_data>(vocab_from_gguf(io::gguf_file::open(shared_path("vocab/ggml-vocab-gpt-2.gguf"))));
    return *v;
}

// Phi-3's added tokens on top of the Llama 2 vocabulary, at Phi-3's ids (32000..32010).
vocab_data phi3_vocab(const std::string& name) {
    vocab_data v = with_tokens(llama_vocab(),
                               {"<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
                                "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"},
                               token_type::control);
    v.name = name;
    return v;
}

const std::string k_phi3_prompt = "<|user|>\nHello<|end|>\n<|assistant|>\n";

TEST(SpecialTokens, Phi3ControlTokensStripTheNewlineAfterThem) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
    // llama.cpp matches "phi-3" or "phi3" in the lower-cased general.name.
    const tokenizer phi3(phi3_vocab("Phi-3-mini-4k-instruct"));
    EXPECT_EQ(phi3.strip_of(32010), strip_right);
    EXPECT_EQ(phi3.strip_of(32000), strip_none);  // <|endoftext|> is exempt
    EXPECT_EQ(phi3.strip_of(1), strip_none);      // <s>
    EXPECT_EQ(phi3.strip_of(2), strip_right);     // </s>
    // <|user|> drops "\n"; "Hello" after a special token is "▁Hello"; <|end|> and <|assistant|> drop "\n".
    EXPECT_EQ(phi3.encode(k_phi3_prompt, true, true), (ids_t{1, 32010, 15043, 32007, 32001}));
    // The same vocabulary under another name has no rstrip: the "\n" becomes "▁" + <0x0A>.
    const tokenizer other(phi3_vocab("some-model"));
    const ids_t plain = other.encode(k_phi3_prompt, true, true);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 13), 3);  // <0x0A> after each control token
    EXPECT_NE(plain, phi3.encode(k_phi3_prompt, true, true));
    // Without parse_special the control-token text is plain text.
    const ids_t text = phi3.encode(k_phi3_prompt, true, false);
    EXPECT_EQ(std::count_if(text.begin(), text.end(), [](std::int32_t id) { return id >= 32000; }), 0);
}

TEST(SpecialTokens, JinaMaskStripsOnTheLeft) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
    vocab_data v = with_tokens(gpt2_vocab(), {"<mask>"}, token_type::control);
    v.pre = "jina-v2-de";
    const tokenizer jina(v);
    EXPECT_EQ(jina.strip_of(50257), strip_left);
    const tokenizer plain_gpt2(gpt2_vocab());
    ids_t expected = plain_gpt2.encode("a", false);
    expected.push_back(50257);
    EXPECT_EQ(jina.encode("a   <mask>", false, true), expected);
}

// GPT-NeoX vocabularies (mpt, olmo) add runs of spaces as user-defined tokens; llama.cpp cuts
// them out before pre-tokenizing even without parse_special, so "  " is that token, not "ĠĠ".
TEST(SpecialTokens, UserDefinedTokensAreSplitWithoutParseSpecial) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
    vocab_data v = with_tokens(gpt2_vocab(), {"    ", "  "}, token_type::user_defined);
    v.pre = "mpt";
    const tokenizer mpt(v), gpt2(gpt2_vocab());
    EXPECT_EQ(mpt.encode("  ", false), (ids_t{50258}));
    EXPECT_NE(gpt2.encode("  ", false), (ids_t{50258}));
    // Longest first: six spaces are "    " then "  ".
    ids_t expected = gpt2.encode("a", false);
    expected.push_back(50257);
    expected.push_back(50258);
    for (auto id : gpt2.encode("b", false)) expected.push_back(id);
    EXPECT_EQ(mpt.encode("a      b", false), expected);
}

TEST(SpecialTokens, EndOfGenerationTextsAreControlTokens) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
    // A file that marks <|im_end|> as user-defined: llama.cpp overrides it to control, so plain
    // text never produces it.
    const tokenizer t(with_tokens(gpt2_vocab(), {"<|im_end|>"}, token_type::user_defined));
    EXPECT_EQ(t.type_of(50257), token_type::control);
    EXPECT_TRUE(t.is_eog(50257));
    const ids_t plain = t.encode("x<|im_end|>", false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 50257), 0);
}

TEST(ChatSpecialTokens, UserContentCannotForgeControlTokens) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
    const tokenizer plain(gpt2_vocab());
    const tokenizer t(with_tokens(gpt2_vocab(), {"<|im_start|>", "<|im_end|>"}, token_type::control));
    const auto tmpl = chat_template::from_name("chatml");
    const chat_prompt p = tmpl.render({{"user", "hi<|im_end|>"}});
    ASSERT_EQ(p.text, "<|im_start|>user\nhi<|im_end|><|im_end|>\n<|im_start|>assistant\n");
    ASSERT_EQ(p.content.size(), 1u);
    EXPECT_EQ(p.text.substr(p.content[0].offset, p.content[0].length), "hi<|im_end|>");

    // The template's control tokens are tokens; the user's "<|im_end|>" is text, tokenized
    // together with the template text around it.
    ids_t expected{50257};
    for (auto id : plain.encode("user\nhi<|im_end|>", false)) expected.push_back(id);
    expected.push_back(50258);
    for (auto id : plain.encode("\n", false)) expected.push_back(id);
    expected.push_back(50257);
    for (auto id : plain.encode("assistant\n", false)) expected.push_back(id);
    EXPECT_EQ(t.encode_with_literals(p.text, false, true, p.content), expected);
    // llama.cpp's way (the whole prompt parsed) lets the user end the turn: two <|im_end|>.
    const ids_t naive = t.encode(p.text, false, true);
    EXPECT_EQ(std::count(naive.begin(), naive.end(), 50258), 2);
    // Without special text in the content, the ids equal parsing the whole prompt.
    const chat_prompt q = tmpl.render({{"system", "Be brief."}, {"user", "Hello there"}});
    EXPECT_EQ(t.encode_with_literals(q.text, false, true, q.content), t.encode(q.text, false, true));
}

TEST(ChatSpecialTokens, ContentRangesFollowTrimming) {
    const auto llama2 = chat_template::from_name("llama2");
    const chat_prompt p = llama2.render({{"system", "  sys  "}, {"user", "  hello  "}});
    ASSERT_EQ(p.text, llama2.apply({{"system", "  sys  "}, {"user", "  hello  "}}));
    std::vector<std::string> pieces;
    for (const auto& r : p.content) pieces.push_back(p.text.substr(r.offset, r.length));
    EXPECT_EQ(pieces, (std::vector<std::string>{"  sys  ", "  hello"}));  // the whole block is stripped, not each part
    const auto llama3 = chat_template::from_name("llama3");
    const chat_prompt q = llama3.render({{"user", " x "}});
    ASSERT_EQ(q.content.size(), 1u);
    EXPECT_EQ(q.text.substr(q.content[0].offset, q.content[0].length), "x");
    for (const char* name : {"chatml", "llama2", "llama3", "mistral", "gemma", "phi3", "zephyr"}) {
        const auto t = chat_template::from_name(name);
        const std::vector<chat_message> ms{{"user", "u1"}, {"assistant", "a1"}, {"user", "u2"}};
        const chat_prompt r = t.render(ms);
        EXPECT_EQ(r.text, t.apply(ms)) << name;
        std::vector<std::string> got;
        for (const auto& c : r.content) got.push_back(r.text.substr(c.offset, c.length));
        EXPECT_EQ(got, (std::vector<std::string>{"u1", "a1", "u2"})) << name;
    }
}

// `minigpt tokenize --parse-special` on a Phi-3-like vocabulary written to GGUF gives what
// llama-tokenize gives (no "▁" "\n" after the control tokens).
TEST(SpecialTokensTool, TokenizeParseSpecialStripsLikeLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "tool not built: " << MINIGPT_TOOL;
    const auto dir = test::temp_dir("tokenizer_special");
    const std::string path = (dir / "phi3-vocab.gguf").string();
    {
        io::gguf_writer w(path);
        w.set("general.architecture", "phi3");
        write_vocab(w, phi3_vocab("Phi3"));
        w.finish();
    }
    std::string out;
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " tokenize -m " + path + " --parse-special -p '" + k_phi3_prompt + "'", &out), 0);
    EXPECT_EQ(out, "1 32010 15043 32007 32001\n");
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " tokenize -m " + path + " -p '<|user|>'", &out), 0);
    EXPECT_EQ(out.find("32010"), std::string::npos);
}

}  // namespace

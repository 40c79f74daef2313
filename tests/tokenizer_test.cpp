// Tokenizer conformance and behaviour tests.
//
// References, all independent of the code under test: llama.cpp's tokenizer vectors in
// ../shared/vocab (read exactly as llama.cpp's test-tokenizer-0 reads them), the GPT-2 prompt ids
// llama.cpp produced for gpt2-tiny, the tokenizer metadata of stories260K.gguf, Llama 2's
// vocabulary in both llama2.c and GGUF form, and brute-force O(n^2) re-implementations of both
// merge algorithms written with std::map (no heaps, no word splitting, no caches).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "minigpt/text.hpp"
#include "test_data.hpp"

namespace minigpt {
// Readable failure messages for whole-record comparisons.
inline void PrintTo(const vocab_data& v, std::ostream* os) {
    *os << "vocab_data{model=" << v.model << " pre=" << v.pre << " n_tokens=" << v.tokens.size()
        << " n_scores=" << v.scores.size() << " n_types=" << v.types.size() << " n_merges=" << v.merges.size()
        << " bos=" << v.bos_id << " eos=" << v.eos_id << " unk=" << v.unk_id << " pad=" << v.pad_id << " eot=" << v.eot_id
        << " add_bos=" << v.add_bos << " add_eos=" << v.add_eos << " add_space_prefix=" << v.add_space_prefix
        << " chat_template=" << v.chat_template << "}";
}
}  // namespace minigpt

namespace {

using namespace minigpt;
using minigpt::test::shared_path;
using ids_t = std::vector<std::int32_t>;

const tokenizer& gpt2() {
    static const auto t = std::make_unique<tokenizer>(tokenizer::from_gguf(io::gguf_file::open(shared_path("vocab/ggml-vocab-gpt-2.gguf"))));
    return *t;
}
const tokenizer& llama() {
    static const auto t = std::make_unique<tokenizer>(tokenizer::from_gguf(io::gguf_file::open(shared_path("vocab/ggml-vocab-llama-spm.gguf"))));
    return *t;
}

#define NEED_GPT2() MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf")
#define NEED_LLAMA() MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf")

// llama.cpp's test-tokenizer-0 reading: the .inp file is split at "\n__ggml_vocab_test__\n" (the
// file ends with that separator, so the last input has no trailing newline and there is no empty
// input after it); the .out file has one line of space-separated ids per input, without BOS.
std::vector<std::pair<std::string, ids_t>> read_vectors(const std::string& base) {
    const std::string raw = test::read_text(base + ".inp");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> inputs;
    for (std::size_t pos = 0; pos < raw.size();) {
        const std::size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            inputs.push_back(raw.substr(pos));
            break;
        }
        inputs.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    std::ifstream out(base + ".out");
    std::vector<std::pair<std::string, ids_t>> vectors;
    std::string line;
    for (std::size_t i = 0; std::getline(out, line); ++i) {
        ids_t ids;
        std::istringstream ss(line);
        for (std::int32_t id; ss >> id;) ids.push_back(id);
        if (i < inputs.size()) vectors.emplace_back(inputs[i], ids);
    }
    EXPECT_EQ(vectors.size(), inputs.size()) << base;
    return vectors;
}

void expect_vectors(const tokenizer& tok, const std::string& base) {
    const auto vectors = read_vectors(base);
    EXPECT_EQ(vectors.size(), 46u);
    for (const auto& [text, expected] : vectors) EXPECT_EQ(tok.encode(text, false), expected) << "input: '" << text << "'";
}

TEST(TokenizerVectors, Gpt2MatchesLlamaCpp) {
    NEED_GPT2();
    expect_vectors(gpt2(), shared_path("vocab/ggml-vocab-gpt-2.gguf"));
}

TEST(TokenizerVectors, LlamaSpmMatchesLlamaCpp) {
    NEED_LLAMA();
    expect_vectors(llama(), shared_path("vocab/ggml-vocab-llama-spm.gguf"));
}

TEST(TokenizerVectors, DeepseekLlmMatchesLlamaCpp) {
    MINIGPT_REQUIRE_SHARED("vocab/ggml-vocab-deepseek-llm.gguf");
    const auto tok = tokenizer::from_gguf(io::gguf_file::open(shared_path("vocab/ggml-vocab-deepseek-llm.gguf")));
    EXPECT_EQ(tok.vocab().pre, "deepseek-llm");
    expect_vectors(tok, shared_path("vocab/ggml-vocab-deepseek-llm.gguf"));
}

// Every llama.cpp vocabulary with vectors present in ../shared/vocab (llama.cpp ships
// ggml-vocab-{bert-bge,command-r,deepseek-coder,falcon,gpt-neox,llama-bpe,mpt,phi-3,qwen2,refact,
// starcoder,...}.gguf with .inp/.out; whichever are there are checked, exactly).
TEST(TokenizerVectors, EveryVocabularyWithVectorsMatchesLlamaCpp) {
    const std::filesystem::path dir = shared_path("vocab");
    if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no " << dir;
    int checked = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string path = entry.path().string();
        if (entry.path().extension() != ".gguf" || !std::filesystem::exists(path + ".inp") || !std::filesystem::exists(path + ".out"))
            continue;
        SCOPED_TRACE(path);
        const auto tok = tokenizer::from_gguf(io::gguf_file::open(path));
        const auto vectors = read_vectors(path);
        EXPECT_FALSE(vectors.empty());
        for (const auto& [text, expected] : vectors) EXPECT_EQ(tok.encode(text, false), expected) << "input: '" << text << "'";
        ++checked;
    }
    EXPECT_GE(checked, 3);
}

TEST(TokenizerVectors, Llama2cTokenizerBinGivesTheSameIds) {
    MINIGPT_REQUIRE_SHARED("vocab/llama2-tokenizer.bin");
    NEED_LLAMA();
    const vocab_data bin = vocab_from_llama2c(shared_path("vocab/llama2-tokenizer.bin"));
    const vocab_data& gguf = llama().vocab();
    EXPECT_EQ(bin.tokens, gguf.tokens);
    EXPECT_EQ(bin.scores, gguf.scores);
    EXPECT_EQ(bin.types, gguf.types);
    EXPECT_EQ(std::tie(bin.bos_id, bin.eos_id, bin.unk_id), std::tie(gguf.bos_id, gguf.eos_id, gguf.unk_id));
    expect_vectors(tokenizer(bin), shared_path("vocab/ggml-vocab-llama-spm.gguf"));
}

// prompt.txt has no trailing newline and prompt-ids.txt no BOS (it starts with 464, "The"):
// llama.cpp tokenized the file's bytes as they are, without special tokens.
TEST(TokenizerVectors, Gpt2TinyPrompt) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    const std::string prompt = test::read_text(shared_path("golden/gpt2-tiny/prompt.txt"));
    ASSERT_FALSE(prompt.empty());
    EXPECT_NE(prompt.back(), '\n');
    const tokenizer tok = tokenizer::from_gguf(io::gguf_file::open(shared_path("models/gpt2-tiny.gguf")));
    EXPECT_FALSE(tok.add_bos_default());
    EXPECT_EQ(tok.encode(prompt, false), test::read_ids(shared_path("golden/gpt2-tiny/prompt-ids.txt")));
}

TEST(Vocab, SyntheticVocabEqualsStories260KMetadata) {
    MINIGPT_REQUIRE_SHARED("models/stories260K.gguf");
    vocab_data file = vocab_from_gguf(io::gguf_file::open(shared_path("models/stories260K.gguf")));
    file.name.clear();  // general.name is the model's, not the vocabulary's
    const vocab_data synth = synthetic_vocab(512);
    EXPECT_EQ(synth, file);
    ASSERT_EQ(synth.scores.size(), file.scores.size());
    for (std::size_t i = 0; i < synth.scores.size(); ++i)  // bit for bit: token 0's score is -0.0
        EXPECT_EQ(std::bit_cast<std::uint32_t>(synth.scores[i]), std::bit_cast<std::uint32_t>(file.scores[i])) << i;
    EXPECT_EQ(file.pad_id, -1);  // stored as 0xFFFFFFFF
    EXPECT_THROW(synthetic_vocab(258), error);
}

TEST(Vocab, WriteThenReadGivesTheSameRecord) {
    NEED_GPT2();
    vocab_data odd = synthetic_vocab(300);
    odd.bos_id = -1;                   // differs from the llama default (1): must be written as "none"
    odd.add_space_prefix = false;
    odd.add_eos = true;
    odd.eot_id = 5;
    odd.chat_template = "{{ messages }}";
    for (const vocab_data& v : {gpt2().vocab(), odd}) {
        io::gguf_writer w;
        write_vocab(w, v);
        const auto bytes = std::make_shared<const std::vector<std::byte>>(w.finish_to_memory());
        EXPECT_EQ(vocab_from_gguf(io::gguf_file::from_memory(bytes, "memory.gguf")), v) << v.model;
    }
}

TEST(Vocab, BadInputIsReportedWithItsKeyOrPosition) {
    auto read_back = [](const vocab_data& v, auto&& edit) {
        io::gguf_writer w;
        write_vocab(w, v);
        edit(w);
        return vocab_from_gguf(io::gguf_file::from_memory(std::make_shared<const std::vector<std::byte>>(w.finish_to_memory()), "bad.gguf"));
    };
    auto message = [](auto&& fn) -> std::string {
        try {
            fn();
        } catch (const error& e) {
            return e.what();
        }
        return "(no error)";
    };
    vocab_data v = synthetic_vocab(300);
    v.model = "rwkv";
    EXPECT_NE(message([&] { read_back(v, [](io::gguf_writer&) {}); }).find("tokenizer.ggml.model"), std::string::npos);
    v = synthetic_vocab(300);
    EXPECT_NE(message([&] { read_back(v, [](io::gguf_writer& w) { w.set("tokenizer.ggml.bos_token_id", std::uint32_t{300}); }); })
                  .find("tokenizer.ggml.bos_token_id"),
              std::string::npos);
    v.model = "gpt2";  // byte-level BPE without merges
    EXPECT_NE(message([&] { read_back(v, [](io::gguf_writer&) {}); }).find("tokenizer.ggml.merges"), std::string::npos);

    // llama2.c file cut inside a token: the error names the file and a byte offset.
    const auto dir = test::temp_dir("tokenizer");
    const std::string path = (dir / "cut.bin").string();
    {
        std::ofstream f(path, std::ios::binary);
        const std::int32_t max_len = 8, len = 5;
        const float score = 0.0f;
        f.write(reinterpret_cast<const char*>(&max_len), 4);
        f.write(reinterpret_cast<const char*>(&score), 4);
        f.write(reinterpret_cast<const char*>(&len), 4);
        f.write("ab", 2);
    }
    EXPECT_THROW(vocab_from_llama2c(path), format_error);
    EXPECT_NE(message([&] { vocab_from_llama2c(path); }).find("cut.bin"), std::string::npos);
    EXPECT_THROW(vocab_from_llama2c((dir / "absent.bin").string()), io_error);
}

TEST(Tokenizer, ConstructorValidates) {
    vocab_data v = synthetic_vocab(300);
    v.eos_id = 300;
    EXPECT_THROW((void)tokenizer{v}, error);
    v = synthetic_vocab(300);
    v.scores.pop_back();
    EXPECT_THROW((void)tokenizer{v}, error);
    v = synthetic_vocab(300);
    v.tokens[299] = v.tokens[298];  // duplicate text
    EXPECT_THROW((void)tokenizer{v}, error);
    v = synthetic_vocab(300);
    v.model = "gpt2";
    v.merges = {"a b", "nospace"};
    EXPECT_THROW((void)tokenizer{v}, error);
    v.merges = {"a b"};
    v.pre = "no-such-pre";  // an unknown pre-tokenizer: refused by name, not silently replaced
    try {
        (void)tokenizer{v};
        ADD_FAILURE() << "no error for an unknown pre-tokenizer";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("'no-such-pre'"), std::string::npos) << e.what();
    }
}

// Strings whose decode(encode(s)) must give s back exactly.
const std::vector<std::string> k_round_trip = {
    "我想在apple工作1314151天～ 中文的句子，没有空格。",
    "🦙🚀 😶‍🌫️ ✅ (emoji) 👩🏽‍💻",
    "\t\ta  b\n\n c \r\n   end  ",
    "   leading spaces and a trailing one ",
    "\nnew line first",
    "Mixed: Ελληνικά, русский, العربية, हिन्दी, 日本語のテキスト, 한국어!",
    "<s> and </s> and <|endoftext|> are plain text here",
    "",
};

TEST(Tokenizer, DecodeInvertsEncode) {
    NEED_GPT2();
    NEED_LLAMA();
    for (const tokenizer* tok : {&gpt2(), &llama()})
        for (const auto& s : k_round_trip) {
            EXPECT_EQ(tok->decode(tok->encode(s, false)), s) << tok->vocab().model;
            EXPECT_EQ(tok->decode(tok->encode(s, true)), s) << tok->vocab().model;  // BOS is markup, not text
        }
}

TEST(Tokenizer, IllFormedUtf8SurvivesByteExactly) {
    NEED_GPT2();
    NEED_LLAMA();
    const std::vector<std::string> inputs = {"\x80", "ab\xBF\xBF" "cd", "\xE4\xB8", "x\xE4\xB8", "\xC0\xAF", "\xF0\x9F\x98",
                                             "\xED\xA0\x80 surrogate", "\xFF\xFE\xFD", " \xF4\x90\x80\x80!"};
    for (const auto& s : inputs) {
        for (const tokenizer* tok : {&gpt2(), &llama()}) {
            const ids_t ids = tok->encode(s, false);
            std::string bytes;
            for (const auto id : ids) bytes += tok->token_to_piece(id);
            if (tok == &llama()) {
                ASSERT_EQ(bytes.substr(0, 1), " ");  // the SentencePiece prefix space
                bytes.erase(0, 1);
            }
            EXPECT_EQ(bytes, s) << tok->vocab().model;
            EXPECT_EQ(tok->decode(ids), utf8::repair(s)) << tok->vocab().model;
        }
        // SentencePiece writes each ill-formed byte as its <0xXX> token (id 3 + byte in Llama 2);
        // the well-formed characters of these inputs all have tokens of their own.
        ids_t expected_bytes, byte_tokens;
        for (std::size_t i = 0; i < s.size();) {
            const auto d = utf8::decode(s, i);
            if (d.state != utf8::status::ok)
                for (std::size_t k = i; k < i + d.length; ++k) expected_bytes.push_back(3 + static_cast<unsigned char>(s[k]));
            i += d.length;
        }
        for (const auto id : llama().encode(s, false))
            if (llama().type_of(id) == token_type::byte) byte_tokens.push_back(id);
        EXPECT_EQ(byte_tokens, expected_bytes);
    }
    EXPECT_EQ(llama().encode("\xC0", false), (ids_t{29871, 3 + 0xC0}));
}

TEST(Tokenizer, SpecialTokensOnlyWithParseSpecial) {
    NEED_GPT2();
    NEED_LLAMA();
    const ids_t plain = gpt2().encode("a<|endoftext|>b", false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
    ids_t expected = gpt2().encode("a", false);
    expected.push_back(50256);
    for (auto id : gpt2().encode("b", false)) expected.push_back(id);
    EXPECT_EQ(gpt2().encode("a<|endoftext|>b", false, true), expected);

    EXPECT_EQ(llama().encode("<s>", false, true), (ids_t{1}));  // no "▁" token for the empty text around it
    const ids_t as_text = llama().encode("<s>", false);
    EXPECT_EQ(std::count(as_text.begin(), as_text.end(), 1), 0);
    // "Hello world" is 15043 3186 in the vectors; after a special token the text starts again, so
    // "world" gets its prefix space: "▁world" = 3186.
    EXPECT_EQ(llama().encode("Hello<s>world", false, true), (ids_t{15043, 1, 3186}));
    EXPECT_EQ(llama().encode("Hello world</s>", true, true), (ids_t{1, 15043, 3186, 2}));
}

TEST(Tokenizer, Accessors) {
    NEED_GPT2();
    NEED_LLAMA();
    EXPECT_EQ(llama().encode("Hello", true), (ids_t{1, 15043}));
    EXPECT_TRUE(llama().add_bos_default());
    EXPECT_EQ(llama().n_vocab(), 32000);
    EXPECT_EQ(gpt2().n_vocab(), 50257);
    EXPECT_EQ(std::tie(llama().vocab().bos_id, llama().vocab().eos_id), std::make_tuple(1, 2));
    EXPECT_EQ(llama().bos(), 1);
    EXPECT_EQ(gpt2().eos(), 50256);
    EXPECT_TRUE(gpt2().is_eog(50256));
    EXPECT_FALSE(gpt2().is_eog(198));
    EXPECT_TRUE(llama().is_eog(2));
    EXPECT_FALSE(llama().is_eog(1));
    EXPECT_FALSE(llama().is_eog(-5));
    EXPECT_EQ(llama().find_token("\xE2\x96\x81Hello"), 15043);
    EXPECT_EQ(llama().find_token("<s>"), 1);
    EXPECT_EQ(llama().find_token("no-such-token-xyz"), std::nullopt);
    EXPECT_EQ(llama().token_to_piece(13), "\n");  // <0x0A>
    EXPECT_EQ(llama().token_to_piece(15043), " Hello");
    EXPECT_EQ(llama().token_to_piece(1), "<s>");
    EXPECT_EQ(gpt2().token_to_piece(220), " ");  // "Ġ"
    EXPECT_EQ(gpt2().token_to_piece(198), "\n");  // "Ċ"
    EXPECT_EQ(gpt2().token_to_piece(50256), "<|endoftext|>");
    EXPECT_EQ(llama().decode(ids_t{1, 15043, 3186, 2}), "Hello world");
    EXPECT_THROW(llama().decode(ids_t{15043, 32000}), error);
    EXPECT_THROW(llama().decode(ids_t{-1}), error);
    EXPECT_THROW(gpt2().token_to_piece(50257), error);
}

TEST(StreamDecoder, PiecesAreWholeCharactersAndAddUpToDecode) {
    NEED_GPT2();
    NEED_LLAMA();
    std::string text;
    for (const auto& s : k_round_trip) text += s;
    for (const tokenizer* tok : {&gpt2(), &llama()}) {
        const ids_t ids = tok->encode(text, true);
        stream_decoder stream(*tok);
        std::string joined;
        for (const auto id : ids) {
            const std::string piece = stream.push(id);
            EXPECT_TRUE(utf8::is_valid(piece)) << tok->vocab().model;
            joined += piece;
        }
        joined += stream.flush();
        EXPECT_EQ(joined, tok->decode(ids)) << tok->vocab().model;
        EXPECT_EQ(joined, text) << tok->vocab().model;
    }
    // 🦙 is four byte tokens in Llama 2 (vector " this is 🦙.cpp"): nothing until the last.
    stream_decoder stream(llama());
    EXPECT_EQ(stream.push(29871), "");  // "▁": the prefix space, removed
    EXPECT_EQ(stream.push(243), "");
    EXPECT_EQ(stream.push(162), "");
    EXPECT_EQ(stream.push(169), "");
    EXPECT_EQ(stream.push(156), "🦙");
    EXPECT_EQ(stream.push(3 + 0xE4), "");           // a lead byte whose character never completes
    EXPECT_EQ(stream.push(29874), "\xEF\xBF\xBD" "a");  // "a"
    EXPECT_EQ(stream.push(3 + 0xE4), "");
    EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
    stream_decoder continuing(llama(), false);      // after a prompt: the space is part of the text
    EXPECT_EQ(continuing.push(15043), " Hello");
}

// --- Brute-force references -----------------------------------------------------------------

std::string mixed_sample() {
    std::string text;
    for (int i = 0; i < 6; ++i)
        for (const auto& s : k_round_trip) text += s + (i % 2 ? " " : "\n");
    text += "The quick brown fox's den isn't there; they'll say \"I'd've gone\" -- 12,345.67 units!";
    return text;
}

// Byte-level BPE as the GPT-2 paper describes it: per pre-tokenized word, repeatedly merge the
// adjacent pair with the lowest rank (leftmost on ties), strings all the way.
ids_t reference_bpe(const vocab_data& v, const std::string& text) {
    std::map<std::pair<std::string, std::string>, std::size_t> rank;
    for (std::size_t i = 0; i < v.merges.size(); ++i) {
        const auto sp = v.merges[i].find(' ', 1);
        rank.emplace(std::make_pair(v.merges[i].substr(0, sp), v.merges[i].substr(sp + 1)), i);
    }
    std::map<std::string, std::int32_t> id;
    for (std::size_t i = 0; i < v.tokens.size(); ++i) id[v.tokens[i]] = static_cast<std::int32_t>(i);
    ids_t out;
    unicode::split_gpt2(text, [&](std::string_view word) {
        std::vector<std::string> sym;
        for (unsigned char b : word) sym.push_back(utf8::encode(text_detail::gpt2_byte_to_cp()[b]));
        for (;;) {
            std::size_t best = rank.size(), at = 0;
            for (std::size_t i = 0; i + 1 < sym.size(); ++i)
                if (auto it = rank.find({sym[i], sym[i + 1]}); it != rank.end() && it->second < best) {
                    best = it->second;
                    at = i;
                }
            if (best == rank.size()) break;
            sym[at] += sym[at + 1];
            sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
        }
        for (const auto& s : sym) out.push_back(id.at(s));
    });
    return out;
}

// SentencePiece BPE over the whole text: repeatedly merge the adjacent pair whose concatenation is
// a normal token with the highest score (leftmost on ties); leftovers become byte tokens.
ids_t reference_spm(const vocab_data& v, const std::string& text) {
    std::map<std::string, std::int32_t> id;
    for (std::size_t i = 0; i < v.tokens.size(); ++i)
        if (v.types[i] == token_type::normal) id[v.tokens[i]] = static_cast<std::int32_t>(i);
    std::string escaped = "\xE2\x96\x81";
    for (char c : text) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    std::vector<std::string> sym;
    for (std::size_t i = 0; i < escaped.size();) {
        const auto d = utf8::decode(escaped, i);
        sym.push_back(escaped.substr(i, d.length));
        i += d.length;
    }
    for (;;) {
        float best = 0;
        std::size_t at = sym.size();
        for (std::size_t i = 0; i + 1 < sym.size(); ++i)
            if (auto it = id.find(sym[i] + sym[i + 1]); it != id.end()) {
                const float score = v.scores[static_cast<std::size_t>(it->second)];
                if (at == sym.size() || score > best) {
                    best = score;
                    at = i;
                }
            }
        if (at == sym.size()) break;
        sym[at] += sym[at + 1];
        sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    ids_t out;
    for (const auto& s : sym) {
        if (auto it = id.find(s); it != id.end()) {
            out.push_back(it->second);
        } else {
            for (unsigned char b : s) out.push_back(3 + b);  // <0x00> is id 3 in Llama 2
        }
    }
    return out;
}

TEST(TokenizerReference, Gpt2MatchesBruteForce) {
    NEED_GPT2();
    const std::string text = mixed_sample();
    EXPECT_EQ(gpt2().encode(text, false), reference_bpe(gpt2().vocab(), text));
}

TEST(TokenizerReference, LlamaMatchesBruteForceOverTheWholeText) {
    NEED_LLAMA();
    const std::string text = mixed_sample().substr(0, 1500);  // O(n^2) reference: keep it short
    EXPECT_EQ(llama().encode(text, false), reference_spm(llama().vocab(), text));
}

// --- The minigpt tool --------------------------------------------------------------------------

TEST(TokenizeTool, TokenizesAndDetokenizesLikeTheLibrary) {
    MINIGPT_REQUIRE_SHARED("models/gpt2-tiny.gguf");
    if (!std::filesystem::exists(MINIGPT_TOOL)) GTEST_SKIP() << "tool not built: " << MINIGPT_TOOL;
    std::string out;
    const std::string model = shared_path("models/gpt2-tiny.gguf");
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " tokenize -m " + model + " -f " + shared_path("golden/gpt2-tiny/prompt.txt"), &out), 0);
    EXPECT_EQ(test::read_ids(shared_path("golden/gpt2-tiny/prompt-ids.txt")), [&] {
        ids_t ids;
        std::istringstream ss(out);
        for (std::int32_t id; ss >> id;) ids.push_back(id);
        return ids;
    }());
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " detokenize -m " + model + " --ids " + shared_path("golden/gpt2-tiny/prompt-ids.txt"), &out), 0);
    EXPECT_EQ(out, test::read_text(shared_path("golden/gpt2-tiny/prompt.txt")));
    // A llama2.c checkpoint without tokenizer.bin beside it falls back to the synthetic vocabulary.
    MINIGPT_REQUIRE_SHARED("models/stories260K.bin");
    ASSERT_EQ(test::run(std::string(MINIGPT_TOOL) + " tokenize -m " + shared_path("models/stories260K.bin") + " -p 'Hi' 2>/dev/null", &out), 0);
    EXPECT_EQ(out, "1 229 153 132 75 108\n");  // BOS, the bytes of "▁" (E2 96 81; byte b is id 3 + b), 'H', 'i'
}

}  // namespace

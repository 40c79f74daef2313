// vocab_data: a tokenizer's vocabulary as plain data, and the sources that do not need GGUF.
//
// The record mirrors the `tokenizer.ggml.*` keys of a GGUF file (see vocab_gguf.hpp for reading
// and writing those): the token strings in id order, their scores and types, BPE merges, special
// token ids and the flags that change how text is encoded. `minigpt::tokenizer` is built from it.
// Two other sources live here: llama2.c's `tokenizer.bin`, and the synthetic vocabulary that
// llama.cpp's llama2.c converter writes for checkpoints that come without one.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt {

// Token types as GGUF stores them (`tokenizer.ggml.token_type`, llama.cpp's llama_token_type).
enum class token_type : std::int32_t {
    undefined = 0,
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
};

// A byte range [offset, offset + length) of a text (e.g. user-supplied content in a chat prompt).
struct text_range {
    std::size_t offset = 0, length = 0;
    bool operator==(const text_range&) const = default;
};

struct vocab_data {
    std::string model;                  // tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (SentencePiece BPE),
                                        // "bert" (WordPiece) or "t5" (Unigram)
    std::string pre;                    // tokenizer.ggml.pre (pre-tokenizer name), if any
    std::vector<std::string> tokens;    // (n_vocab) token text; SentencePiece spaces are U+2581, GPT-2 bytes are mapped
    std::vector<float> scores;          // (n_vocab) or empty: SentencePiece merge priorities
    std::vector<token_type> types;      // (n_vocab) or empty: all normal
    std::vector<std::string> merges;    // BPE merges "left right", highest priority first (gpt2 only)
    std::int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1, eot_id = -1;   // -1: none
    // Defaults are llama.cpp's for "llama" vocabularies; vocab_from_gguf sets "gpt2" ones (all false).
    bool add_bos = true;                // prepend BOS when the caller asks for the model's default
    bool add_eos = false;
    bool add_space_prefix = true;       // SentencePiece: encode " " + text
    bool remove_extra_whitespaces = false;          // Unigram: merge runs of spaces
    std::vector<std::uint8_t> precompiled_charsmap; // Unigram: SentencePiece's normalisation rules, if any
    std::string chat_template;          // tokenizer.chat_template, if any
    std::string name;                   // general.name, if any: llama.cpp derives token attributes from it

    std::int32_t n_vocab() const { return static_cast<std::int32_t>(tokens.size()); }
    bool operator==(const vocab_data&) const = default;
};

// Sets the fields whose llama.cpp defaults depend on the model kind: the flags, and the
// conventional special ids ("llama": <unk>=0, <s>=1, </s>=2; "bert": [UNK]=100, [CLS]=101 as BOS,
// [PAD]=0; "t5": <pad>=0, </s>=1, <unk>=2).
inline void apply_model_defaults(vocab_data& v) {
    const bool spm = v.model == "llama";
    v.add_bos = spm || v.model == "bert";
    v.add_eos = v.model == "t5";
    v.add_space_prefix = spm;
    if (spm) {
        v.unk_id = 0;
        v.bos_id = 1;
        v.eos_id = 2;
    } else if (v.model == "bert") {
        v.unk_id = 100;
        v.bos_id = 101;
        v.pad_id = 0;
    } else if (v.model == "t5") {
        v.pad_id = 0;
        v.eos_id = 1;
        v.unk_id = 2;
    }
}

namespace detail {

// "<0xXX>": the text of SentencePiece's byte-fallback token for byte b.
inline std::string byte_token_text(int b) {
    static constexpr char hex[] = "0123456789ABCDEF";
    return std::string("<0x") + hex[(b >> 4) & 15] + hex[b & 15] + ">";
}

inline bool is_byte_token_text(const std::string& t) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
    return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

}  // namespace detail

// Reads llama2.c's tokenizer.bin: int32 max_token_length, then for each token float32 score,
// int32 byte length and the bytes, up to the end of the file (the count is the model's vocab
// size, which the file does not store). llama2.c's exporter writes SentencePiece's U+2581 as a
// plain space and BOS/EOS as "\n<s>\n" / "\n</s>\n"; both are undone here so the result equals
// what llama.cpp's converter writes to GGUF. Ids 0, 1, 2 are <unk>, <s>, </s>; "<0xXX>" are
// byte-fallback tokens.
inline vocab_data vocab_from_llama2c(const std::string& tokenizer_bin_path) {
    std::ifstream in(tokenizer_bin_path, std::ios::binary);
    if (!in) throw io_error("cannot open llama2.c tokenizer '" + tokenizer_bin_path + "'");
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw io_error("error reading llama2.c tokenizer '" + tokenizer_bin_path + "'");

    std::size_t pos = 0;
    auto read_i32 = [&](const char* what) {
        if (bytes.size() - pos < 4)
            throw format_error(tokenizer_bin_path, pos, std::string("file ends inside ") + what);
        std::int32_t v;
        std::memcpy(&v, bytes.data() + pos, 4);
        pos += 4;
        return v;
    };
    const std::int32_t max_token_length = read_i32("the max_token_length header");
    if (max_token_length <= 0)
        throw format_error(tokenizer_bin_path, 0, "max_token_length " + std::to_string(max_token_length) + " is not positive");

    vocab_data v;
    v.model = "llama";
    while (pos < bytes.size()) {
        const std::size_t at = pos;
        const std::string id = std::to_string(v.tokens.size());
        const std::int32_t score_bits = read_i32(("the score of token " + id).c_str());
        const std::int32_t length = read_i32(("the length of token " + id).c_str());
        if (length < 0 || length > max_token_length)
            throw format_error(tokenizer_bin_path, at + 4, "token " + id + " has length " + std::to_string(length) +
                                                               " (max_token_length is " + std::to_string(max_token_length) + ")");
        if (bytes.size() - pos < static_cast<std::size_t>(length))
            throw format_error(tokenizer_bin_path, pos, "file ends inside the text of token " + id);
        float score;
        std::memcpy(&score, &score_bits, 4);
        std::string text = bytes.substr(pos, static_cast<std::size_t>(length));
        pos += static_cast<std::size_t>(length);
        std::string unescaped;
        for (char c : text) {
            if (c == ' ') unescaped += "\xE2\x96\x81";
            else unescaped += c;
        }
        v.tokens.push_back(std::move(unescaped));
        v.scores.push_back(score);
    }
    if (v.tokens.size() < 3)
        throw format_error(tokenizer_bin_path, pos, "only " + std::to_string(v.tokens.size()) + " tokens (need at least <unk>, <s>, </s>)");
    v.tokens[0] = "<unk>";
    v.tokens[1] = "<s>";
    v.tokens[2] = "</s>";
    v.types.assign(v.tokens.size(), token_type::normal);
    v.types[0] = token_type::unknown;
    v.types[1] = token_type::control;
    v.types[2] = token_type::control;
    for (std::size_t i = 3; i < v.tokens.size(); ++i)
        if (detail::is_byte_token_text(v.tokens[i])) v.types[i] = token_type::byte;
    apply_model_defaults(v);
    return v;
}

// The vocabulary llama.cpp's convert-llama2c-to-ggml gives a checkpoint without a tokenizer:
// <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then "▁tok0", "▁tok1", ...; token i has
// score -i. Text encodes to byte tokens only (no "▁tokN" is reachable by merging), so it is
// enough to run a model and print what it generates, not to read text.
inline vocab_data synthetic_vocab(std::int32_t n_vocab) {
    if (n_vocab < 259)
        throw error("synthetic_vocab: n_vocab " + std::to_string(n_vocab) + " is below 259 (3 special + 256 byte tokens)");
    vocab_data v;
    v.model = "llama";
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.tokens.reserve(static_cast<std::size_t>(n_vocab));
    for (int b = 0; b < 256; ++b) v.tokens.push_back(detail::byte_token_text(b));
    for (std::int32_t i = 259; i < n_vocab; ++i) v.tokens.push_back("\xE2\x96\x81tok" + std::to_string(i - 259));
    v.scores.resize(static_cast<std::size_t>(n_vocab));
    for (std::int32_t i = 0; i < n_vocab; ++i) v.scores[static_cast<std::size_t>(i)] = -static_cast<float>(i);
    v.types.assign(static_cast<std::size_t>(n_vocab), token_type::normal);
    v.types[0] = token_type::unknown;
    v.types[1] = v.types[2] = token_type::control;
    for (std::size_t i = 3; i < 259; ++i) v.types[i] = token_type::byte;
    apply_model_defaults(v);
    return v;
}

}  // namespace minigpt

// Finding the tokenizer for a model file.
//
// A GGUF file (model or vocab-only) carries its vocabulary. A llama2.c checkpoint does
// not, so, as llama2.c itself does, the tokenizer comes from an explicit file, else from
// tokenizer.bin beside the checkpoint, else it is the synthetic byte-level vocabulary
// llama.cpp's converter gives such a model (a note goes to `notice`). An explicit file may
// be a llama2.c tokenizer.bin or a GGUF, and overrides a GGUF model's own vocabulary.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "minigpt/core/error.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/text/tokenizer.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_gguf.hpp"

namespace minigpt {

inline bool is_gguf_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error("cannot open '" + path + "'");
    char magic[4] = {};
    in.read(magic, 4);
    return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

// The vocabulary size in a llama2.c checkpoint's 7-int32 header (dim, hidden_dim, n_layers,
// n_heads, n_kv_heads, vocab_size, seq_len; negative vocab_size = unshared classifier).
inline std::int32_t llama2c_vocab_size(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error("cannot open '" + path + "'");
    std::int32_t header[7] = {};
    in.read(reinterpret_cast<char*>(header), sizeof header);
    if (in.gcount() != sizeof header)
        throw format_error(path, static_cast<std::uint64_t>(in.gcount()), "file ends inside the 28-byte llama2.c header");
    const std::int64_t n = header[5] < 0 ? -static_cast<std::int64_t>(header[5]) : header[5];
    if (n < 1 || n > (1 << 24)) throw format_error(path, 20, "vocab_size " + std::to_string(header[5]) + " is not plausible");
    return static_cast<std::int32_t>(n);
}

// A llama2.c tokenizer.bin or the vocabulary of a GGUF file.
inline vocab_data load_vocab_file(const std::string& path) {
    if (is_gguf_file(path)) return vocab_from_gguf(io::gguf_file::open(path));
    return vocab_from_llama2c(path);
}

using notice_fn = std::function<void(const std::string&)>;

inline void print_notice(const std::string& s) { std::fprintf(stderr, "minigpt: %s\n", s.c_str()); }

// The tokenizer for `model_path` (see the header comment); `tokenizer_path` may be empty.
inline tokenizer load_tokenizer(const std::string& model_path, const std::string& tokenizer_path = {},
                                const notice_fn& notice = print_notice) {
    if (is_gguf_file(model_path))
        return tokenizer(tokenizer_path.empty() ? vocab_from_gguf(io::gguf_file::open(model_path)) : load_vocab_file(tokenizer_path));
    const std::int32_t n_vocab = llama2c_vocab_size(model_path);
    std::string path = tokenizer_path;
    if (path.empty()) {
        const auto beside = std::filesystem::path(model_path).parent_path() / "tokenizer.bin";
        if (std::filesystem::exists(beside)) path = beside.string();
    }
    if (path.empty()) {
        if (notice)
            notice(model_path + " has no vocabulary and no tokenizer.bin is beside it; using the synthetic " +
                   std::to_string(n_vocab) + "-token byte-level vocabulary (give a tokenizer file for the real one)");
        return tokenizer(synthetic_vocab(n_vocab));
    }
    vocab_data v = load_vocab_file(path);
    if (v.n_vocab() != n_vocab)
        throw error(path + " has " + std::to_string(v.n_vocab()) + " tokens but " + model_path + " has a vocabulary of " +
                    std::to_string(n_vocab));
    return tokenizer(std::move(v));
}

}  // namespace minigpt

// `minigpt tokenize` and `minigpt detokenize`: text <-> token ids with a model's vocabulary.
//
// MODEL is any GGUF file (a model or a vocab-only file) or a llama2.c checkpoint (.bin). A llama2.c
// checkpoint carries no vocabulary, so, as llama2.c itself does, the tokenizer comes from
// --tokenizer FILE, else from tokenizer.bin next to the checkpoint, else it is the synthetic
// byte-level vocabulary llama.cpp's converter would give the model (said on stderr). --tokenizer may
// also name a GGUF file, and overrides a GGUF model's own vocabulary.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "command.hpp"
#include "minigpt/text.hpp"

namespace {

using namespace minigpt;
using minigpt::tool::usage_error;

bool is_gguf(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error("cannot open '" + path + "'");
    char magic[4] = {};
    in.read(magic, 4);
    return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

// llama2.c's checkpoint header is 7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; a negative vocab_size means the classifier is not shared with the embedding.
std::int32_t llama2c_vocab_size(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error("cannot open '" + path + "'");
    std::int32_t header[7] = {};
    in.read(reinterpret_cast<char*>(header), sizeof header);
    if (in.gcount() != sizeof header) throw format_error(path, static_cast<std::uint64_t>(in.gcount()), "file ends inside the 28-byte llama2.c header");
    const std::int64_t n = header[5] < 0 ? -static_cast<std::int64_t>(header[5]) : header[5];
    if (n < 1 || n > (1 << 24)) throw format_error(path, 20, "vocab_size " + std::to_string(header[5]) + " is not plausible");
    return static_cast<std::int32_t>(n);
}

vocab_data load_vocab_file(const std::string& path) {
    if (is_gguf(path)) return vocab_from_gguf(io::gguf_file::open(path));
    return vocab_from_llama2c(path);
}

tokenizer load_tokenizer(const std::string& model, const std::string& tokenizer_path) {
    if (is_gguf(model)) return tokenizer(tokenizer_path.empty() ? vocab_from_gguf(io::gguf_file::open(model)) : load_vocab_file(tokenizer_path));
    const std::int32_t n_vocab = llama2c_vocab_size(model);
    std::string path = tokenizer_path;
    if (path.empty()) {
        const auto beside = std::filesystem::path(model).parent_path() / "tokenizer.bin";
        if (std::filesystem::exists(beside)) path = beside.string();
    }
    if (path.empty()) {
        std::fprintf(stderr, "minigpt: %s has no vocabulary and no tokenizer.bin is beside it; using the synthetic "
                             "%d-token byte-level vocabulary (give --tokenizer FILE for the real one)\n",
                     model.c_str(), n_vocab);
        return tokenizer(synthetic_vocab(n_vocab));
    }
    vocab_data v = load_vocab_file(path);
    if (v.n_vocab() != n_vocab)
        throw error(path + " has " + std::to_string(v.n_vocab()) + " tokens but " + model + " has a vocabulary of " +
                    std::to_string(n_vocab));
    return tokenizer(std::move(v));
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error("cannot open '" + path + "'");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::int32_t> parse_ids(const std::string& text, const std::string& origin) {
    std::vector<std::int32_t> ids;
    std::size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']') {
            ++i;
            continue;
        }
        std::size_t end = i;
        if (text[end] == '-') ++end;
        while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
        const std::string number = text.substr(i, end - i);
        if (number.empty() || number == "-")
            throw error(origin + ": expected a token id at byte " + std::to_string(i) + ", found '" + text.substr(i, 1) + "'");
        const long long v = std::stoll(number);
        if (v < INT32_MIN || v > INT32_MAX) throw error(origin + ": token id " + number + " is out of range");
        ids.push_back(static_cast<std::int32_t>(v));
        i = end;
    }
    return ids;
}

int run_tokenize(const std::vector<std::string>& args) {
    tool::flags f("usage: minigpt tokenize -m MODEL (-f TEXTFILE | -p TEXT) [--no-bos] [--tokenizer FILE]\n"
                  "Prints the token ids of the text on one line, separated by spaces.");
    f.value({"-m", "--model"}, "GGUF file (model or vocab-only) or llama2.c checkpoint")
        .value({"-f", "--file"}, "text file to tokenize (bytes as they are)")
        .value({"-p", "--prompt"}, "text to tokenize")
        .value({"--tokenizer"}, "vocabulary: llama2.c tokenizer.bin or a GGUF file")
        .boolean({"--no-bos"}, "do not prepend BOS (by default added when the vocabulary asks for it)")
        .boolean({"--parse-special"}, "turn special-token text such as <s> into the special tokens");
    f.parse(args);
    if (f.help()) {
        std::printf("%s", f.usage().c_str());
        return 0;
    }
    if (!f.positional().empty()) throw usage_error("unexpected argument '" + f.positional().front() + "'");
    if (f.has("-f") == f.has("-p")) throw usage_error("give exactly one of -f TEXTFILE and -p TEXT");
    const tokenizer tok = load_tokenizer(f.require("-m"), f.str("--tokenizer"));
    const std::string text = f.has("-f") ? read_file(f.str("-f")) : f.str("-p");
    const auto ids = tok.encode(text, tok.add_bos_default() && !f.on("--no-bos"), f.on("--parse-special"));
    std::string line;
    for (std::size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
    return 0;
}

int run_detokenize(const std::vector<std::string>& args) {
    tool::flags f("usage: minigpt detokenize -m MODEL (--ids FILE | -p \"1 2 3\") [--tokenizer FILE]\n"
                  "Prints the text of the ids exactly (no newline added); special tokens are left out.");
    f.value({"-m", "--model"}, "GGUF file (model or vocab-only) or llama2.c checkpoint")
        .value({"--ids"}, "file of token ids separated by spaces, commas or newlines")
        .value({"-p", "--prompt"}, "token ids, e.g. \"1 15043 3186\"")
        .value({"--tokenizer"}, "vocabulary: llama2.c tokenizer.bin or a GGUF file");
    f.parse(args);
    if (f.help()) {
        std::printf("%s", f.usage().c_str());
        return 0;
    }
    if (!f.positional().empty()) throw usage_error("unexpected argument '" + f.positional().front() + "'");
    if (f.has("--ids") == f.has("-p")) throw usage_error("give exactly one of --ids FILE and -p \"IDS\"");
    const tokenizer tok = load_tokenizer(f.require("-m"), f.str("--tokenizer"));
    const auto ids = f.has("--ids") ? parse_ids(read_file(f.str("--ids")), f.str("--ids")) : parse_ids(f.str("-p"), "-p");
    const std::string text = tok.decode(ids);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

const tool::register_command k_tokenize("tokenize", "print the token ids of a text", run_tokenize);
const tool::register_command k_detokenize("detokenize", "print the text of token ids", run_detokenize);

}  // namespace

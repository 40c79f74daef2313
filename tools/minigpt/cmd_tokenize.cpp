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
#include "tool_io.hpp"
#include "minigpt/text.hpp"
#include "minigpt/text/tokenizer_loader.hpp"

namespace {

using namespace minigpt;
using minigpt::tool::usage_error;
using minigpt::tool::read_file;
using minigpt::tool::parse_ids;


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

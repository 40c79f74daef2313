// `minigpt embed`: pooled hidden-state embeddings of texts, printed as JSON (the shape of an
// OpenAI /v1/embeddings response: {"object":"list","data":[{"index":i,"embedding":[...]}],...}).
#include <cstdio>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "minigpt/generate/embedding.hpp"
#include "tool_io.hpp"

namespace minigpt::tool {
namespace {

int run_embed(const std::vector<std::string>& args) {
    flags f("usage: minigpt embed -m MODEL (-p TEXT | -f FILE) [--pooling none|mean|last|cls] [--normalize] [-t THREADS]\n"
            "  -f FILE embeds each non-empty line as one text");
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"-p", "--prompt"}, "text to embed")
        .value({"-f", "--file"}, "embed each non-empty line of this file")
        .value({"--pooling"}, "none, mean, last or cls", "mean")
        .value({"-c", "--ctx-size"}, "longest text in tokens (0: the model's context)", "0")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .value({"--tokenizer"}, "tokenizer for a llama2.c model")
        .boolean({"--normalize"}, "L2-normalise each embedding")
        .boolean({"--no-bos"}, "do not add BOS");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    std::vector<std::string> texts;
    if (f.has("--file")) {
        std::istringstream in(read_file(f.str("--file")));
        for (std::string line; std::getline(in, line);)
            if (!line.empty()) texts.push_back(line);
    } else if (f.has("--prompt")) {
        texts.push_back(f.str("--prompt"));
    }
    if (texts.empty()) throw usage_error("nothing to embed: give -p TEXT or -f FILE with at least one non-empty line");
    embedding_params p;
    p.pool = parse_pooling(f.str("--pooling"));
    p.normalize = f.on("--normalize");
    p.add_bos = !f.on("--no-bos");
    p.n_ctx = f.integer("--ctx-size");
    p.n_threads = static_cast<int>(f.integer("--threads"));
    embedder e(llm::load(f.require("--model"), f.str("--tokenizer")), p);
    nlohmann::json out;
    out["object"] = "list";
    out["model"] = f.str("--model");
    out["pooling"] = std::string(pooling_name(p.pool));
    out["normalized"] = p.normalize;
    out["n_embd"] = e.n_embd();
    out["data"] = nlohmann::json::array();
    std::int64_t total = 0;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        const auto v = e.embed(texts[i]);
        nlohmann::json item{{"object", "embedding"}, {"index", i}, {"n_tokens", e.last_n_tokens()}};
        if (p.pool == pooling::none) {
            auto rows = nlohmann::json::array();
            for (std::int64_t t = 0; t < e.last_n_tokens(); ++t)
                rows.push_back(std::vector<float>(v.begin() + t * e.n_embd(), v.begin() + (t + 1) * e.n_embd()));
            item["embedding"] = std::move(rows);
        } else {
            item["embedding"] = v;
        }
        total += e.last_n_tokens();
        out["data"].push_back(std::move(item));
    }
    out["usage"] = {{"prompt_tokens", total}, {"total_tokens", total}};
    std::cout << out.dump() << "\n";
    return 0;
}

const register_command reg_embed("embed", "pooled hidden-state embeddings of texts, as JSON", run_embed);

}  // namespace
}  // namespace minigpt::tool

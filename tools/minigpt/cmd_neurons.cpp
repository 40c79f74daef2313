// `minigpt neurons`: records one layer's feed-forward activations (generate/neurons.hpp) while the
// model reads a text and prints, as JSON, the top-activating tokens of every neuron with the text
// around them, or (--neuron N) every activation of one neuron.
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "minigpt/generate/neurons.hpp"
#include "tool_io.hpp"

namespace minigpt::tool {
namespace {

int run_neurons(const std::vector<std::string>& args) {
    flags f("usage: minigpt neurons -m MODEL (-f TEXT | -p TEXT) --layer L [--neuron N] [--top 20] [-o acts.json]\n"
            "  without --neuron: the --top highest activations of every neuron of layer L, each with the text before it;\n"
            "  with --neuron N: that neuron's top activations and its activation at every token");
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"-f", "--file"}, "text file to read")
        .value({"-p", "--prompt"}, "text to read")
        .value({"--layer"}, "layer whose feed-forward activations are recorded")
        .value({"--neuron"}, "one neuron: all its activations")
        .value({"--top"}, "top activations listed per neuron", "20")
        .value({"--context"}, "tokens of text shown before each top token", "8")
        .value({"-o", "--output"}, "write the JSON here instead of standard output")
        .value({"-c", "--ctx-size"}, "window length in tokens (0: the model's context)", "0")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0")
        .value({"--tokenizer"}, "tokenizer for a llama2.c model")
        .boolean({"--no-bos"}, "do not add BOS");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    std::string text;
    if (f.has("--file")) text = read_file(f.str("--file"));
    else if (f.has("--prompt")) text = f.str("--prompt");
    else throw usage_error("nothing to read: give -f TEXT or -p TEXT");
    const llm lm = llm::load(f.require("--model"), f.str("--tokenizer"));
    const auto& c = lm.weights->config();
    f.require("--layer");
    const std::int64_t layer = f.integer_in("--layer", 0, c.n_layer - 1, "0.." + std::to_string(c.n_layer - 1) + " for this model");
    const std::int64_t top_k = f.integer_in("--top", 0, 1 << 20, ">= 0");
    const std::int64_t context_tokens = f.integer_in("--context", 0, 1 << 20, ">= 0");
    std::int64_t only = -1;
    if (f.has("--neuron")) only = f.integer_in("--neuron", 0, c.n_ff - 1, "0.." + std::to_string(c.n_ff - 1) + " for this model");
    record_params p;
    p.n_ctx = f.integer_in("--ctx-size", 0, 1 << 24, ">= 0");
    p.n_threads = static_cast<int>(f.integer("--threads"));
    p.add_bos = !f.on("--no-bos");
    const neuron_record r = record_neurons(lm, text, layer, p);

    const tokenizer& tok = *lm.vocab;
    auto piece = [&](std::int64_t t) { return tok.token_to_piece(r.ids[static_cast<std::size_t>(t)]); };
    auto describe = [&](std::int64_t j) {
        nlohmann::json top = nlohmann::json::array();
        for (const auto& a : top_activations(r, j, top_k)) {
            const auto from = static_cast<std::size_t>(std::max<std::int64_t>(0, a.index - context_tokens));
            const std::span<const std::int32_t> before(r.ids.data() + from, static_cast<std::size_t>(a.index) - from);
            top.push_back({{"index", a.index}, {"token", piece(a.index)}, {"id", r.ids[static_cast<std::size_t>(a.index)]},
                           {"activation", a.activation}, {"context", tok.decode(before)}});
        }
        const auto acts = r.neuron(j);
        double mean = 0;
        for (float x : acts) mean += x / static_cast<double>(acts.size());
        return nlohmann::json{{"neuron", j}, {"max", *std::max_element(acts.begin(), acts.end())}, {"mean", mean}, {"top", std::move(top)}};
    };
    nlohmann::json out{{"model", lm.weights->path()}, {"layer", layer}, {"n_ff", r.n_ff}, {"n_tokens", r.n_tokens()}};
    out["neurons"] = nlohmann::json::array();
    if (only >= 0) {
        out["neurons"].push_back(describe(only));
        nlohmann::json tokens = nlohmann::json::array();
        for (std::int64_t t = 0; t < r.n_tokens(); ++t) tokens.push_back(piece(t));
        out["tokens"] = std::move(tokens);
        out["ids"] = r.ids;
        out["activations"] = r.neuron(only);
    } else {
        for (std::int64_t j = 0; j < r.n_ff; ++j) out["neurons"].push_back(describe(j));
    }
    // Token pieces may be parts of a UTF-8 character: such bytes become U+FFFD in the JSON.
    const std::string json = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (f.has("--output")) {
        std::ofstream o(f.str("--output"), std::ios::binary);
        if (!o) throw io_error("cannot write '" + f.str("--output") + "'");
        o << json << "\n";
        if (!o) throw io_error("error writing '" + f.str("--output") + "'");
        std::fprintf(stderr, "neurons: layer %lld, %lld neurons, %lld tokens -> %s\n", static_cast<long long>(layer),
                     static_cast<long long>(r.n_ff), static_cast<long long>(r.n_tokens()), f.str("--output").c_str());
    } else {
        std::cout << json << "\n";
    }
    return 0;
}

const register_command reg("neurons", "record a layer's feed-forward neurons over a text: top activations as JSON", run_neurons);

}  // namespace
}  // namespace minigpt::tool

// Explain a neuron (Bills et al. 2023): record a feed-forward neuron of a subject model while it
// reads a text, show its top-activating tokens to an explainer model, let the explainer complete
// "the main thing this neuron does is find ...", let a simulator model predict the neuron's
// activations on held-out text from that explanation alone, and score the explanation by the
// correlation of predicted and true activations. A baseline scores an empty explanation.
//
// usage: example_explain_neuron [SUBJECT.gguf [EXPLAINER.gguf [SIMULATOR.gguf]]] [--layer L]
//                               [--neuron N | --neurons K] [-f TEXT] [-t THREADS]
// Every model defaults to ../shared/models/stories260K.gguf (run from the repository root); with
// such tiny models the explanations are noise and the scores near 0 — the loop, not the quality,
// is what runs here. -f TEXT: its first 2/3 is recorded for the explanation, the rest simulated.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "minigpt/generate/generation.hpp"
#include "minigpt/generate/neurons.hpp"

namespace {

const char* k_default_text =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big red ball under a tree. She ran to the ball and kicked it high into the sky. The ball came down and hit a bird. "
    "The bird was sad, so Lily said sorry and gave it some bread. They became good friends and played together every day. "
    "Tom had a small dog called Max. Max liked to run and jump in the garden. One morning Max found a shiny stone and "
    "brought it to Tom. Tom was happy and put the stone in a box. Then they went to the lake to see the ducks swim.";

}  // namespace

int main(int argc, char** argv) {
    using namespace minigpt;
    std::vector<std::string> paths;
    std::int64_t layer = -1, neuron = -1, n_neurons = 3;
    int n_threads = 0;
    std::string text = k_default_text;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc) throw error(a + " needs a value");
                return argv[++i];
            };
            if (a == "--layer") layer = std::stoll(next());
            else if (a == "--neuron") neuron = std::stoll(next());
            else if (a == "--neurons") n_neurons = std::stoll(next());
            else if (a == "-t") n_threads = std::stoi(next());
            else if (a == "-f") {
                std::ifstream in(next(), std::ios::binary);
                if (!in) throw error("cannot open " + std::string(argv[i]));
                text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            } else if (!a.empty() && a[0] == '-') throw error("unknown flag " + a);
            else paths.push_back(a);
        }
        const std::string fallback = "../shared/models/stories260K.gguf";
        const llm subject = llm::load(paths.size() > 0 ? paths[0] : fallback);
        const llm explainer = paths.size() > 1 ? llm::load(paths[1]) : subject;
        const llm simulator = paths.size() > 2 ? llm::load(paths[2]) : explainer;
        const auto& c = subject.weights->config();
        if (layer < 0) layer = c.n_layer / 2;

        // Record on the first two thirds of the text (cut at a space), simulate on the rest.
        std::size_t cut = text.rfind(' ', text.size() * 2 / 3);
        if (cut == std::string::npos || cut == 0) cut = text.size() * 2 / 3;
        const auto t0 = std::chrono::steady_clock::now();
        const record_params rp{.n_threads = n_threads};
        const neuron_record train = record_neurons(subject, std::string_view(text).substr(0, cut), layer, rp);
        const neuron_record held = record_neurons(subject, std::string_view(text).substr(cut), layer, {.n_threads = n_threads, .add_bos = false});
        std::printf("subject %s: layer %lld, %lld neurons; %lld tokens recorded, %lld held out\n", subject.weights->path().c_str(),
                    static_cast<long long>(layer), static_cast<long long>(c.n_ff), static_cast<long long>(train.n_tokens()),
                    static_cast<long long>(held.n_tokens()));

        // The neurons to explain: the one asked for, or the K with the largest variance on the record.
        std::vector<std::int64_t> neurons;
        if (neuron >= 0) {
            train.check_neuron(neuron);
            neurons.push_back(neuron);
        } else {
            std::vector<std::pair<double, std::int64_t>> by_var;
            for (std::int64_t j = 0; j < c.n_ff; ++j) {
                const auto a = train.neuron(j);
                double m = 0, v = 0;
                for (float x : a) m += x / static_cast<double>(a.size());
                for (float x : a) v += (x - m) * (x - m);
                by_var.push_back({v, j});
            }
            std::sort(by_var.rbegin(), by_var.rend());
            for (std::int64_t k = 0; k < std::min<std::int64_t>(n_neurons, c.n_ff); ++k) neurons.push_back(by_var[static_cast<std::size_t>(k)].second);
        }

        context explainer_ctx(explainer.weights, {.n_threads = n_threads});
        const std::int64_t n_new = 24;
        generation_params gp;
        gp.max_tokens = static_cast<std::int32_t>(n_new);
        gp.sampling.temperature = 0.0f;  // greedy: the explanation is reproducible
        gp.stop = {"\n"};
        double sum_score = 0, sum_base = 0;
        for (const std::int64_t j : neurons) {
            const std::string prompt = explainer_prompt(train, *subject.vocab, j, 10, 8, *explainer.vocab, explainer_ctx.n_ctx() - n_new);
            explainer_ctx.truncate(0);
            std::string explanation = generate(explainer, explainer_ctx, prompt, gp).text;
            std::replace(explanation.begin(), explanation.end(), '\n', ' ');
            const auto truth = held.neuron(j);
            const auto predicted = simulate_activations(simulator, explanation, *subject.vocab, held.ids, n_threads);
            const auto baseline = simulate_activations(simulator, "", *subject.vocab, held.ids, n_threads);
            const double score = correlation(truth, predicted), base = correlation(truth, baseline);
            sum_score += score, sum_base += base;
            const auto top = top_activations(train, j, 3);
            std::printf("\nneuron %lld (max activation %.3f at '%s'):\n  explanation: ...find%s\n  score (correlation on held-out "
                        "text): %.3f   baseline (empty explanation): %.3f\n",
                        static_cast<long long>(j), top.front().activation,
                        token_label(*subject.vocab, train.ids[static_cast<std::size_t>(top.front().index)]).c_str(), explanation.c_str(), score, base);
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("\nmean score %.3f (baseline %.3f) over %zu neurons, %.2f s\n", sum_score / static_cast<double>(neurons.size()),
                    sum_base / static_cast<double>(neurons.size()), neurons.size(), seconds);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

// Sampling from a hand-made next-token distribution with several sampler settings.
//
// Ten "tokens" with fixed logits stand in for a model's output. For each setting the program
// draws 100000 tokens and prints how often each one came up next to the probability the chain
// assigns it, so the effect of temperature, top-k, top-p, min-p, typical-p and the penalties can
// be seen side by side. Then a stop_matcher cuts a streamed text at a stop string.
//
//   example_sampling
#include <cstdio>
#include <string>
#include <vector>

#include "minigpt/generate/sampler.hpp"
#include "minigpt/generate/stop_matcher.hpp"

namespace {

const std::vector<std::string> k_words = {"the", "a", "cat", "dog", "sat", "ran", "on", "mat", "quickly", "zebra"};
const std::vector<float> k_logits = {3.0f, 2.6f, 2.2f, 2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};

void show(const char* title, minigpt::sampling_params p, const std::vector<std::int32_t>& history = {}) {
    p.seed = 1234;
    const auto n_vocab = static_cast<std::int32_t>(k_logits.size());
    minigpt::sampler s(p, n_vocab);
    const int n_draws = 100000;
    std::vector<int> counts(k_logits.size(), 0);
    std::vector<double> target(k_logits.size(), 0.0);
    for (auto t : history) s.accept(t);
    for (int i = 0; i < n_draws; ++i) {
        // choose() leaves the history alone, so the penalties see the same context for every draw.
        ++counts[static_cast<std::size_t>(s.choose(k_logits))];
        if (i == 0 && !s.greedy())
            for (const auto& c : s.last_candidates()) target[static_cast<std::size_t>(c.id)] = c.p;
        if (s.greedy()) break;
    }
    std::printf("%s\n", title);
    for (std::size_t t = 0; t < k_words.size(); ++t) {
        if (s.greedy()) {
            if (counts[t]) std::printf("  greedy pick: %s\n", k_words[t].c_str());
            continue;
        }
        if (counts[t] == 0 && target[t] == 0.0) continue;
        std::printf("  %-8s p=%.4f  drawn %.4f\n", k_words[t].c_str(), target[t],
                    static_cast<double>(counts[t]) / n_draws);
    }
}

}  // namespace

int main() {
    try {
        minigpt::sampling_params plain;
        plain.top_k = 0;
        plain.top_p = 1.0f;
        plain.min_p = 0.0f;
        plain.temperature = 1.0f;
        show("softmax of the logits (everything off, T = 1):", plain);

        auto hot = plain;
        hot.temperature = 2.0f;
        show("temperature 2 (flatter):", hot);

        auto top_k = plain;
        top_k.top_k = 3;
        show("top-k 3:", top_k);

        auto top_p = plain;
        top_p.top_p = 0.8f;
        show("top-p 0.8:", top_p);

        auto min_p = plain;
        min_p.min_p = 0.4f;
        show("min-p 0.4 (keep p >= 0.4 * p_max):", min_p);

        auto typical = plain;
        typical.typical_p = 0.3f;
        show("typical-p 0.3 (the most typical tokens, not the most likely):", typical);

        show("llama.cpp defaults (top-k 40, top-p 0.95, min-p 0.05, T 0.8):", minigpt::sampling_params{});

        auto penalized = plain;
        penalized.repeat_penalty = 1.5f;
        penalized.presence_penalty = 0.5f;
        show("repeat penalty 1.5 + presence 0.5, after 'the the cat':", penalized, {0, 0, 2});

        show("greedy:", minigpt::sampling_params::greedy());

        std::printf("\nstop string \"</s>\" over streamed pieces:\n");
        minigpt::stop_matcher stop({"</s>"});
        for (const char* piece : {"Once", " upon", " a time<", "/", "s>", " ignored"}) {
            const auto r = stop.push(piece);
            std::printf("  push \"%s\" -> emit \"%s\"%s\n", piece, r.emit.c_str(), r.stopped ? "  [stopped]" : "");
            if (r.stopped) break;
        }
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

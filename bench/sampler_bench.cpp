// Time per sampled token of minigpt::sampler for GPT-style vocabulary sizes.
//
// Configurations: llama.cpp's default chain (top-k 40, top-p 0.95, min-p 0.05, T 0.8), the same
// with a repetition penalty over 64 tokens, greedy, top-k off (top-p 0.95 alone, which needs the
// softmax of the whole vocabulary), and the default chain forced onto the stage-by-stage path
// (a leading no-op custom stage disables the fused selection) to show what the fused path saves.
// Logits are normal with standard deviation 3, a peaked distribution like a model's. Sixteen
// different vectors rotate: with only a few, the branch predictor learns the selection's
// comparisons and the numbers come out too good (a real model gives new logits every token).
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "minigpt/generate/rng.hpp"
#include "minigpt/generate/sampler.hpp"

namespace mg = minigpt;

namespace {

std::vector<std::vector<float>> make_logits(std::size_t n_vocab) {
    mg::rng r(1234);
    std::vector<std::vector<float>> sets(16, std::vector<float>(n_vocab));  // (16, n_vocab)
    for (auto& l : sets)
        for (auto& x : l) {
            const double u1 = 1.0 - r.uniform(), u2 = r.uniform();
            x = static_cast<float>(3.0 * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
        }
    return sets;
}

enum class config { default_chain, default_penalties, greedy, top_p_only, default_unfused };

void run(benchmark::State& state, config c) {
    const auto n_vocab = static_cast<std::int32_t>(state.range(0));
    const auto logits = make_logits(static_cast<std::size_t>(n_vocab));
    mg::sampling_params p;
    p.seed = 42;
    if (c == config::default_penalties) {
        p.repeat_penalty = 1.1f;
        p.frequency_penalty = 0.1f;
    }
    if (c == config::greedy) p.temperature = 0.0f;
    if (c == config::top_p_only) {
        p.top_k = 0;
        p.min_p = 0.0f;
    }
    mg::sampler s(p, n_vocab);
    if (c == config::default_unfused) s.chain().insert(s.chain().begin(), mg::custom_stage{"noop", {}});
    for (int i = 0; i < 64; ++i) s.accept(i * 37 % n_vocab);  // a full penalty window
    std::size_t step = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(s.sample(logits[step++ & 15]));
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.counters["n_vocab"] = static_cast<double>(n_vocab);
}

void vocab_sizes(benchmark::internal::Benchmark* b) {
    for (int n : {32000, 50257, 151936}) b->Arg(n);
    b->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_CAPTURE(run, default_chain, config::default_chain)->Apply(vocab_sizes);
BENCHMARK_CAPTURE(run, default_with_penalties, config::default_penalties)->Apply(vocab_sizes);
BENCHMARK_CAPTURE(run, greedy, config::greedy)->Apply(vocab_sizes);
BENCHMARK_CAPTURE(run, top_p_only, config::top_p_only)->Apply(vocab_sizes);
BENCHMARK_CAPTURE(run, default_unfused, config::default_unfused)->Apply(vocab_sizes);

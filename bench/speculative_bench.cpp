// Speculative decoding against plain decoding, in alternation in one process (temperature 0,
// 256 tokens, 2 threads by default): each iteration generates the same 256 tokens plainly and
// speculatively, so both see the same machine state; the counters are medians over
// iterations. Pairs (the issue's): GPT-2 124M F32 with its Q4_0 and Q8_0 copies as drafts,
// Llama 360M Q8_0 with its Q4_0 copy, and prompt lookup on a repetitive prompt. Models are
// synthesised in memory with `minigpt synth`'s code and seed (same random values in every copy,
// quantised differently), or read from MINIGPT_SPEC_DIR/{gpt2-124m-f32,...}.gguf when present.
//
//   bench_speculative_bench --benchmark_filter=gpt2_f32_q4_0
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/generate/speculative.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/vocab.hpp"

namespace {

using namespace minigpt;

std::shared_ptr<const model> get_model(architecture arch, const std::string& preset, dtype type) {
    static std::map<std::string, std::shared_ptr<const model>> cache;
    const std::string name = preset + "-" + std::string(dtype_name(type));
    if (auto it = cache.find(name); it != cache.end()) return it->second;
    std::shared_ptr<const model> m;
    if (const char* dir = std::getenv("MINIGPT_SPEC_DIR"); dir && std::filesystem::exists(std::string(dir) + "/" + name + ".gguf")) {
        m = model::load(std::string(dir) + "/" + name + ".gguf");
    } else {
        m = synthesize_model(find_synth_preset(arch, preset), type, 1, name);
    }
    cache[name] = m;
    return m;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

// Generates n tokens greedily after `prompt`; returns tokens/s over the generated tokens
// (prompt excluded), like llama.cpp's eval timings.
template <class Run>
double timed(Run&& run) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t n = run();
    return static_cast<double>(n) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void compare(benchmark::State& state, architecture arch, const std::string& preset, dtype target_type, dtype draft_type,
             bool lookup) {
    const int n_threads = static_cast<int>(state.range(0));
    const int n_gen = 256;
    auto target = get_model(arch, preset, target_type);
    auto draft = lookup ? nullptr : get_model(arch, preset, draft_type);
    const auto n_vocab = target->config().n_vocab;
    const tokenizer tok(synthetic_vocab(static_cast<std::int32_t>(n_vocab)));
    std::vector<std::int32_t> prompt{1};
    if (lookup) {
        // A repetitive prompt: a 12-token phrase four times.
        for (int r = 0; r < 4; ++r)
            for (int i = 0; i < 12; ++i) prompt.push_back(100 + 37 * i);
    } else {
        for (int i = 0; i < 31; ++i) prompt.push_back(static_cast<std::int32_t>((1000 + 7919 * i) % n_vocab));
    }
    const context_params cp{.n_ctx = 512, .n_threads = n_threads};
    generation_params gp;
    gp.max_tokens = n_gen;
    gp.ignore_eos = true;
    gp.sampling = sampling_params::greedy();
    std::vector<double> plain_tps, spec_tps, ratio, acc;
    std::vector<std::int32_t> plain_ids, spec_ids;
    for (auto _ : state) {
        // Both runs prefill all but the last prompt token in one batch (the draft model too) outside
        // the timed part, then feed that token alone and generate: the time is generation only, as in
        // llama.cpp's eval timings (context set-up, weight repacking and prompt excluded).
        double p = 0.0;
        {
            context ctx(target, cp);
            sampler smp(gp.sampling, static_cast<std::int32_t>(n_vocab));
            std::vector<std::int32_t> h(prompt.begin(), prompt.end() - 1);
            ctx.decode(h);
            for (auto id : h) smp.accept(id);
            p = timed([&] {
                const auto t = generate_from_tokens(ctx, tok, h, std::span(&prompt.back(), 1), gp, smp);
                plain_ids = t.tokens;
                return static_cast<std::int64_t>(t.tokens.size());
            });
        }
        speculative_stats st;
        double s = 0.0;
        {
            context ctx(target, cp);
            std::unique_ptr<draft_source> d;
            if (lookup) d = std::make_unique<prompt_lookup>(3);
            else d = std::make_unique<draft_model>(draft, gp.sampling, n_vocab, cp);
            sampler smp(gp.sampling, static_cast<std::int32_t>(n_vocab));
            std::vector<std::int32_t> h(prompt.begin(), prompt.end() - 1);
            ctx.decode(h);
            for (auto id : h) smp.accept(id);
            d->prepare(h);
            speculative_params sp;
            sp.draft_max = 8;
            sp.draft_p_min = 0.0f;  // random weights give flat distributions: gate on measured acceptance only
            s = timed([&] {
                const auto r = generate_speculative(ctx, tok, h, std::span(&prompt.back(), 1), gp, smp, *d, sp);
                spec_ids = r.out.tokens;
                st = r.spec;
                return static_cast<std::int64_t>(r.out.tokens.size());
            });
        }
        state.counters["identical"] = spec_ids == plain_ids ? 1.0 : 0.0;
        plain_tps.push_back(p);
        spec_tps.push_back(s);
        ratio.push_back(s / p);
        acc.push_back(st.acceptance_rate());
        state.counters["drafted"] = static_cast<double>(st.n_drafted);
        state.counters["rounds"] = static_cast<double>(st.n_rounds);
    }
    state.counters["plain_tok/s"] = median(plain_tps);
    state.counters["spec_tok/s"] = median(spec_tps);
    state.counters["ratio"] = median(ratio);
    state.counters["acceptance"] = median(acc);
}

void gpt2_f32_q4_0(benchmark::State& s) { compare(s, architecture::gpt2, "gpt2-124m", dtype::f32, dtype::q4_0, false); }
void gpt2_f32_q8_0(benchmark::State& s) { compare(s, architecture::gpt2, "gpt2-124m", dtype::f32, dtype::q8_0, false); }
void llama_q8_0_q4_0(benchmark::State& s) { compare(s, architecture::llama, "llama-360m", dtype::q8_0, dtype::q4_0, false); }
void gpt2_f32_lookup(benchmark::State& s) { compare(s, architecture::gpt2, "gpt2-124m", dtype::f32, dtype::f32, true); }
void llama_q8_0_lookup(benchmark::State& s) { compare(s, architecture::llama, "llama-360m", dtype::q8_0, dtype::q8_0, true); }

}  // namespace

BENCHMARK(gpt2_f32_q4_0)->Arg(2)->Iterations(3)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(gpt2_f32_q8_0)->Arg(2)->Iterations(3)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(llama_q8_0_q4_0)->Arg(2)->Iterations(3)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(gpt2_f32_lookup)->Arg(2)->Iterations(3)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(llama_q8_0_lookup)->Arg(2)->Iterations(3)->Unit(benchmark::kSecond)->UseRealTime();

// The cost of inspection hooks (model/hooks.hpp): a 64-token prefill and single-token decode with
// no hooks, with every layer's feed-forward activations recorded, with every layer's attention
// weights recorded, and with every hook (FFN input and activations, attention, residual) on.
// Models: ../shared/models/stories260K.gguf (or $MINIGPT_SHARED/models/...; skipped when absent)
// and the synthesised Llama "small" preset (256 wide, 4 layers, n_ff 768). One thread.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/model.hpp"
#include "minigpt/model/synth.hpp"

#include "decode_steps.hpp"

namespace {

using namespace minigpt;

std::shared_ptr<const model> load(std::int64_t which) {
    static std::shared_ptr<const model> models[2];
    if (models[which]) return models[which];
    if (which == 0) {
        const char* env = std::getenv("MINIGPT_SHARED");
        const std::string path = std::string(env ? env : "../shared") + "/models/stories260K.gguf";
        if (!std::filesystem::exists(path)) return nullptr;
        models[0] = model::load(path);
    } else {
        models[1] = synthesize_model(find_synth_preset(architecture::llama, "small"), dtype::f32, 3, "small");
    }
    return models[which];
}

// 0: none, 1: FFN activations, 2: attention weights, 3: everything.
inspection_hooks hooks_of(std::int64_t kind, std::vector<float>& sink) {
    inspection_hooks h;
    auto keep = [&sink](const hook_site&, auto values) { sink.assign(values.begin(), values.end()); };
    if (kind == 1 || kind == 3) h.on_ffn_activation = keep;
    if (kind == 2 || kind == 3) h.on_attention = keep;
    if (kind == 3) h.on_ffn_input = keep, h.on_residual = keep;
    return h;
}

const char* const k_kinds[] = {"no hooks", "ffn activations", "attention weights", "all hooks"};

void prefill(benchmark::State& state) {
    const auto m = load(state.range(0));
    if (!m) { state.SkipWithError("stories260K.gguf not found"); return; }
    std::vector<float> sink;
    context ctx(m, {.n_ctx = 128, .n_threads = 1});
    ctx.set_hooks(hooks_of(state.range(1), sink));
    std::vector<std::int32_t> prompt(64);
    for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<std::int32_t>((i * 37 + 3) % 500);
    for (auto _ : state) {
        ctx.truncate(0);
        ctx.decode(prompt);
        benchmark::DoNotOptimize(ctx.logits().data());
    }
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * 64), benchmark::Counter::kIsRate);
    state.SetLabel(std::string(state.range(0) == 0 ? "stories260K, " : "small, ") + k_kinds[state.range(1)]);
}

void decode(benchmark::State& state) {
    const auto m = load(state.range(0));
    if (!m) { state.SkipWithError("stories260K.gguf not found"); return; }
    std::vector<float> sink;
    context ctx(m, {.n_ctx = 128, .n_threads = 1});
    ctx.set_hooks(hooks_of(state.range(1), sink));
    bench::decode_steps(state, ctx, 120);
    state.SetLabel(std::string(state.range(0) == 0 ? "stories260K, " : "small, ") + k_kinds[state.range(1)]);
}

}  // namespace

BENCHMARK(prefill)->ArgsProduct({{0, 1}, {0, 1, 2, 3}})->Unit(benchmark::kMicrosecond);
BENCHMARK(decode)->ArgsProduct({{0, 1}, {0, 1, 2, 3}})->Unit(benchmark::kMicrosecond);

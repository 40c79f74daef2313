// Many sequences decoded together (model/batch_context.hpp) on the synthesised "small" Llama
// shape: one decode step of N sequences as one batch, aggregate tokens/s for N = 1..16, against
// N = 1 on the one-sequence context; and the attention kernel over a paged cache against the
// contiguous one (same keys, blocks of 16 positions, scrambled block table), and forks of one
// prompt attending over its shared blocks together against each reading its own copy.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "minigpt/kernels/attention_paged.hpp"
#include "minigpt/model.hpp"
#include "minigpt/model/batch_context.hpp"
#include "minigpt/model/synth.hpp"

namespace {

using namespace minigpt;

const std::shared_ptr<const model>& small_q8() {
    static std::shared_ptr<const model> m = synthesize_model(find_synth_preset(architecture::llama, "small"), dtype::q8_0, 3, "small");
    return m;
}

// One decode token for each of N sequences per iteration, after a 64-token prompt each; tokens/s.
void batched_decode(benchmark::State& state) {
    const auto n_seq = static_cast<std::int32_t>(state.range(0));
    batch_context bc(small_q8(), {.n_ctx = 1024 * n_seq, .n_seq_max = n_seq, .n_threads = static_cast<int>(state.range(1))});
    batch b;
    auto prefill = [&] {
        bc.clear();
        b.clear();
        for (std::int32_t s = 0; s < n_seq; ++s)
            for (std::int64_t i = 0; i < 64; ++i) b.add(7, i, s, false);
        bc.decode(b);
    };
    prefill();
    for (auto _ : state) {
        if (bc.n_pos(0) >= 1000) {
            state.PauseTiming();
            prefill();
            state.ResumeTiming();
        }
        b.clear();
        for (std::int32_t s = 0; s < n_seq; ++s) b.add(11, bc.n_pos(s), s, true);
        bc.decode(b);
        benchmark::DoNotOptimize(bc.logits().data());
    }
    state.SetItemsProcessed(state.iterations() * n_seq);
}
BENCHMARK(batched_decode)->ArgsProduct({{1, 2, 4, 8, 16}, {1, 2}})->ArgNames({"seqs", "threads"})->Unit(benchmark::kMillisecond);

// The same single-sequence decode on the one-sequence context, for comparison with seqs=1.
void context_decode(benchmark::State& state) {
    context ctx(small_q8(), {.n_ctx = 1024, .n_threads = static_cast<int>(state.range(0))});
    std::vector<std::int32_t> prompt(64, 7);
    ctx.decode(prompt);
    const std::int32_t token = 11;
    for (auto _ : state) {
        if (ctx.n_past() >= 1000) {
            state.PauseTiming();
            ctx.truncate(64);
            state.ResumeTiming();
        }
        ctx.decode(std::span(&token, 1));
        benchmark::DoNotOptimize(ctx.logits().data());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(context_decode)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond);

// Multi-head attention (as many KV heads as heads, scale 1/8 as for 64-wide heads) on one thread.
kernels::attention_params one_thread_mha(std::int64_t n_heads, std::int64_t head_dim, const std::int64_t* positions) {
    kernels::attention_params p;
    p.n_heads = p.n_kv_heads = n_heads;
    p.head_dim = head_dim;
    p.scale = 0.125f;
    p.positions = positions;
    p.n_threads = 1;
    return p;
}

// 8 decode tokens (one per sequence) over 512 keys each, 8 heads of 64, one thread: paged (arg 1)
// or contiguous (arg 0) keys.
void attention_paged_vs_contiguous(benchmark::State& state) {
    const bool paged = state.range(0) != 0;
    const std::int64_t n_tokens = 8, n_keys = 512, n_heads = 8, head_dim = 64, kv_dim = n_heads * head_dim, bs = 16;
    const std::int64_t n_blocks = n_tokens * n_keys / bs;
    std::mt19937 rng(1);
    std::normal_distribution<float> g;
    std::vector<float> k(static_cast<std::size_t>(n_blocks * bs * kv_dim)), v(k.size()), q(static_cast<std::size_t>(n_tokens * kv_dim)),
        out(q.size());
    for (auto* a : {&k, &v, &q})
        for (auto& x : *a) x = g(rng);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<std::span<const std::int32_t>> tables;
    std::vector<kernels::kv_view> views;
    for (std::int64_t t = 0; t < n_tokens; ++t) {
        tables.emplace_back(ids.data() + t * (n_keys / bs), static_cast<std::size_t>(n_keys / bs));
        views.push_back({k.data() + t * n_keys * kv_dim, v.data() + t * n_keys * kv_dim});
    }
    std::vector<std::int64_t> pos(static_cast<std::size_t>(n_tokens), n_keys - 1);
    kernels::attention_params p = one_thread_mha(n_heads, head_dim, pos.data());
    const kernels::paged_kv pool{k.data(), v.data(), bs, n_blocks, tables.data()};
    if (!paged) p.token_kv = views.data();
    for (auto _ : state) {
        if (paged) kernels::attention_paged(p, pool, q.data(), out.data(), n_tokens);
        else kernels::attention(p, q.data(), out.data(), n_tokens);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * n_tokens);
}
BENCHMARK(attention_paged_vs_contiguous)->Arg(0)->Arg(1)->ArgName("paged");

// 8 decode tokens of 8 forks of one 480-position prompt (30 shared blocks of 16, then 2 blocks of
// each fork's own), 12 heads of 64 as GPT-2, one thread: the forks' tables share the prompt's blocks
// (arg 1: attended together, the prompt's rows read once) or every fork has its own copy of the
// same rows (arg 0: the same arithmetic, each token reading its own 512 rows).
void attention_forks_of_one_prompt(benchmark::State& state) {
    const bool shared = state.range(0) != 0;
    const std::int64_t n_tokens = 8, n_keys = 512, n_prompt_blocks = 30, n_heads = 12, head_dim = 64, kv_dim = n_heads * head_dim, bs = 16;
    const std::int64_t own_blocks = n_keys / bs - n_prompt_blocks;
    const std::int64_t n_blocks = shared ? n_prompt_blocks + n_tokens * own_blocks : n_tokens * n_keys / bs;
    std::mt19937 rng(2);
    std::normal_distribution<float> g;
    std::vector<float> k(static_cast<std::size_t>(n_blocks * bs * kv_dim)), v(k.size()), q(static_cast<std::size_t>(n_tokens * kv_dim)),
        out(q.size());
    for (auto* a : {&k, &v, &q})
        for (auto& x : *a) x = g(rng);
    std::vector<std::vector<std::int32_t>> tables(static_cast<std::size_t>(n_tokens));
    std::int32_t next = shared ? static_cast<std::int32_t>(n_prompt_blocks) : 0;
    for (auto& t : tables) {
        for (std::int64_t b = 0; b < n_prompt_blocks; ++b) t.push_back(shared ? static_cast<std::int32_t>(b) : next++);
        for (std::int64_t b = 0; b < own_blocks; ++b) t.push_back(next++);
    }
    std::vector<std::span<const std::int32_t>> spans(tables.begin(), tables.end());
    std::vector<std::int64_t> pos(static_cast<std::size_t>(n_tokens), n_keys - 1);
    kernels::attention_params p = one_thread_mha(n_heads, head_dim, pos.data());
    const kernels::paged_kv pool{k.data(), v.data(), bs, n_blocks, spans.data()};
    for (auto _ : state) {
        kernels::attention_paged(p, pool, q.data(), out.data(), n_tokens);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * n_tokens);
}
BENCHMARK(attention_forks_of_one_prompt)->Arg(0)->Arg(1)->ArgName("shared");

// n random F16 values (bit patterns of 0.125 .. 1) on huge pages where the system has them, as the
// KV cache's pools are (heap_buffer).
class f16_pool {
public:
    f16_pool(std::size_t n, std::mt19937& rng) : buf_(heap_buffer(n * sizeof(std::uint16_t), fill::none)), n_(n) {
        std::uniform_int_distribution<int> bits(0x3000, 0x3c00);
        for (std::size_t i = 0; i < n; ++i) data()[i] = static_cast<std::uint16_t>(bits(rng));
    }
    std::uint16_t* data() const { return reinterpret_cast<std::uint16_t*>(buf_.get()); }
    std::size_t size() const { return n_; }

private:
    std::shared_ptr<std::byte> buf_;
    std::size_t n_;
};

// GPT-2's decode attention in a batch of 8 sequences: 12 heads of 64, F16 cache (batched-bench's
// default), 192 keys per sequence in blocks of 16 scattered over the pool, one pool per layer for
// 12 layers (~57 MB, more than the caches hold, as in a real step), all threads (arg).
void attention_paged_f16_gpt2_step(benchmark::State& state) {
    const std::int64_t n_layers = 12, n_tokens = 8, n_keys = 192, n_heads = 12, head_dim = 64, kv_dim = n_heads * head_dim, bs = 16;
    const std::int64_t n_blocks = n_tokens * n_keys / bs;
    std::mt19937 rng(3);
    const f16_pool k(static_cast<std::size_t>(n_layers * n_blocks * bs * kv_dim), rng), v(k.size(), rng);
    std::normal_distribution<float> g;
    std::vector<float> q(static_cast<std::size_t>(n_tokens * kv_dim)), out(q.size());
    for (auto& x : q) x = g(rng);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<std::span<const std::int32_t>> tables;
    for (std::int64_t t = 0; t < n_tokens; ++t) tables.emplace_back(ids.data() + t * (n_keys / bs), static_cast<std::size_t>(n_keys / bs));
    std::vector<std::int64_t> pos(static_cast<std::size_t>(n_tokens), n_keys - 1);
    kernels::attention_params p = one_thread_mha(n_heads, head_dim, pos.data());
    p.kv_type = dtype::f16;
    p.n_threads = static_cast<int>(state.range(0));
    const std::size_t layer = static_cast<std::size_t>(n_blocks * bs * kv_dim);
    for (auto _ : state) {
        for (std::int64_t l = 0; l < n_layers; ++l) {
            const kernels::paged_kv pool{k.data() + l * layer, v.data() + l * layer, bs, n_blocks, tables.data()};
            kernels::attention_paged(p, pool, q.data(), out.data(), n_tokens);
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * n_tokens);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(2 * k.size() * sizeof(std::uint16_t)));
}
BENCHMARK(attention_paged_f16_gpt2_step)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();

// One sequence's decode attention at a long context, through the contiguous cache of `context`:
// GPT-2's 12 heads of 64, F16, one token at position 2047 over its 2,048 keys, 12 layers (~151 MB,
// as much as the Q8_0 weights of a step), all threads (arg).
void attention_f16_gpt2_long_decode(benchmark::State& state) {
    const std::int64_t n_layers = 12, n_keys = 2048, n_heads = 12, head_dim = 64, kv_dim = n_heads * head_dim;
    std::mt19937 rng(4);
    const f16_pool k(static_cast<std::size_t>(n_layers * n_keys * kv_dim), rng), v(k.size(), rng);
    std::normal_distribution<float> g;
    std::vector<float> q(static_cast<std::size_t>(kv_dim)), out(q.size());
    for (auto& x : q) x = g(rng);
    kernels::attention_params p = one_thread_mha(n_heads, head_dim, nullptr);
    p.pos0 = n_keys - 1;
    p.kv_type = dtype::f16;
    p.n_threads = static_cast<int>(state.range(0));
    const std::size_t layer = static_cast<std::size_t>(n_keys * kv_dim);
    for (auto _ : state) {
        for (std::int64_t l = 0; l < n_layers; ++l) {
            p.k = k.data() + l * layer;
            p.v = v.data() + l * layer;
            kernels::attention(p, q.data(), out.data(), 1);
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(2 * k.size() * sizeof(std::uint16_t)));
}
BENCHMARK(attention_f16_gpt2_long_decode)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

// kNN-LM search benchmark: exact versus IVF search over a synthetic datastore of
// 1M keys x 768 dimensions (float16 keys: 1.5 GB), single queries and batches, with
// recall@32 of IVF against exact search reported next to each IVF timing.
//
// The keys imitate hidden states: a Gaussian mixture of 2000 components of very uneven
// sizes (weight ~ 1/sqrt(rank), like frequent and rare contexts: 11000 keys down to 250),
// each spread along 16 random directions of its own (low intrinsic dimension) plus
// isotropic noise, with centres close enough that neighbouring components overlap.
// Everything comes from a counter-based generator, so the set is the same on every run
// and machine. The store and its IVF index are cached in $MINIGPT_KNN_BENCH_DIR (default:
// the system temp folder) and rebuilt only when missing or stale; the first run takes a
// few minutes (progress on stderr). $MINIGPT_KNN_BENCH_N overrides the key count.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/knn.hpp"

namespace {

using namespace minigpt;
using namespace minigpt::knn;

constexpr std::int64_t k_dim = 768;
constexpr std::int64_t k_components = 2000;
constexpr std::int64_t k_lists = 2048;  // IVF cells: more than components, or cells end up shared by several
constexpr std::int64_t k_rank = 16;
constexpr std::int64_t k_queries = 256;
constexpr std::int32_t k_k = 32;
constexpr std::uint64_t k_seed = 20200214;

// Approximately standard normal from one 64-bit draw: the sum of four 16-bit uniforms
// (Irwin-Hall), centred and scaled to unit variance. Plenty for synthetic data.
inline float normal(splitmix64& rng) {
    const std::uint64_t r = rng.next();
    const float s = static_cast<float>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48)) / 65536.0f;
    return (s - 2.0f) * 1.7320508f;
}

struct mixture {
    std::vector<float> centres;  // (k_components, k_dim)
    std::vector<float> basis;    // (k_components, k_rank, k_dim)
    std::vector<double> cdf;     // (k_components) cumulative component weights

    mixture() : centres(k_components * k_dim), basis(k_components * k_rank * k_dim), cdf(k_components) {
        splitmix64 rng{k_seed};
        for (auto& x : centres) x = 0.6f * normal(rng);
        const float scale = 2.5f / std::sqrt(static_cast<float>(k_dim));  // each direction has norm ~2.5
        for (auto& x : basis) x = scale * normal(rng);
        double total = 0.0;
        for (std::int64_t c = 0; c < k_components; ++c) cdf[static_cast<std::size_t>(c)] = total += 1.0 / std::sqrt(static_cast<double>(c + 1));
        for (auto& x : cdf) x /= total;
    }

    // Point i of the infinite deterministic stream: (k_dim) floats.
    void point(std::int64_t i, float* out) const {
        splitmix64 rng{k_seed ^ (static_cast<std::uint64_t>(i) * 0xd1b54a32d192ed03ull)};
        const double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
        const auto c = std::min<std::int64_t>(k_components - 1, std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
        float z[k_rank];
        for (auto& x : z) x = normal(rng);
        const float* mu = centres.data() + c * k_dim;
        for (std::int64_t j = 0; j < k_dim; ++j) out[j] = mu[j] + 0.25f * normal(rng);
        for (std::int64_t r = 0; r < k_rank; ++r) {
            const float* b = basis.data() + (c * k_rank + r) * k_dim;
            for (std::int64_t j = 0; j < k_dim; ++j) out[j] += z[r] * b[j];
        }
    }
};

struct bench_data {
    std::shared_ptr<const datastore> store;
    std::unique_ptr<exact_index> exact;
    std::shared_ptr<ivf_index> ivf;
    std::vector<float> queries;                      // (k_queries, k_dim)
    std::vector<std::vector<neighbour>> truth;       // exact k_k neighbours of each query
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bench_data& data() {
    static bench_data d = [] {
        bench_data b;
        const char* env_n = std::getenv("MINIGPT_KNN_BENCH_N");
        const std::int64_t n = env_n ? std::atoll(env_n) : 1000000;
        const char* env_dir = std::getenv("MINIGPT_KNN_BENCH_DIR");
        const std::filesystem::path dir = env_dir ? std::filesystem::path(env_dir) : std::filesystem::temp_directory_path() / "minigpt-knn-bench";
        std::filesystem::create_directories(dir);
        const std::string path = (dir / ("synthetic-v3-" + std::to_string(n) + "x768-f16.knn")).string();
        const std::string fingerprint = "synthetic gaussian mixture v3: n=" + std::to_string(n) + " dim=768 components=2000 (1/sqrt weights) rank=16 seed=" +
                                        std::to_string(k_seed);
        const mixture mix;
        try {
            b.store = datastore::open(path, fingerprint);
        } catch (const minigpt::error&) {
            const auto t0 = std::chrono::steady_clock::now();
            datastore_writer w(path, k_dim, dtype::f16, fingerprint, n);
            const std::int64_t batch = 16384;
            std::vector<float> keys(static_cast<std::size_t>(batch * k_dim));
            std::vector<std::int32_t> values(static_cast<std::size_t>(batch));
            for (std::int64_t b0 = 0; b0 < n; b0 += batch) {
                const std::int64_t m = std::min(batch, n - b0);
                parallel_for(m, 0, [&](std::int64_t s, std::int64_t e) {
                    for (std::int64_t i = s; i < e; ++i) mix.point(b0 + i, keys.data() + i * k_dim);
                });
                for (std::int64_t i = 0; i < m; ++i) values[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((b0 + i) % 50257);
                w.append(keys.data(), values.data(), m);
            }
            w.finish();
            std::fprintf(stderr, "knn bench: wrote %s in %.1f s\n", path.c_str(), seconds_since(t0));
            b.store = datastore::open(path, fingerprint);
        }
        b.exact = std::make_unique<exact_index>(b.store);

        auto t0 = std::chrono::steady_clock::now();
        const bool cached = std::filesystem::exists(ivf_index::default_path(*b.store));
        ivf_params p;
        p.n_lists = k_lists;
        b.ivf = ivf_index::open_or_build(b.store, p);
        std::fprintf(stderr, "knn bench: IVF index (%lld lists) %s in %.1f s\n", static_cast<long long>(b.ivf->n_lists()),
                     cached ? "loaded" : "built and saved", seconds_since(t0));

        b.queries.resize(static_cast<std::size_t>(k_queries * k_dim));
        for (std::int64_t q = 0; q < k_queries; ++q) mix.point(n + q, b.queries.data() + q * k_dim);  // unseen points
        t0 = std::chrono::steady_clock::now();
        b.exact->search_batch(b.queries.data(), k_queries, k_k, b.truth);
        std::fprintf(stderr, "knn bench: exact ground truth for %lld queries in %.1f s\n", static_cast<long long>(k_queries), seconds_since(t0));
        return b;
    }();
    return d;
}

double recall(const std::vector<std::vector<neighbour>>& got) {
    const auto& truth = data().truth;
    std::int64_t hit = 0, total = 0;
    for (std::size_t q = 0; q < got.size(); ++q) {
        std::vector<std::int64_t> want;
        for (const auto& x : truth[q]) want.push_back(x.key_index);
        std::sort(want.begin(), want.end());
        for (const auto& x : got[q]) hit += std::binary_search(want.begin(), want.end(), x.key_index);
        total += static_cast<std::int64_t>(want.size());
    }
    return static_cast<double>(hit) / static_cast<double>(total);
}

// Args: threads. With one thread the CPU column is the cost of a query even on a busy machine.
void BM_knn_exact_single(benchmark::State& state) {
    auto& d = data();
    d.exact->set_threads(static_cast<int>(state.range(0)));
    std::vector<neighbour> out;
    std::int64_t q = 0;
    for (auto _ : state) {
        d.exact->search(d.queries.data() + (q++ % k_queries) * k_dim, k_k, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations());
}

// Args: queries per batch.
void BM_knn_exact_batch(benchmark::State& state) {
    auto& d = data();
    d.exact->set_threads(0);
    const std::int64_t n_batch = state.range(0);
    std::vector<std::vector<neighbour>> out;
    for (auto _ : state) {
        d.exact->search_batch(d.queries.data(), n_batch, k_k, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * n_batch);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n_batch) * static_cast<double>(d.store->n_keys()) * k_dim * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// Args: nprobe, threads.
void BM_knn_ivf_single(benchmark::State& state) {
    auto& d = data();
    d.ivf->set_nprobe(static_cast<std::int32_t>(state.range(0)));
    d.ivf->set_threads(static_cast<int>(state.range(1)));
    std::vector<std::vector<neighbour>> all(k_queries);
    for (std::int64_t q = 0; q < k_queries; ++q) d.ivf->search(d.queries.data() + q * k_dim, k_k, all[static_cast<std::size_t>(q)]);
    std::vector<neighbour> out;
    std::int64_t q = 0;
    for (auto _ : state) {
        d.ivf->search(d.queries.data() + (q++ % k_queries) * k_dim, k_k, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["recall@32"] = recall(all);
}

// Args: nprobe, queries per batch (queries run in parallel, each on one thread).
void BM_knn_ivf_batch(benchmark::State& state) {
    auto& d = data();
    d.ivf->set_threads(0);
    d.ivf->set_nprobe(static_cast<std::int32_t>(state.range(0)));
    const std::int64_t n_batch = state.range(1);
    std::vector<std::vector<neighbour>> out;
    for (auto _ : state) {
        d.ivf->search_batch(d.queries.data(), n_batch, k_k, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * n_batch);
    d.ivf->search_batch(d.queries.data(), k_queries, k_k, out);
    state.counters["recall@32"] = recall(out);
}

// Wall-clock time: the searches run on all cores unless an argument says otherwise.
BENCHMARK(BM_knn_exact_single)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_knn_exact_batch)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_knn_ivf_single)->Args({1, 1})->Args({2, 1})->Args({4, 1})->Args({8, 1})->Args({2, 2})->Args({4, 2})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_knn_ivf_batch)->Args({2, 256})->Args({4, 256})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

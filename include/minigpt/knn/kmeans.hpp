// k-means for the coarse quantiser of the IVF index: k-means++ seeding, then Lloyd
// iterations whose assignment step is a matrix product.
//
// Assignment needs argmin_c ||x - c||^2 = argmin_c (||c||^2 - 2 x.c) (||x||^2 is the same
// for every c), so a block of points against all centroids is one matrix product
// (dot_products, the register-tiled kernel also behind batched exact search).
// Seeding matters in high dimension: with random seeds, clusters that get no seed end up
// shared by "hub" centroids near the middle of many clusters, whose IVF lists grow to tens
// of times the mean size and make every query that probes them slow. k-means++ (each new
// seed drawn with probability proportional to its squared distance from the seeds so far)
// covers them; it runs on a subsample of 16 points per centroid, since it makes one pass
// per centroid. Starved clusters (empty or tiny) are re-seeded inside the largest ones
// (see rebalance()).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/kernels/distance.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/core/progress.hpp"

namespace minigpt::knn {

// splitmix64: a tiny, fully specified generator, so a seed gives the same index on every
// platform and standard library (std:: distributions are implementation-defined).
struct splitmix64 {
    std::uint64_t state;
    std::uint64_t next() noexcept {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    std::uint64_t below(std::uint64_t n) noexcept { return n == 0 ? 0 : next() % n; }  // bias < n / 2^64
};

// `count` distinct indices from [0, n), in increasing order (partial Fisher-Yates).
inline std::vector<std::int64_t> sample_indices(std::int64_t n, std::int64_t count, std::uint64_t seed) {
    count = std::min(count, n);
    std::vector<std::int64_t> all(static_cast<std::size_t>(n));
    std::iota(all.begin(), all.end(), std::int64_t{0});
    splitmix64 rng{seed};
    for (std::int64_t i = 0; i < count; ++i) {
        const auto j = i + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n - i)));
        std::swap(all[static_cast<std::size_t>(i)], all[static_cast<std::size_t>(j)]);
    }
    all.resize(static_cast<std::size_t>(count));
    std::sort(all.begin(), all.end());
    return all;
}

// For each of the n points (rows of `points`, f32 or f16, (n, dim)), the index of the
// nearest centroid. centroids (n_centroids, dim) f32; centroid_norms (n_centroids).
inline void assign_nearest(const void* points, dtype type, std::int64_t n, std::int64_t dim, const float* centroids,
                           const float* centroid_norms, std::int64_t n_centroids, std::int32_t* out, int n_threads,
                           progress* report = nullptr) {
    if (type != dtype::f32 && type != dtype::f16) throw error("assign_nearest: points must be f32 or f16");
    constexpr std::int64_t block = 64;
    std::int64_t done = 0;
    std::mutex lock;
    parallel_ranges(n, n_threads, [&](std::int64_t b, std::int64_t e) {
        std::vector<float> widened;  // (block, dim)
        std::vector<float> dots(static_cast<std::size_t>(block * n_centroids));  // (block, n_centroids)
        for (std::int64_t pb = b; pb < e; pb += block) {
            const std::int64_t np = std::min(block, e - pb);
            const float* pp;
            if (type == dtype::f16) {
                widened.resize(static_cast<std::size_t>(np * dim));
                widen_f16(static_cast<const std::uint16_t*>(points) + pb * dim, widened.data(), np * dim);
                pp = widened.data();
            } else {
                pp = static_cast<const float*>(points) + pb * dim;
            }
            dot_products(pp, np, centroids, n_centroids, dim, dots.data(), n_centroids);
            for (std::int64_t i = 0; i < np; ++i) {
                const float* row = dots.data() + i * n_centroids;
                float best = std::numeric_limits<float>::infinity();
                std::int32_t arg = 0;
                for (std::int64_t c = 0; c < n_centroids; ++c) {
                    const float s = centroid_norms[c] - 2.0f * row[c];
                    if (s < best) { best = s; arg = static_cast<std::int32_t>(c); }
                }
                out[pb + i] = arg;
            }
            if (report) {
                std::lock_guard<std::mutex> g(lock);
                done += np;
                report->update(done);
            }
        }
    }, block);
}

// Re-seeds every cluster holding under a quarter of the mean size (empty ones included) at
// a random member of the currently largest cluster. In high dimension, when there are more
// natural clusters than centroids, Lloyd's algorithm settles with "hub" centroids near the
// middle of many clusters that soak up tens of times the mean size; an IVF list built on
// one of those makes every query that probes it slow. Moving the starved centroids into the
// hubs breaks them up over the next iterations.
inline void rebalance(const float* data, std::int64_t dim, const std::vector<std::int32_t>& assign,
                      const std::vector<std::int64_t>& counts, std::vector<float>& centroids, splitmix64& rng) {
    const auto nc = static_cast<std::int64_t>(counts.size());
    const auto n = static_cast<std::int64_t>(assign.size());
    const double mean = static_cast<double>(n) / static_cast<double>(nc);
    std::vector<std::int64_t> starved;
    for (std::int64_t c = 0; c < nc; ++c)
        if (static_cast<double>(counts[static_cast<std::size_t>(c)]) < mean / 4) starved.push_back(c);
    if (starved.empty()) return;
    // Members of every cluster, grouped (CSR), to draw a random member of a big one.
    std::vector<std::int64_t> start(static_cast<std::size_t>(nc + 1), 0), members(static_cast<std::size_t>(n));
    for (auto a : assign) ++start[static_cast<std::size_t>(a) + 1];
    for (std::int64_t c = 0; c < nc; ++c) start[static_cast<std::size_t>(c + 1)] += start[static_cast<std::size_t>(c)];
    std::vector<std::int64_t> fill(start.begin(), start.end() - 1);
    for (std::int64_t i = 0; i < n; ++i) members[static_cast<std::size_t>(fill[static_cast<std::size_t>(assign[static_cast<std::size_t>(i)])]++)] = i;
    // Largest first; a cluster's remaining size drops by the mean for each centroid moved into it.
    std::vector<std::pair<double, std::int64_t>> big;
    for (std::int64_t c = 0; c < nc; ++c) big.emplace_back(static_cast<double>(counts[static_cast<std::size_t>(c)]), c);
    std::make_heap(big.begin(), big.end());
    for (auto s : starved) {
        std::pop_heap(big.begin(), big.end());
        auto& [size, b] = big.back();
        if (size < 2 * mean) break;  // nothing left worth splitting
        const auto lo = start[static_cast<std::size_t>(b)], len = start[static_cast<std::size_t>(b) + 1] - lo;
        const auto pick = members[static_cast<std::size_t>(lo + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(len))))];
        std::copy_n(data + pick * dim, dim, centroids.data() + s * dim);
        size -= mean;
        std::push_heap(big.begin(), big.end());
    }
}

// k-means++ seeds: n_centroids rows of `data` (n, dim), drawn from a subsample of at most
// 16 * n_centroids points. Returns (n_centroids, dim).
inline std::vector<float> kmeanspp_seeds(const float* data, std::int64_t n, std::int64_t dim, std::int64_t n_centroids,
                                         std::uint64_t seed, int n_threads) {
    const auto rows = sample_indices(n, std::min(n, 16 * n_centroids), seed);
    const auto m = static_cast<std::int64_t>(rows.size());
    std::vector<float> seeds(static_cast<std::size_t>(n_centroids * dim));  // (n_centroids, dim)
    std::vector<float> nearest(static_cast<std::size_t>(m), std::numeric_limits<float>::infinity());  // (m) squared distance to the closest seed
    splitmix64 rng{seed ^ 0x2545f4914f6cdd1dull};
    std::int64_t pick = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(m)));
    for (std::int64_t c = 0; c < n_centroids; ++c) {
        if (c > 0) {
            double total = 0.0;
            for (float d : nearest) total += d;
            // Draw proportionally to the distances; if every point sits on a seed, take any.
            double r = static_cast<double>(rng.next() >> 11) * 0x1.0p-53 * total;
            pick = m - 1;
            for (std::int64_t i = 0; i < m; ++i) {
                r -= nearest[static_cast<std::size_t>(i)];
                if (r < 0.0) { pick = i; break; }
            }
        }
        float* centre = seeds.data() + c * dim;
        std::copy_n(data + rows[static_cast<std::size_t>(pick)] * dim, dim, centre);
        parallel_for(m, n_threads, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t i = b; i < e; ++i) {
                const float d = l2_sq(data + rows[static_cast<std::size_t>(i)] * dim, centre, dim);
                float& near = nearest[static_cast<std::size_t>(i)];
                if (d < near) near = d;
            }
        }, 1024);
    }
    return seeds;
}

struct kmeans_params {
    std::int64_t n_centroids = 0;
    int n_iterations = 10;
    std::uint64_t seed = 0x6b6d65616e73ull;
    int n_threads = 0;
};

// data (n, dim) f32. Returns the centroids (n_centroids, dim).
inline std::vector<float> kmeans(const float* data, std::int64_t n, std::int64_t dim, const kmeans_params& p,
                                 const std::string& label = "k-means") {
    if (p.n_centroids <= 0) throw error("kmeans: n_centroids must be positive");
    if (n < p.n_centroids)
        throw error("kmeans: " + std::to_string(n) + " training points cannot make " + std::to_string(p.n_centroids) + " centroids");
    if (p.n_iterations < 0) throw error("kmeans: negative iteration count");
    const std::int64_t nc = p.n_centroids;
    const auto cdim = static_cast<std::size_t>(dim);
    checked_mul(static_cast<std::uint64_t>(nc), cdim, "centroids");
    std::vector<float> centroids = kmeanspp_seeds(data, n, dim, nc, p.seed, p.n_threads);  // (nc, dim)

    std::vector<float> norms(static_cast<std::size_t>(nc));         // (nc)
    std::vector<std::int32_t> assign(static_cast<std::size_t>(n));  // (n)
    std::vector<double> sums(centroids.size());                      // (nc, dim)
    std::vector<std::int64_t> counts(static_cast<std::size_t>(nc)); // (nc)
    splitmix64 rng{p.seed ^ 0x5bd1e995ull};
    progress bar(label, p.n_iterations, ::isatty(2) != 0 && n * nc * dim > (std::int64_t{1} << 32));
    for (int it = 0; it < p.n_iterations; ++it) {
        for (std::int64_t c = 0; c < nc; ++c) norms[static_cast<std::size_t>(c)] = sq_norm(centroids.data() + c * dim, dim);
        assign_nearest(data, dtype::f32, n, dim, centroids.data(), norms.data(), nc, assign.data(), p.n_threads);
        std::fill(sums.begin(), sums.end(), 0.0);
        std::fill(counts.begin(), counts.end(), 0);
        for (std::int64_t i = 0; i < n; ++i) {
            const auto c = static_cast<std::size_t>(assign[static_cast<std::size_t>(i)]);
            ++counts[c];
            const float* x = data + i * dim;
            double* s = sums.data() + c * cdim;
            for (std::size_t j = 0; j < cdim; ++j) s[j] += x[j];
        }
        for (std::int64_t c = 0; c < nc; ++c) {
            const auto cc = static_cast<std::size_t>(c);
            if (counts[cc] == 0) continue;
            for (std::size_t j = 0; j < cdim; ++j)
                centroids[cc * cdim + j] = static_cast<float>(sums[cc * cdim + j] / static_cast<double>(counts[cc]));
        }
        if (it + 2 < p.n_iterations) rebalance(data, dim, assign, counts, centroids, rng);
        bar.update(it + 1);
    }
    return centroids;
}

}  // namespace minigpt::knn

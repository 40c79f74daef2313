// k-means for the coarse quantiser of the IVF index: random initialisation from the
// training sample, then Lloyd iterations whose assignment step is a GEMM.
//
// Assignment needs argmin_c ||x - c||^2 = argmin_c (||c||^2 - 2 x.c) (||x||^2 is the same
// for every c), so a block of points against all centroids is one matrix product
// (dot_products, the same register-tiled kernel as batched exact search).
// Initialisation picks distinct random sample points rather than k-means++: k-means++
// makes n_centroids sequential passes over the sample, which on two cores costs more
// than the Lloyd iterations it would save, and IVF recall depends little on it.
// Empty clusters are re-seeded by splitting the largest cluster in two.
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
#include "minigpt/knn/distance.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/knn/progress.hpp"

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
    std::vector<float> centroids(static_cast<std::size_t>(checked_mul(static_cast<std::uint64_t>(nc), cdim, "centroids")));  // (nc, dim)
    const auto init = sample_indices(n, nc, p.seed);
    for (std::int64_t c = 0; c < nc; ++c)
        std::copy_n(data + init[static_cast<std::size_t>(c)] * dim, dim, centroids.data() + c * dim);

    std::vector<float> norms(static_cast<std::size_t>(nc));         // (nc)
    std::vector<std::int32_t> assign(static_cast<std::size_t>(n));  // (n)
    std::vector<double> sums(centroids.size());                      // (nc, dim)
    std::vector<std::int64_t> counts(static_cast<std::size_t>(nc)); // (nc)
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
        // Split the largest cluster for each empty one: the two halves drift apart in the next
        // iterations, as they are nudged in opposite directions.
        for (std::int64_t c = 0; c < nc; ++c) {
            const auto cc = static_cast<std::size_t>(c);
            if (counts[cc] != 0) continue;
            const auto big = static_cast<std::size_t>(std::max_element(counts.begin(), counts.end()) - counts.begin());
            if (counts[big] < 2) break;
            constexpr float eps = 1.0f / 1024.0f;
            for (std::size_t j = 0; j < cdim; ++j) {
                const float v = centroids[big * cdim + j];
                const float sign = (j % 2 == 0) ? 1.0f : -1.0f;
                centroids[cc * cdim + j] = v * (1.0f + sign * eps);
                centroids[big * cdim + j] = v * (1.0f - sign * eps);
            }
            counts[cc] = counts[big] / 2;
            counts[big] -= counts[cc];
        }
        bar.update(it + 1);
    }
    return centroids;
}

}  // namespace minigpt::knn

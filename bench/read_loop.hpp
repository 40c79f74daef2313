// The read loop that decode speed is judged against: the sum of n floats split into one contiguous
// part per thread, four independent accumulators each, so only the memory system limits it. Shared
// by bench_matmul_bench (read_bandwidth) and bench_forward_bench (decode_vs_read).
#pragma once

#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/threads.hpp"

namespace minigpt::bench {

// data: n floats, 64-byte aligned; returns their sum (so the loads cannot be optimised away).
inline float read_all(const float* data, std::int64_t n, int n_threads) {
    using B = xsimd::batch<float>;
    constexpr std::int64_t L = static_cast<std::int64_t>(B::size);
    float partial[64] = {};
    n_threads = n_threads < 1 ? 1 : n_threads > 64 ? 64 : n_threads;
    parallel_for(n_threads, n_threads, [&](std::int64_t t0, std::int64_t t1) {
        for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t b = n / n_threads * t, e = t + 1 == n_threads ? n : n / n_threads * (t + 1);
            B a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
            for (std::int64_t i = b; i + 4 * L <= e; i += 4 * L) {
                a0 += B::load_aligned(data + i);
                a1 += B::load_aligned(data + i + L);
                a2 += B::load_aligned(data + i + 2 * L);
                a3 += B::load_aligned(data + i + 3 * L);
            }
            partial[t] = xsimd::hadd(a0 + a1 + a2 + a3);
        }
    });
    float sum = 0.0f;
    for (int t = 0; t < n_threads; ++t) sum += partial[t];
    return sum;
}

}  // namespace minigpt::bench

// minigpt::rng: the seeded random source of the sampler, reproducible across machines and compilers.
//
// The engine is std::mt19937_64, whose output sequence for a given seed the C++ standard fixes
// exactly. The standard distributions (uniform_real_distribution, discrete_distribution) are
// not fixed: libstdc++, libc++ and MSVC turn the same engine output into different numbers. So
// both draws are written out here:
//   uniform():      the top 53 bits of one engine output, times 2^-53: a double in [0, 1) on a
//                   grid of 2^-53, every grid point equally likely.
//   categorical(w): u = uniform() * sum(w), then the first index i (in the given order) whose
//                   running sum w[0] + ... + w[i], accumulated in double, exceeds u. Zero weights
//                   are never chosen.
// Both use one engine output per call, so the stream position after n draws is always n.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>

#include "minigpt/core/error.hpp"

namespace minigpt {

class rng {
public:
    explicit rng(std::uint64_t seed) : seed_(seed), engine_(seed) {}

    std::uint64_t seed() const noexcept { return seed_; }

    // Back to the start of the stream of this seed.
    void reseed(std::uint64_t seed) {
        seed_ = seed;
        engine_.seed(seed);
    }

    std::uint64_t next_u64() { return engine_(); }

    // A double in [0, 1): 53 random bits fill exactly the significand, so the conversion is exact.
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

    // An index drawn with probability w[i] / sum(w). Weights must be finite and >= 0 with a
    // positive sum; they need not be normalised.
    std::size_t categorical(std::span<const float> weights) {
        double total = 0.0;
        for (std::size_t i = 0; i < weights.size(); ++i) {
            const float w = weights[i];
            if (!(w >= 0.0f) || !std::isfinite(w))
                throw error("rng::categorical: weight " + std::to_string(i) + " is " + std::to_string(w) +
                            " (weights must be finite and >= 0)");
            total += w;
        }
        if (!(total > 0.0)) throw error("rng::categorical: weights sum to zero");
        return pick(weights.size(), [&](std::size_t i) { return weights[i]; }, uniform() * total);
    }

    // A seed from the operating system's entropy source, for "pick one at random".
    static std::uint64_t random_seed() {
        std::random_device rd;
        const std::uint64_t hi = rd(), lo = rd();
        return (hi << 32) ^ lo;
    }

    // The index i whose cumulative interval [w0+...+w(i-1), w0+...+wi) holds `target`, for
    // 0 <= target < sum(w), where weight_at(i) gives w_i. Rounding can leave target at or past the
    // final running sum; then the last positive weight is chosen, so a zero weight never is.
    template <class WeightAt>
    static std::size_t pick(std::size_t n, WeightAt&& weight_at, double target) {
        double running = 0.0;
        std::size_t last_positive = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double w = weight_at(i);
            if (!(w > 0.0)) continue;
            running += w;
            last_positive = i;
            if (target < running) return i;
        }
        return last_positive;
    }

private:
    std::uint64_t seed_;
    std::mt19937_64 engine_;
};

}  // namespace minigpt

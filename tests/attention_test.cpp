// Tests of kernels/attention.hpp against a naive double-precision attention written here.
//
// The naive reference builds the full (n_tokens, n_keys) score matrix per head with the
// causal mask as -inf, takes a row softmax and multiplies by V, all in double, decoding
// f16 caches with core/half.hpp. It covers GQA ratios 1, 2 and 4 (and groups of up to 16
// query heads per KV head), head_dim 7, 64 and 128 (and others), prompts of 1..65 tokens at
// pos0 = 0 and pos0 > 0 (across the online-softmax block boundary), f32 and f16 caches,
// and 1 and 2 threads; kernels::ref::attention is checked against it too. Tolerance: 1e-5
// of the largest |v| (the output is a convex combination of value rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "minigpt/core/half.hpp"
#include "minigpt/kernels/attention.hpp"

namespace {

using namespace minigpt;
namespace K = minigpt::kernels;

struct problem {
    std::int64_t n_tokens, pos0, n_heads, n_kv_heads, head_dim;
    dtype kv_type;
    std::vector<float> q;         // (n_tokens, n_heads*head_dim)
    std::vector<float> k, v;      // (n_keys, n_kv_heads*head_dim), f32 caches
    std::vector<std::uint16_t> k16, v16;  // the same shape as fp16 bits
    float scale;

    std::int64_t n_keys() const { return pos0 + n_tokens; }
    const void* k_ptr() const { return kv_type == dtype::f32 ? static_cast<const void*>(k.data()) : k16.data(); }
    const void* v_ptr() const { return kv_type == dtype::f32 ? static_cast<const void*>(v.data()) : v16.data(); }
    double k_at(std::int64_t i) const { return kv_type == dtype::f32 ? k[static_cast<std::size_t>(i)] : fp16_to_fp32(k16[static_cast<std::size_t>(i)]); }
    double v_at(std::int64_t i) const { return kv_type == dtype::f32 ? v[static_cast<std::size_t>(i)] : fp16_to_fp32(v16[static_cast<std::size_t>(i)]); }
};

problem make_problem(std::int64_t n_tokens, std::int64_t pos0, std::int64_t n_heads, std::int64_t n_kv_heads, std::int64_t head_dim,
                     dtype kv_type, unsigned seed, float q_range = 1.0f) {
    problem p{n_tokens, pos0, n_heads, n_kv_heads, head_dim, kv_type, {}, {}, {}, {}, {}, 1.0f / std::sqrt(static_cast<float>(head_dim))};
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uq(-q_range, q_range), ukv(-2.0f, 2.0f);
    p.q.resize(static_cast<std::size_t>(n_tokens * n_heads * head_dim));
    for (auto& x : p.q) x = uq(rng);
    const auto kv_n = static_cast<std::size_t>(p.n_keys() * n_kv_heads * head_dim);
    p.k.resize(kv_n);
    p.v.resize(kv_n);
    for (auto& x : p.k) x = ukv(rng);
    for (auto& x : p.v) x = ukv(rng);
    p.k16.resize(kv_n);
    p.v16.resize(kv_n);
    for (std::size_t i = 0; i < kv_n; ++i) p.k16[i] = fp32_to_fp16(p.k[i]), p.v16[i] = fp32_to_fp16(p.v[i]);
    return p;
}

// Full score matrix per head, causal mask as -inf, row softmax, times V; all in double.
std::vector<double> naive_attention(const problem& p) {
    const std::int64_t T = p.n_tokens, N = p.n_keys(), D = p.head_dim;
    const std::int64_t q_dim = p.n_heads * D, kv_dim = p.n_kv_heads * D;
    std::vector<double> out(static_cast<std::size_t>(T * q_dim));
    std::vector<double> scores(static_cast<std::size_t>(T * N));  // (n_tokens, n_keys) for one head
    for (std::int64_t h = 0; h < p.n_heads; ++h) {
        const std::int64_t kvh = h / (p.n_heads / p.n_kv_heads);
        for (std::int64_t t = 0; t < T; ++t)
            for (std::int64_t j = 0; j < N; ++j) {
                double s = -std::numeric_limits<double>::infinity();
                if (j <= p.pos0 + t) {
                    s = 0.0;
                    for (std::int64_t d = 0; d < D; ++d) s += static_cast<double>(p.q[static_cast<std::size_t>(t * q_dim + h * D + d)]) * p.k_at(j * kv_dim + kvh * D + d);
                    s *= p.scale;
                }
                scores[static_cast<std::size_t>(t * N + j)] = s;
            }
        for (std::int64_t t = 0; t < T; ++t) {
            double* row = &scores[static_cast<std::size_t>(t * N)];
            const double m = *std::max_element(row, row + N);
            double sum = 0.0;
            for (std::int64_t j = 0; j < N; ++j) sum += (row[j] = std::exp(row[j] - m));
            for (std::int64_t d = 0; d < D; ++d) {
                double acc = 0.0;
                for (std::int64_t j = 0; j < N; ++j) acc += row[j] * p.v_at(j * kv_dim + kvh * D + d);
                out[static_cast<std::size_t>(t * q_dim + h * D + d)] = acc / sum;
            }
        }
    }
    return out;
}

double max_abs_v(const problem& p) {
    double m = 0.0;
    for (std::size_t i = 0; i < p.v.size(); ++i) m = std::max(m, std::fabs(p.v_at(static_cast<std::int64_t>(i))));
    return m;
}

void check_problem(const problem& p, int n_threads, double rel_tol = 1e-5) {
    const auto expect = naive_attention(p);
    std::vector<float> out(expect.size(), std::numeric_limits<float>::quiet_NaN());
    K::attention(p.q.data(), p.k_ptr(), p.v_ptr(), p.kv_type, out.data(), p.n_tokens, p.pos0, p.n_heads, p.n_kv_heads,
                 p.head_dim, p.scale, n_threads);
    const double tol = rel_tol * max_abs_v(p);
    for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], expect[i], tol) << "i=" << i << " n_tokens=" << p.n_tokens << " pos0=" << p.pos0
                                            << " heads=" << p.n_heads << "/" << p.n_kv_heads << " head_dim=" << p.head_dim
                                            << " kv=" << dtype_name(p.kv_type) << " threads=" << n_threads;
}

TEST(Attention, MatchesNaiveReferenceAcrossShapes) {
    struct tp { std::int64_t n_tokens, pos0; };
    // Prompts from scratch and continuing a cache; n_keys straddles the 128-key block size.
    const tp token_cases[] = {{1, 0}, {1, 5}, {1, 127}, {1, 128}, {2, 255}, {7, 3}, {17, 0}, {65, 0}, {33, 140}};
    const std::int64_t head_dims[] = {7, 64, 128};
    const std::int64_t gqa[] = {1, 2, 4};
    unsigned seed = 1;
    for (auto hd : head_dims)
        for (auto g : gqa)
            for (auto kv : {dtype::f32, dtype::f16})
                for (const auto& tc : token_cases) {
                    const std::int64_t n_kv = 2, n_heads = n_kv * g;
                    const auto p = make_problem(tc.n_tokens, tc.pos0, n_heads, n_kv, hd, kv, seed++);
                    for (int threads : {1, 2}) {
                        check_problem(p, threads);
                        if (HasFatalFailure()) return;
                    }
                }
}

TEST(Attention, OtherHeadDims) {
    unsigned seed = 100;
    for (std::int64_t hd : {1, 16, 17, 80, 96, 33})
        for (auto kv : {dtype::f32, dtype::f16}) {
            check_problem(make_problem(9, 20, 4, 2, hd, kv, seed++), 2);
            if (HasFatalFailure()) return;
        }
}

TEST(Attention, LargeAndUnevenHeadGroups) {
    // Groups wider than one work item (12 heads per KV head is split 8 + 4) and groups split
    // further to keep two threads busy on a single token.
    struct shape { std::int64_t n_heads, n_kv_heads; };
    unsigned seed = 200;
    for (auto s : {shape{12, 1}, shape{24, 2}, shape{6, 1}, shape{16, 1}})
        for (std::int64_t n_tokens : {1, 5})
            for (int threads : {1, 2}) {
                check_problem(make_problem(n_tokens, 150, s.n_heads, s.n_kv_heads, 32, dtype::f16, seed++), threads);
                if (HasFatalFailure()) return;
            }
}

TEST(Attention, LongContextAndSharpScores) {
    // q scaled up makes the scores span ~+-200: a stable softmax must not overflow, and the
    // online maximum changes many times across 9 blocks of keys.
    auto sharp = make_problem(3, 1100, 4, 1, 64, dtype::f32, 7, 12.0f);
    check_problem(sharp, 2);
    // Keys whose scores rise along the positions: every block raises the running maximum,
    // so every block rescales the accumulator.
    auto rising = make_problem(2, 700, 2, 2, 64, dtype::f16, 8);
    const std::int64_t kv_dim = 2 * 64;
    for (std::int64_t j = 0; j < rising.n_keys(); ++j)
        for (std::int64_t d = 0; d < kv_dim; ++d) {
            const auto i = static_cast<std::size_t>(j * kv_dim + d);
            rising.k[i] = static_cast<float>(j) / 64.0f * (d % 2 == 0 ? 1.0f : -1.0f) / 8.0f;
            rising.k16[i] = fp32_to_fp16(rising.k[i]);
        }
    for (std::size_t i = 0; i < rising.q.size(); ++i) rising.q[i] = i % 2 == 0 ? 1.0f : -1.0f;
    check_problem(rising, 1);
}

TEST(Attention, ThreadCountsDoNotChangeResults) {
    // Each (token, head) row is computed by one thread with the same code, whatever the split.
    const auto p = make_problem(13, 40, 8, 2, 64, dtype::f32, 9);
    std::vector<std::vector<float>> outs;
    for (int threads : {1, 2, 3, 8, 0}) {
        std::vector<float> out(p.q.size());
        K::attention(p.q.data(), p.k_ptr(), p.v_ptr(), p.kv_type, out.data(), p.n_tokens, p.pos0, p.n_heads, p.n_kv_heads,
                     p.head_dim, p.scale, threads);
        outs.push_back(out);
    }
    for (std::size_t i = 1; i < outs.size(); ++i) EXPECT_EQ(outs[i], outs[0]);
}

TEST(Attention, SingleKeyReturnsItsValue) {
    // At position 0 a token sees only itself: the output is v[0] exactly (weight 1).
    const auto p = make_problem(1, 0, 4, 2, 64, dtype::f16, 10);
    std::vector<float> out(p.q.size());
    K::attention(p.q.data(), p.k_ptr(), p.v_ptr(), p.kv_type, out.data(), 1, 0, 4, 2, 64, p.scale, 1);
    for (std::int64_t h = 0; h < 4; ++h)
        for (std::int64_t d = 0; d < 64; ++d)
            EXPECT_EQ(out[static_cast<std::size_t>(h * 64 + d)], fp16_to_fp32(p.v16[static_cast<std::size_t>((h / 2) * 64 + d)]));
}

TEST(Attention, LibraryReferenceMatchesNaive) {
    for (auto kv : {dtype::f32, dtype::f16}) {
        const auto p = make_problem(5, 9, 6, 3, 24, kv, 11);
        const auto expect = naive_attention(p);
        std::vector<float> out(expect.size());
        K::ref::attention(p.q.data(), p.k_ptr(), p.v_ptr(), p.kv_type, out.data(), p.n_tokens, p.pos0, p.n_heads, p.n_kv_heads,
                          p.head_dim, p.scale);
        for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expect[i], 1e-6 * std::fabs(expect[i]) + 1e-12);
    }
}

TEST(Attention, RejectsBadArguments) {
    const auto p = make_problem(2, 3, 4, 2, 8, dtype::f32, 12);
    std::vector<float> out(p.q.size());
    auto call = [&](dtype t, std::int64_t n_tokens, std::int64_t pos0, std::int64_t nh, std::int64_t nkv, std::int64_t hd,
                    float* o = nullptr, const float* q = nullptr) {
        K::attention(q ? q : p.q.data(), p.k.data(), p.v.data(), t, o ? o : out.data(), n_tokens, pos0, nh, nkv, hd, p.scale, 1);
    };
    EXPECT_THROW(call(dtype::q8_0, 2, 3, 4, 2, 8), shape_error);
    EXPECT_THROW(call(dtype::f32, 2, 3, 4, 3, 8), shape_error);   // 4 heads over 3 KV heads
    EXPECT_THROW(call(dtype::f32, -1, 3, 4, 2, 8), shape_error);
    EXPECT_THROW(call(dtype::f32, 2, -3, 4, 2, 8), shape_error);
    EXPECT_THROW(call(dtype::f32, 2, 3, 0, 2, 8), shape_error);
    EXPECT_THROW(call(dtype::f32, 2, 3, 4, 2, 0), shape_error);
    EXPECT_THROW(call(dtype::f32, 2, 3, 4, 2, 8, const_cast<float*>(p.q.data())), error);  // out overlaps q
    EXPECT_THROW(call(dtype::f32, 2, 3, 4, 2, 8, const_cast<float*>(p.k.data())), error);  // out overlaps k
    EXPECT_THROW(K::attention(p.q.data(), nullptr, p.v.data(), dtype::f32, out.data(), 2, 3, 4, 2, 8, p.scale, 1), error);
    EXPECT_THROW(K::attention(p.q.data(), p.k.data(), p.v.data(), dtype::f32, out.data(), 2, 3, 4, 2, 8,
                              std::numeric_limits<float>::infinity(), 1), error);
    EXPECT_THROW(K::attention(p.q.data(), p.k.data(), p.v.data(), dtype::f32, out.data(), 1, std::numeric_limits<std::int64_t>::max(),
                              4, 2, 8, p.scale, 1), error);  // position count overflows
    try {
        call(dtype::f32, 2, 3, 6, 4, 8);
        FAIL() << "no exception";
    } catch (const shape_error& e) {
        EXPECT_NE(std::string(e.what()).find("n_kv_heads"), std::string::npos) << e.what();
    }
    // Zero tokens is a valid no-op, even with null buffers.
    EXPECT_NO_THROW(K::attention(nullptr, nullptr, nullptr, dtype::f32, nullptr, 0, 3, 4, 2, 8, p.scale, 1));
}

}  // namespace

// attention_params: a sliding window, a soft-cap, per-token positions and per-token K/V views
// (two sequences interleaved in one batch), against a naive double computation of exactly that.
TEST(Attention, WindowSoftcapPositionsAndPerTokenViews) {
    const std::int64_t n_heads = 4, n_kv_heads = 2, head_dim = 24, kv_dim = n_kv_heads * head_dim, n_ctx = 300;
    std::mt19937 rng(17);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    std::vector<float> cache[2][2];  // [sequence][k, v]: (n_ctx, kv_dim)
    for (auto& seq : cache)
        for (auto& buf : seq) {
            buf.resize(static_cast<std::size_t>(n_ctx * kv_dim));
            for (auto& x : buf) x = u(rng);
        }
    // Token t belongs to sequence t % 2; positions cross the 128-key block boundary.
    const std::vector<std::int64_t> pos = {0, 250, 3, 251, 140, 252, 141, 7};
    const auto n_tokens = static_cast<std::int64_t>(pos.size());
    std::vector<K::kv_view> views;
    for (std::int64_t t = 0; t < n_tokens; ++t) views.push_back({cache[t % 2][0].data(), cache[t % 2][1].data()});
    std::vector<float> q(static_cast<std::size_t>(n_tokens * n_heads * head_dim));
    for (auto& x : q) x = u(rng);
    for (const float cap : {0.0f, 2.0f})
        for (const std::int64_t window : {0, 1, 5, 130}) {
            SCOPED_TRACE("cap " + std::to_string(cap) + " window " + std::to_string(window));
            K::attention_params p;
            p.n_heads = n_heads, p.n_kv_heads = n_kv_heads, p.head_dim = head_dim, p.scale = 0.7f, p.softcap = cap;
            p.window = window, p.positions = pos.data(), p.token_kv = views.data(), p.n_threads = 2;
            std::vector<float> out(q.size()), ref_out(q.size());
            K::attention(p, q.data(), out.data(), n_tokens);
            K::ref::attention(p, q.data(), ref_out.data(), n_tokens);
            double worst = 0.0, worst_ref = 0.0;
            for (std::int64_t t = 0; t < n_tokens; ++t) {
                const auto& kc = cache[t % 2][0];
                const auto& vc = cache[t % 2][1];
                const std::int64_t lo = window > 0 ? std::max<std::int64_t>(0, pos[static_cast<std::size_t>(t)] - window + 1) : 0;
                for (std::int64_t h = 0; h < n_heads; ++h) {
                    const std::int64_t g = h / (n_heads / n_kv_heads);
                    std::vector<double> s;
                    for (std::int64_t j = lo; j <= pos[static_cast<std::size_t>(t)]; ++j) {
                        double d = 0.0;
                        for (std::int64_t i = 0; i < head_dim; ++i)
                            d += static_cast<double>(q[static_cast<std::size_t>((t * n_heads + h) * head_dim + i)]) * kc[static_cast<std::size_t>(j * kv_dim + g * head_dim + i)];
                        d *= 0.7;
                        if (cap > 0.0f) d = cap * std::tanh(d / cap);
                        s.push_back(d);
                    }
                    const double m = *std::max_element(s.begin(), s.end());
                    double sum = 0.0;
                    for (auto& x : s) sum += (x = std::exp(x - m));
                    for (std::int64_t i = 0; i < head_dim; ++i) {
                        double o = 0.0;
                        for (std::size_t j = 0; j < s.size(); ++j) o += s[j] / sum * vc[static_cast<std::size_t>((lo + static_cast<std::int64_t>(j)) * kv_dim + g * head_dim + i)];
                        const auto idx = static_cast<std::size_t>((t * n_heads + h) * head_dim + i);
                        worst = std::max(worst, std::fabs(o - out[idx]));
                        worst_ref = std::max(worst_ref, std::fabs(o - ref_out[idx]));
                    }
                }
            }
            EXPECT_LT(worst, 2e-5);
            EXPECT_LT(worst_ref, 1e-6);
        }
}

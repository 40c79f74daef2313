// Tests of simd/vector_math.hpp, kernels/ops.hpp and kernels/rope.hpp.
//
// The transcendental helpers are swept densely against std::exp/std::expm1/std::tanh in
// double and held to a few ulp. Every kernel is compared with a double-precision reference
// (the kernels::ref functions, which are themselves checked against values written out by
// hand and exact integer arithmetic) at sizes 1, 7, 33 and 4097 and at pointers offset by
// one float. Special cases (infinities, NaN, ties, constant rows, hand-computed rotations)
// and the input checks are tested explicitly.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "minigpt/kernels/gelu_table.hpp"
#include "minigpt/kernels/ops.hpp"
#include "minigpt/kernels/rope.hpp"
#include "minigpt/simd/vector_math.hpp"

namespace {

using namespace minigpt;
namespace K = minigpt::kernels;

constexpr float k_inf = std::numeric_limits<float>::infinity();
constexpr float k_nan = std::numeric_limits<float>::quiet_NaN();
const std::int64_t k_sizes[] = {1, 7, 33, 4097};

// Error of f in units of the last place of the float nearest to ref (subnormal spacing
// below the normal range); a wrong infinity or NaN counts as a huge error.
double ulp_error(float f, double ref) {
    if (std::isnan(ref)) return std::isnan(f) ? 0.0 : 1e30;
    const auto rf = static_cast<float>(ref);
    if (std::isinf(rf)) return f == rf ? 0.0 : 1e30;
    if (std::isnan(f) || std::isinf(f)) return 1e30;
    const float a = std::fabs(rf);
    double ulp = static_cast<double>(std::nextafter(a, k_inf)) - a;
    ulp = std::max(ulp, static_cast<double>(std::numeric_limits<float>::denorm_min()));
    return std::fabs(static_cast<double>(f) - ref) / ulp;
}

float exp1(float x) { return simd::exp_batch(simd::f32_batch(x)).get(0); }
float expm1_1(float x) { return simd::expm1_batch(simd::f32_batch(x)).get(0); }
float tanh1(float x) { return simd::tanh_batch(simd::f32_batch(x)).get(0); }

// A buffer of n random floats in [lo, hi] starting `offset` floats into its storage.
struct buf {
    std::vector<float> store;
    float* p;
    buf(std::int64_t n, int offset, unsigned seed, float lo = -1.0f, float hi = 1.0f)
        : store(static_cast<std::size_t>(n + offset + 1)) {
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> dist(lo, hi);
        for (auto& v : store) v = dist(rng);
        p = store.data() + offset;
    }
    std::vector<float> copy(std::int64_t n) const { return {p, p + n}; }
};

// ---- vector_math ---------------------------------------------------------------------

TEST(VectorMath, ExpDenseSweepWithinTwoUlp) {
    double worst = 0.0;
    float worst_x = 0.0f;
    auto check = [&](float x) {
        const double e = ulp_error(exp1(x), std::exp(static_cast<double>(x)));
        if (e > worst) worst = e, worst_x = x;
    };
    for (double x = -110.0; x <= 90.0; x += 1.0 / 4096.0) check(static_cast<float>(x));
    // Every 1021st float bit pattern: covers tiny arguments and the whole exponent range.
    for (std::uint32_t bits = 0; bits < 0x7f800000u; bits += 1021u) {
        check(std::bit_cast<float>(bits));
        check(-std::bit_cast<float>(bits));
    }
    EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
}

TEST(VectorMath, ExpSpecialValues) {
    EXPECT_EQ(exp1(0.0f), 1.0f);
    EXPECT_EQ(exp1(-0.0f), 1.0f);
    EXPECT_EQ(exp1(k_inf), k_inf);
    EXPECT_EQ(exp1(-k_inf), 0.0f);
    EXPECT_TRUE(std::isnan(exp1(k_nan)));
    EXPECT_EQ(exp1(89.0f), k_inf);      // e^89 > FLT_MAX
    EXPECT_EQ(exp1(1e30f), k_inf);
    EXPECT_EQ(exp1(-1e30f), 0.0f);
    EXPECT_EQ(exp1(-104.0f), 0.0f);     // 6.8e-46 rounds to 0
    EXPECT_GT(exp1(88.7f), 3.0e38f);    // just below overflow
    // A subnormal result: e^-100 = 3.72e-44 = 26.55 * 2^-149, correctly rounded to 27 * 2^-149.
    EXPECT_EQ(exp1(-100.0f), 27.0f * std::numeric_limits<float>::denorm_min());
}

TEST(VectorMath, Expm1DenseSweep) {
    double worst = 0.0;
    float worst_x = 0.0f;
    for (double x = -30.0; x <= 88.7; x += 1.0 / 4096.0) {
        const auto xf = static_cast<float>(x);
        const double e = ulp_error(expm1_1(xf), std::expm1(static_cast<double>(xf)));
        if (e > worst) worst = e, worst_x = xf;
    }
    for (float x = 1e-30f; x < 1.0f; x *= 1.37f) {  // tiny arguments keep their relative accuracy
        worst = std::max({worst, ulp_error(expm1_1(x), std::expm1(static_cast<double>(x))),
                          ulp_error(expm1_1(-x), std::expm1(-static_cast<double>(x)))});
    }
    EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
    EXPECT_EQ(expm1_1(-k_inf), -1.0f);
    EXPECT_EQ(expm1_1(k_inf), k_inf);
    EXPECT_TRUE(std::isnan(expm1_1(k_nan)));
}

TEST(VectorMath, TanhDenseSweepWithinFourUlp) {
    double worst = 0.0;
    float worst_x = 0.0f;
    auto check = [&](float x) {
        const double e = ulp_error(tanh1(x), std::tanh(static_cast<double>(x)));
        if (e > worst) worst = e, worst_x = x;
    };
    for (double x = -12.0; x <= 12.0; x += 1.0 / 16384.0) check(static_cast<float>(x));
    for (float x = 1e-38f; x < 20.0f; x *= 1.013f) check(x), check(-x);
    EXPECT_LE(worst, 4.0) << "at x = " << worst_x;
    EXPECT_EQ(tanh1(k_inf), 1.0f);
    EXPECT_EQ(tanh1(-k_inf), -1.0f);
    EXPECT_EQ(tanh1(0.0f), 0.0f);
    EXPECT_TRUE(std::signbit(tanh1(-0.0f)));
    EXPECT_TRUE(std::isnan(tanh1(k_nan)));
}

TEST(VectorMath, PartialLoadStoreAndReductions) {
    float src[3] = {1.0f, 2.0f, 3.0f};
    const auto b = simd::load_partial(src, 3, -5.0f);
    float expect_sum = 6.0f + static_cast<float>(simd::f32_lanes - 3) * -5.0f;
    if (simd::f32_lanes < 3) GTEST_SKIP() << "batches narrower than 3 lanes";
    EXPECT_EQ(simd::hsum(b), expect_sum);
    EXPECT_EQ(simd::hmax(b), 3.0f);
    float dst[4] = {9.0f, 9.0f, 9.0f, 9.0f};
    simd::store_partial(b, dst, 2);
    EXPECT_EQ(dst[0], 1.0f);
    EXPECT_EQ(dst[1], 2.0f);
    EXPECT_EQ(dst[2], 9.0f);
}

TEST(VectorMath, HsumRowsPutsRowSumsInLaneOrder) {
    constexpr std::size_t L = simd::f32_lanes;
    simd::f32_batch rows[L];
    double expect[L];
    for (std::size_t r = 0; r < L; ++r) {
        alignas(64) float t[L];
        expect[r] = 0.0;
        for (std::size_t j = 0; j < L; ++j) expect[r] += (t[j] = static_cast<float>(r * 100 + j * j));
        rows[r] = simd::f32_batch::load_aligned(t);
    }
    const auto s = simd::hsum_rows(rows);
    for (std::size_t r = 0; r < L; ++r) EXPECT_EQ(s.get(r), expect[r]) << "lane " << r;
}

// ---- the references, against values computed by hand ----------------------------------

TEST(OpsReference, HandComputedValues) {
    const float a[3] = {1.0f, 2.0f, 3.0f}, b[3] = {4.0f, -5.0f, 6.0f};
    EXPECT_EQ(K::ref::dot(a, b, 3), 12.0);
    float r[3];
    const float w[3] = {1.0f, 1.0f, 2.0f};
    K::ref::rmsnorm(r, a, w, 3, 0.0f);  // rms = sqrt(14/3)
    EXPECT_NEAR(r[0], 1.0 / std::sqrt(14.0 / 3.0), 1e-7);
    EXPECT_NEAR(r[2], 6.0 / std::sqrt(14.0 / 3.0), 1e-6);
    K::ref::layernorm(r, a, w, nullptr, 3, 0.0f);  // mean 2, variance 2/3
    EXPECT_NEAR(r[0], -std::sqrt(1.5), 1e-6);
    EXPECT_NEAR(r[1], 0.0, 1e-7);
    EXPECT_NEAR(r[2], 2.0 * std::sqrt(1.5), 1e-6);
    float s[3] = {0.0f, std::log(2.0f), std::log(5.0f)};  // e^x = 1, 2, 5
    K::ref::softmax(s, 3);
    EXPECT_NEAR(s[0], 0.125, 1e-7);
    EXPECT_NEAR(s[1], 0.25, 1e-7);
    EXPECT_NEAR(s[2], 0.625, 1e-7);
    float g[2] = {1.0f, -2.0f};  // GPT-2 GELU: 0.8411920, -0.0454023 (tanh form)
    K::ref::gelu(g, 2);
    EXPECT_NEAR(g[0], 0.841192, 1e-6);
    EXPECT_NEAR(g[1], -0.0454023, 1e-7);
    float si[2] = {1.0f, -2.0f};  // 1/(1+e^-1), -2/(1+e^2)
    K::ref::silu(si, 2);
    EXPECT_NEAR(si[0], 0.7310586, 1e-7);
    EXPECT_NEAR(si[1], -0.2384058, 1e-7);
}

// ---- fast kernels against the references -------------------------------------------------

TEST(Ops, DotExactOnIntegers) {
    // Small integers: every partial sum is exact in float, so any order gives the exact value.
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            std::vector<float> a(static_cast<std::size_t>(n + 1)), b(a.size());
            std::mt19937 rng(static_cast<unsigned>(n));
            std::uniform_int_distribution<int> d(-8, 8);
            for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(d(rng)), b[i] = static_cast<float>(d(rng));
            double exact = 0.0;
            for (std::int64_t i = 0; i < n; ++i) exact += static_cast<double>(a[static_cast<std::size_t>(i + off)]) * b[static_cast<std::size_t>(i + off)];
            EXPECT_EQ(K::dot(a.data() + off, b.data() + off, n), static_cast<float>(exact)) << "n=" << n;
        }
}

TEST(Ops, DotMatchesReference) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            buf a(n, off, 1u + static_cast<unsigned>(n)), b(n, off, 2u + static_cast<unsigned>(n));
            double mag = 0.0;
            for (std::int64_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(a.p[i]) * b.p[i]);
            EXPECT_NEAR(K::dot(a.p, b.p, n), K::ref::dot(a.p, b.p, n), 2e-6 * mag) << "n=" << n << " off=" << off;
        }
    EXPECT_EQ(K::dot(nullptr, nullptr, 0), 0.0f);
}

TEST(Ops, AxpyScaleAddMatchReference) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            buf x(n, off, 3u), y(n, off, 4u);
            auto y_fast = y.copy(n), y_ref = y.copy(n);
            K::axpy(-0.37f, x.p, y_fast.data(), n);
            K::ref::axpy(-0.37f, x.p, y_ref.data(), n);
            // One rounding with a fused multiply-add; targets without FMA also round a*x first.
            for (std::int64_t i = 0; i < n; ++i)
                ASSERT_NEAR(y_fast[i], y_ref[i], 1.2e-7 * (std::fabs(y_ref[i]) + std::fabs(0.37 * x.p[i])) + 1e-38) << i;

            auto s_fast = x.copy(n), s_ref = x.copy(n);
            K::scale(s_fast.data(), 1.7f, n);
            K::ref::scale(s_ref.data(), 1.7f, n);
            EXPECT_EQ(s_fast, s_ref);  // one correctly rounded product each way

            std::vector<float> sum(static_cast<std::size_t>(n)), sum_ref(sum.size());
            K::add(sum.data(), x.p, y.p, n);
            K::ref::add(sum_ref.data(), x.p, y.p, n);
            EXPECT_EQ(sum, sum_ref);
            auto alias = x.copy(n);
            K::add(alias.data(), alias.data(), y.p, n);  // out == a
            EXPECT_EQ(alias, sum_ref);
            alias = y.copy(n);
            K::add(alias.data(), x.p, alias.data(), n);  // out == b
            EXPECT_EQ(alias, sum_ref);
        }
}

// |fast - ref| <= tol * max(|ref|) over the row.
void expect_rows_close(const std::vector<float>& fast, const std::vector<float>& ref, double tol, const char* what,
                       std::int64_t n) {
    double scale = 0.0;
    for (float r : ref) scale = std::max(scale, std::fabs(static_cast<double>(r)));
    for (std::size_t i = 0; i < fast.size(); ++i)
        ASSERT_NEAR(fast[i], ref[i], tol * scale) << what << " n=" << n << " i=" << i;
}

TEST(Ops, RmsnormMatchesReference) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            buf x(n, off, 5u, -3.0f, 3.0f), w(n, off, 6u, 0.5f, 1.5f);
            std::vector<float> fast(static_cast<std::size_t>(n)), ref(fast.size());
            K::rmsnorm(fast.data(), x.p, w.p, n, 1e-5f);
            K::ref::rmsnorm(ref.data(), x.p, w.p, n, 1e-5f);
            expect_rows_close(fast, ref, 1e-6, "rmsnorm", n);
            auto in_place = x.copy(n);
            K::rmsnorm(in_place.data(), in_place.data(), w.p, n, 1e-5f);
            EXPECT_EQ(in_place, fast);
        }
}

TEST(Ops, LayernormMatchesReference) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            // An offset mean much larger than the spread: a one-pass variance would lose it.
            buf x(n, off, 7u, 99.0f, 101.0f), w(n, off, 8u, 0.5f, 1.5f), b(n, off, 9u);
            std::vector<float> fast(static_cast<std::size_t>(n)), ref(fast.size());
            K::layernorm(fast.data(), x.p, w.p, b.p, n, 1e-5f);
            K::ref::layernorm(ref.data(), x.p, w.p, b.p, n, 1e-5f);
            if (n > 1) expect_rows_close(fast, ref, 2e-5, "layernorm", n);  // inputs carry 6e-6 relative rounding around 100
            K::layernorm(fast.data(), x.p, w.p, nullptr, n, 1e-5f);
            K::ref::layernorm(ref.data(), x.p, w.p, nullptr, n, 1e-5f);
            if (n > 1) expect_rows_close(fast, ref, 2e-5, "layernorm no bias", n);
            buf y(n, off, 10u, -2.0f, 2.0f);
            K::layernorm(fast.data(), y.p, w.p, b.p, n, 1e-5f);
            K::ref::layernorm(ref.data(), y.p, w.p, b.p, n, 1e-5f);
            expect_rows_close(fast, ref, 1e-6, "layernorm centred", n);
            auto in_place = y.copy(n);
            K::layernorm(in_place.data(), in_place.data(), w.p, b.p, n, 1e-5f);
            EXPECT_EQ(in_place, fast);
        }
}

TEST(Ops, LayernormConstantRowGivesBias) {
    for (auto n : k_sizes) {
        std::vector<float> x(static_cast<std::size_t>(n), 0.1f), w(x.size(), 3.0f), b(x.size()), out(x.size());
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 5) - 2.0f;
        K::layernorm(out.data(), x.data(), w.data(), b.data(), n, 1e-5f);
        for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], b[i]) << "n=" << n;
    }
}

TEST(Ops, SoftmaxMatchesReference) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            buf x(n, off, 11u, -20.0f, 20.0f);
            auto fast = x.copy(n), ref = x.copy(n);
            K::softmax(fast.data(), n);
            K::ref::softmax(ref.data(), n);
            double total = 0.0;
            const float m = *std::max_element(x.p, x.p + n);
            for (std::int64_t i = 0; i < n; ++i) {
                // x - max is rounded to float (as in every float softmax): e^x inherits |x - max| * 2^-24.
                const double rel = 1e-6 + 6e-8 * std::fabs(static_cast<double>(x.p[i]) - m);
                ASSERT_NEAR(fast[i], ref[i], rel * ref[i] + 1e-37) << "n=" << n << " i=" << i;
                total += fast[i];
            }
            EXPECT_NEAR(total, 1.0, 1e-5);
        }
}

TEST(Ops, SoftmaxSpecialValues) {
    // -inf entries get exactly zero; the rest is softmax of the finite entries.
    std::vector<float> x = {-k_inf, 0.0f, std::log(3.0f), -k_inf};
    K::softmax(x.data(), 4);
    EXPECT_EQ(x[0], 0.0f);
    EXPECT_NEAR(x[1], 0.25f, 1e-7);
    EXPECT_NEAR(x[2], 0.75f, 1e-7);
    EXPECT_EQ(x[3], 0.0f);
    // Huge values: no overflow, because the maximum is subtracted first.
    std::vector<float> h = {3.0e38f, 3.0e38f, -3.0e38f, 1.0e38f};
    K::softmax(h.data(), 4);
    EXPECT_FLOAT_EQ(h[0], 0.5f);
    EXPECT_FLOAT_EQ(h[1], 0.5f);
    EXPECT_EQ(h[2], 0.0f);
    EXPECT_EQ(h[3], 0.0f);
    std::vector<float> big = {1000.0f, 1000.0f + std::log(4.0f)};
    K::softmax(big.data(), 2);
    EXPECT_NEAR(big[0], 0.2f, 1e-6);
    EXPECT_NEAR(big[1], 0.8f, 1e-6);
    // All -inf: the limit of equal logits, uniform.
    std::vector<float> all(5, -k_inf);
    K::softmax(all.data(), 5);
    for (float v : all) EXPECT_FLOAT_EQ(v, 0.2f);
    // +inf entries share all the mass.
    std::vector<float> pinf = {1.0f, k_inf, 2.0f, k_inf};
    K::softmax(pinf.data(), 4);
    EXPECT_EQ(pinf, (std::vector<float>{0.0f, 0.5f, 0.0f, 0.5f}));
    // NaN poisons the row rather than being silently dropped.
    std::vector<float> nan_row = {1.0f, k_nan, 2.0f};
    K::softmax(nan_row.data(), 3);
    for (float v : nan_row) EXPECT_TRUE(std::isnan(v));
    // The reference agrees on the same special rows.
    std::vector<float> r = {-k_inf, 0.0f, std::log(3.0f), -k_inf};
    K::ref::softmax(r.data(), 4);
    EXPECT_NEAR(r[2], 0.75f, 1e-7);
    std::vector<float> rall(3, -k_inf);
    K::ref::softmax(rall.data(), 3);
    EXPECT_FLOAT_EQ(rall[1], 1.0f / 3.0f);
}

// Activations: error within a few ulp of the double formula, plus |x| * 1e-9 for the
// rounding of the float polynomial argument (it matters only where the result is tiny).
template <class Fast, class Ref>
void check_activation(Fast fast, Ref ref, const char* what) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            buf x(n, off, 12u, -12.0f, 12.0f);
            auto f = x.copy(n), r = x.copy(n);
            fast(f.data(), n);
            ref(r.data(), n);
            for (std::int64_t i = 0; i < n; ++i)
                ASSERT_NEAR(f[i], r[i], 6e-7 * std::fabs(r[i]) + 1e-9 * std::fabs(x.p[i]))
                    << what << " x=" << x.p[i] << " n=" << n;
        }
    // Dense sweep over the range where the activations are not trivially 0 or x.
    std::vector<float> xs;
    for (double v = -30.0; v <= 30.0; v += 1.0 / 1024.0) xs.push_back(static_cast<float>(v));
    auto f = xs, r = xs;
    fast(f.data(), static_cast<std::int64_t>(f.size()));
    ref(r.data(), static_cast<std::int64_t>(r.size()));
    for (std::size_t i = 0; i < xs.size(); ++i)
        ASSERT_NEAR(f[i], r[i], 6e-7 * std::fabs(r[i]) + 1e-9 * std::fabs(xs[i])) << what << " x=" << xs[i];
}

TEST(Ops, GeluMatchesTanhFormula) {
    check_activation([](float* x, std::int64_t n) { K::gelu(x, n); }, [](float* x, std::int64_t n) { K::ref::gelu(x, n); }, "gelu");
    std::vector<float> s = {0.0f, k_inf, -k_inf, 1e20f, -1e20f};
    K::gelu(s.data(), 5);
    EXPECT_EQ(s[0], 0.0f);
    EXPECT_EQ(s[1], k_inf);
    EXPECT_EQ(s[3], 1e20f);
    EXPECT_EQ(s[4], 0.0f);
}

// The table form used for GPT-2 against its scalar definition (no table): every finite fp16
// value as input, then random floats in [-12, 12] (both sides of the saturation) in lengths
// that leave vector tails. The two must agree bit for bit.
TEST(Ops, GeluFp16TableMatchesDefinition) {
    std::vector<float> xs;
    for (std::uint32_t h = 0; h < 65536; ++h)
        if ((h & 0x7c00u) != 0x7c00u) xs.push_back(fp16_to_fp32(static_cast<std::uint16_t>(h)));
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-12.0f, 12.0f);
    for (int i = 0; i < 10007; ++i) xs.push_back(u(rng));
    std::vector<float> y = xs;
    K::gelu_fp16_table(y.data(), static_cast<std::int64_t>(y.size()));
    for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(y[i], K::gelu_fp16_reference(xs[i])) << "x=" << xs[i];
    for (std::int64_t n : {1, 7, 17, 255, 257}) {
        std::vector<float> z(xs.end() - n, xs.end());
        K::gelu_fp16_table(z.data(), n);
        for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(z[static_cast<std::size_t>(i)], K::gelu_fp16_reference(xs[xs.size() - static_cast<std::size_t>(n - i)]));
    }
}

TEST(Ops, SiluMatchesReference) {
    check_activation([](float* x, std::int64_t n) { K::silu(x, n); }, [](float* x, std::int64_t n) { K::ref::silu(x, n); }, "silu");
}

TEST(Ops, SwigluMatchesReference) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            buf g(n, off, 13u, -10.0f, 10.0f), u(n, off, 14u, -3.0f, 3.0f);
            std::vector<float> f(static_cast<std::size_t>(n)), r(f.size());
            K::swiglu(f.data(), g.p, u.p, n);
            K::ref::swiglu(r.data(), g.p, u.p, n);
            for (std::int64_t i = 0; i < n; ++i) ASSERT_NEAR(f[i], r[i], 8e-7 * std::fabs(r[i]) + 1e-12) << "n=" << n;
            auto alias_g = g.copy(n);
            K::swiglu(alias_g.data(), alias_g.data(), u.p, n);
            EXPECT_EQ(alias_g, f);
            auto alias_u = u.copy(n);
            K::swiglu(alias_u.data(), g.p, alias_u.data(), n);
            EXPECT_EQ(alias_u, f);
        }
}

TEST(Ops, ArgmaxMatchesReferenceAndHandlesTiesAndNaN) {
    for (auto n : k_sizes)
        for (int off = 0; off < 2; ++off) {
            buf x(n, off, 15u);
            EXPECT_EQ(K::argmax(x.p, n), K::ref::argmax(x.p, n));
        }
    std::vector<float> ties = {1.0f, 5.0f, 2.0f, 5.0f, 5.0f};
    EXPECT_EQ(K::argmax(ties.data(), 5), 1);
    std::vector<float> nans(40, 0.0f);
    nans[0] = k_nan;
    nans[3] = 2.0f;
    nans[17] = k_nan;
    nans[33] = 2.0f;
    EXPECT_EQ(K::argmax(nans.data(), 40), 3);
    EXPECT_EQ(K::ref::argmax(nans.data(), 40), 3);
    std::vector<float> all_nan(20, k_nan);
    EXPECT_EQ(K::argmax(all_nan.data(), 20), 0);
    std::vector<float> neg = {-k_inf, -3.0f, -k_inf};
    EXPECT_EQ(K::argmax(neg.data(), 3), 1);
    std::vector<float> all_ninf(18, -k_inf);
    EXPECT_EQ(K::argmax(all_ninf.data(), 18), 0);
    std::vector<float> last(4097, -1.0f);
    last[4096] = 0.5f;  // in the tail after the last whole batch
    EXPECT_EQ(K::argmax(last.data(), 4097), 4096);
}

TEST(Ops, RejectsBadArguments) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
    EXPECT_THROW(K::dot(x, x, -1), shape_error);
    EXPECT_THROW(K::dot(nullptr, x, 4), error);
    EXPECT_THROW(K::axpy(1.0f, x, nullptr, 4), error);
    EXPECT_THROW(K::scale(nullptr, 1.0f, 2), error);
    EXPECT_THROW(K::add(x, x, nullptr, 4), error);
    EXPECT_THROW(K::rmsnorm(x, x, w, 0, 1e-5f), shape_error);
    EXPECT_THROW(K::rmsnorm(x, x, nullptr, 4, 1e-5f), error);
    EXPECT_THROW(K::rmsnorm(x, x, w, 4, -1.0f), error);
    EXPECT_THROW(K::layernorm(x, x, w, nullptr, 4, k_nan), error);
    EXPECT_THROW(K::layernorm(x, nullptr, w, nullptr, 4, 1e-5f), error);
    EXPECT_THROW(K::softmax(x, -3), shape_error);
    EXPECT_THROW(K::gelu(nullptr, 1), error);
    EXPECT_THROW(K::silu(x, -1), shape_error);
    EXPECT_THROW(K::swiglu(x, nullptr, x, 4), error);
    EXPECT_THROW(K::argmax(x, 0), shape_error);
    EXPECT_THROW(K::argmax(nullptr, 3), error);
    EXPECT_THROW(K::ref::rmsnorm(x, x, w, 0, 1e-5f), shape_error);
    try {
        K::softmax(nullptr, 5);
        FAIL() << "no exception";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("softmax"), std::string::npos) << e.what();
    }
}

// ---- RoPE ---------------------------------------------------------------------------------

TEST(Rope, PositionZeroIsIdentity) {
    for (auto layout : {K::rope_layout::adjacent_pairs, K::rope_layout::neox}) {
        buf x(3 * 64, 0, 16u);
        auto y = x.copy(3 * 64);
        K::rope(y.data(), 3, 64, 64, 0, 10000.0f, layout);
        EXPECT_EQ(y, x.copy(3 * 64));
    }
}

TEST(Rope, HandComputedRotations) {
    // One pair rotated by theta = pos = 1 rad: (1, 0) -> (cos 1, sin 1), (0, 1) -> (-sin 1, cos 1).
    float v[4] = {1.0f, 0.0f, 0.0f, 1.0f};  // two heads of dimension 2
    K::rope(v, 2, 2, 2, 1, 10000.0f, K::rope_layout::adjacent_pairs);
    EXPECT_NEAR(v[0], 0.5403023059, 1e-7);
    EXPECT_NEAR(v[1], 0.8414709848, 1e-7);
    EXPECT_NEAR(v[2], -0.8414709848, 1e-7);
    EXPECT_NEAR(v[3], 0.5403023059, 1e-7);
    // head_dim 4, base 10000, pos 2: pair 0 turns by 2 rad, pair 1 by 2 * 10000^(-1/2) = 0.02 rad.
    const double c2 = -0.4161468365471424, s2 = 0.9092974268256817, c02 = 0.9998000066665778, s02 = 0.0199986666933331;
    float a[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    K::rope(a, 1, 4, 4, 2, 10000.0f, K::rope_layout::adjacent_pairs);  // pairs (0,1), (2,3)
    EXPECT_NEAR(a[0], 1 * c2 - 2 * s2, 1e-6);
    EXPECT_NEAR(a[1], 1 * s2 + 2 * c2, 1e-6);
    EXPECT_NEAR(a[2], 3 * c02 - 4 * s02, 1e-6);
    EXPECT_NEAR(a[3], 3 * s02 + 4 * c02, 1e-6);
    float n[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    K::rope(n, 1, 4, 4, 2, 10000.0f, K::rope_layout::neox);  // pairs (0,2), (1,3)
    EXPECT_NEAR(n[0], 1 * c2 - 3 * s2, 1e-6);
    EXPECT_NEAR(n[2], 1 * s2 + 3 * c2, 1e-6);
    EXPECT_NEAR(n[1], 2 * c02 - 4 * s02, 1e-6);
    EXPECT_NEAR(n[3], 2 * s02 + 4 * c02, 1e-6);
    // Partial rotation: dims past n_rot are untouched.
    float p[6] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    K::rope(p, 1, 6, 2, 1, 10000.0f, K::rope_layout::neox);
    EXPECT_NEAR(p[0], 1 * 0.5403023059 - 2 * 0.8414709848, 1e-6);
    EXPECT_EQ(p[2], 3.0f);
    EXPECT_EQ(p[5], 6.0f);
}

TEST(Rope, MatchesReferenceBothLayouts) {
    struct shape { std::int64_t n_heads, head_dim, n_rot; };
    const shape shapes[] = {{8, 64, 64}, {4, 128, 128}, {3, 80, 80}, {2, 64, 32}, {5, 6, 6}, {2, 256, 200}, {1, 2, 2}};
    const std::int64_t positions[] = {0, 1, 17, 511, 4095, 100000, -7};
    for (auto layout : {K::rope_layout::adjacent_pairs, K::rope_layout::neox})
        for (const auto& s : shapes)
            for (auto pos : positions) {
                const std::int64_t n = s.n_heads * s.head_dim;
                buf x(n, 1, static_cast<unsigned>(n + pos));
                auto fast = x.copy(n), ref = x.copy(n);
                K::rope(fast.data(), s.n_heads, s.head_dim, s.n_rot, pos, 10000.0f, layout);
                K::ref::rope(ref.data(), s.n_heads, s.head_dim, s.n_rot, pos, 10000.0f, layout);
                for (std::int64_t i = 0; i < n; ++i)
                    ASSERT_NEAR(fast[i], ref[i], 4e-7) << "head_dim=" << s.head_dim << " pos=" << pos << " i=" << i;
            }
}

TEST(Rope, NegativePositionUndoesRotation) {
    for (auto layout : {K::rope_layout::adjacent_pairs, K::rope_layout::neox}) {
        buf x(4 * 128, 0, 17u);
        auto y = x.copy(4 * 128);
        K::rope(y.data(), 4, 128, 128, 1234, 500000.0f, layout);
        K::rope(y.data(), 4, 128, 128, -1234, 500000.0f, layout);
        for (std::size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], x.p[i], 1e-6);
    }
}

TEST(Rope, RejectsBadArguments) {
    float x[8] = {};
    EXPECT_THROW(K::rope(x, 1, 8, 7, 0, 10000.0f, K::rope_layout::neox), shape_error);  // odd n_rot
    EXPECT_THROW(K::rope(x, 1, 8, 10, 0, 10000.0f, K::rope_layout::neox), shape_error); // n_rot > head_dim
    EXPECT_THROW(K::rope(x, 1, 0, 0, 0, 10000.0f, K::rope_layout::neox), shape_error);
    EXPECT_THROW(K::rope(x, -1, 8, 8, 0, 10000.0f, K::rope_layout::neox), shape_error);
    EXPECT_THROW(K::rope(x, 1, 8, 8, 0, 0.0f, K::rope_layout::neox), error);
    EXPECT_THROW(K::rope(x, 1, 8, 8, 0, k_inf, K::rope_layout::adjacent_pairs), error);
    EXPECT_THROW(K::rope(nullptr, 1, 8, 8, 0, 10000.0f, K::rope_layout::adjacent_pairs), error);
    EXPECT_THROW(K::rope(x, 1, 8, 8, 0, 10000.0f, static_cast<K::rope_layout>(7)), error);
}

}  // namespace

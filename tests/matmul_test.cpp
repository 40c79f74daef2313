// Tests of kernels::matmul / gemv against the double-precision reference, for every dtype.
//
// Error budgets (u = 2^-24, the f32 unit roundoff; ŵ = W as decoded by dequantize_row):
// - f32/f16/bf16 W: only summation error. Any order of n_in float multiply-adds plus the
//   final rounding stays within (n_in + 8) u · M with M = Σ|ŵ_i x_i| (Higham's γ_n bound).
// - Quantised W on the few-token path: the activations are rounded to x̂ = q·d per block
//   of 32 (Q8_0/Q4_0) or 256 (K-quants) with d = max|x_block| / 127, so |x_i - x̂_i| <= d/2
//   and the product moves by at most Σ_blocks (d/2) Σ_{i in block} |ŵ_i|. The integer sums
//   are exact; the float work left (one scale product per block and the sum of n_blocks
//   terms) adds at most 4 (n_blocks + 16) u · Σ(|ŵ_i| + c_i)|x̂_i|, c_i = the block's largest
//   |ŵ| (covers Q4_K's min term, summed apart from the scale term).
// The tests check the public entry points against the plain reference with the first or
// the sum of both budgets, and the integer kernels (fast and scalar twin, per-row and packed)
// against a double reference that uses the same quantised activations, with the tight float
// budget only.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "minigpt/kernels/matmul.hpp"
#include "test_data.hpp"

using namespace minigpt;
namespace K = minigpt::kernels;
using minigpt::test::gaussian;

namespace {

constexpr double u = 0x1p-24;

tensor random_weights(dtype t, std::int64_t n_out, std::int64_t n_in, unsigned seed) {
    tensor w = tensor::empty(t, {n_out, n_in});
    const auto src = gaussian(static_cast<std::size_t>(n_out * n_in), seed);
    for (std::int64_t r = 0; r < n_out; ++r) quant::quantize_row(t, src.data() + r * n_in, w.row_ptr(r), n_in);
    return w;
}

std::vector<float> decoded(const tensor& w) {
    const std::int64_t n_out = w.dim(0), n_in = w.dim(1);
    std::vector<float> out(static_cast<std::size_t>(n_out * n_in));
    for (std::int64_t r = 0; r < n_out; ++r) quant::dequantize_row(w.type(), w.row_ptr(r), out.data() + r * n_in, n_in);
    return out;
}

std::int64_t act_block(dtype t) { return block_size(t) == 256 ? 256 : 32; }

struct budget {
    double act;    // activation rounding
    double dots;   // float summation on the integer path
    double plain;  // float summation on an f32 path
};

// Budgets for output (t, r) from the decoded weights.
budget budget_for(dtype t, const std::vector<float>& wd, const float* x, std::int64_t n_in, std::int64_t r) {
    budget b{0, 0, 0};
    const float* w = wd.data() + r * n_in;
    double m_plain = 0;
    for (std::int64_t i = 0; i < n_in; ++i) m_plain += std::fabs(static_cast<double>(w[i]) * x[i]);
    b.plain = (static_cast<double>(n_in) + 8) * u * m_plain;
    if (!is_quantized(t)) return b;
    const std::int64_t bs = act_block(t);
    double m_dots = 0;
    for (std::int64_t b0 = 0; b0 < n_in; b0 += bs) {
        double amax = 0, wsum = 0, wmax = 0;
        for (std::int64_t i = b0; i < b0 + bs; ++i) {
            amax = std::max(amax, static_cast<double>(std::fabs(x[i])));
            wsum += std::fabs(w[i]);
            wmax = std::max(wmax, static_cast<double>(std::fabs(w[i])));
        }
        const double d = amax / 127;
        b.act += d / 2 * (1 + 1e-5) * wsum;
        for (std::int64_t i = b0; i < b0 + bs; ++i) m_dots += (std::fabs(w[i]) + wmax) * (std::fabs(x[i]) + d);
    }
    b.dots = 4 * (static_cast<double>(n_in / 32) + 16) * u * m_dots;
    return b;
}

// x̂: the activations exactly as the integer kernels see them.
std::vector<float> quantised_activations(dtype t, const std::vector<float>& x, std::int64_t n_in) {
    std::vector<float> out(x.size());
    const std::int64_t n_tokens = static_cast<std::int64_t>(x.size()) / n_in;
    for (std::int64_t tok = 0; tok < n_tokens; ++tok) {
        const float* xt = x.data() + tok * n_in;
        float* ot = out.data() + tok * n_in;
        if (act_block(t) == 32) {
            std::vector<quant::act_q8_32> a(static_cast<std::size_t>(n_in / 32));
            quant::ref::quantize_act_32(xt, a.data(), n_in);
            for (std::int64_t i = 0; i < n_in; ++i) ot[i] = a[static_cast<std::size_t>(i / 32)].qs[i % 32] * a[static_cast<std::size_t>(i / 32)].d;
        } else {
            std::vector<quant::act_q8_256> a(static_cast<std::size_t>(n_in / 256));
            quant::ref::quantize_act_256(xt, a.data(), n_in);
            for (std::int64_t i = 0; i < n_in; ++i) ot[i] = a[static_cast<std::size_t>(i / 256)].qs[i % 256] * a[static_cast<std::size_t>(i / 256)].d;
        }
    }
    return out;
}

struct matmul_case {
    dtype type;
    std::int64_t n_out, n_in, n_tokens;
};

std::string name(const matmul_case& c) {
    return std::string(dtype_name(c.type)) + " n_out=" + std::to_string(c.n_out) + " n_in=" + std::to_string(c.n_in) +
           " n_tokens=" + std::to_string(c.n_tokens);
}

// Runs the public matmul, the few-token path and the GEMM path on one case.
void check_case(const matmul_case& c) {
    SCOPED_TRACE(name(c));
    const tensor w = random_weights(c.type, c.n_out, c.n_in, static_cast<unsigned>(c.n_out * 7 + c.n_in));
    const auto wd = decoded(w);
    const auto x = gaussian(static_cast<std::size_t>(c.n_tokens * c.n_in), static_cast<unsigned>(c.n_tokens + 99));
    const std::size_t n_y = static_cast<std::size_t>(c.n_tokens * c.n_out);
    std::vector<float> ref(n_y), y(n_y, NAN), y_dots(n_y, NAN), y_gemm(n_y, NAN), y1(n_y, NAN);
    K::matmul_reference(w, x.data(), ref.data(), c.n_tokens);
    K::matmul(w, x.data(), y.data(), c.n_tokens, 2);
    K::matmul(w, x.data(), y1.data(), c.n_tokens, 1);
    K::detail::matmul_dots(w, x.data(), y_dots.data(), c.n_tokens, 2);
    K::detail::matmul_gemm(w, x.data(), y_gemm.data(), c.n_tokens, 2);
    // The packed (row-interleaved) integer kernels, forced on so that the scalar fallback is covered
    // on machines without AVX-512 VNNI too; for other types packed_matrix passes the tensor through.
    std::vector<float> y_packed(n_y, NAN), y_packed1(n_y, NAN);
    const K::packed_matrix packed(w, K::pack_policy::always);
    EXPECT_EQ(packed.is_packed(), quant::has_packed_layout(c.type));
    K::matmul(packed, x.data(), y_packed.data(), c.n_tokens, 2);
    K::matmul(packed, x.data(), y_packed1.data(), c.n_tokens, 1);
    // The reference on the quantised activations, for the tight check of the integer kernels.
    std::vector<float> ref_q(n_y);
    if (is_quantized(c.type)) {
        const auto xq = quantised_activations(c.type, x, c.n_in);
        for (std::int64_t t = 0; t < c.n_tokens; ++t)
            for (std::int64_t r = 0; r < c.n_out; ++r) {
                double s = 0;
                for (std::int64_t i = 0; i < c.n_in; ++i) s += static_cast<double>(wd[static_cast<std::size_t>(r * c.n_in + i)]) * xq[static_cast<std::size_t>(t * c.n_in + i)];
                ref_q[static_cast<std::size_t>(t * c.n_out + r)] = static_cast<float>(s);
            }
    }
    int failures = 0;
    for (std::int64_t t = 0; t < c.n_tokens && failures < 5; ++t) {
        for (std::int64_t r = 0; r < c.n_out && failures < 5; ++r) {
            const std::size_t k = static_cast<std::size_t>(t * c.n_out + r);
            const budget b = budget_for(c.type, wd, x.data() + t * c.n_in, c.n_in, r);
            const double any_path = b.act + b.dots + b.plain;
            const std::string where = "token " + std::to_string(t) + " row " + std::to_string(r);
            if (std::fabs(y[k] - ref[k]) > any_path) ++failures, ADD_FAILURE() << where << ": matmul " << y[k] << " vs " << ref[k];
            if (y1[k] != y[k]) ++failures, ADD_FAILURE() << where << ": 1 thread " << y1[k] << " vs 2 threads " << y[k];
            if (std::fabs(y_gemm[k] - ref[k]) > b.plain) ++failures, ADD_FAILURE() << where << ": gemm " << y_gemm[k] << " vs " << ref[k];
            if (y_packed1[k] != y_packed[k])
                ++failures, ADD_FAILURE() << where << ": packed 1 thread " << y_packed1[k] << " vs 2 threads " << y_packed[k];
            if (!quant::has_packed_layout(c.type) && y_packed[k] != y[k])
                ++failures, ADD_FAILURE() << where << ": unpacked packed_matrix " << y_packed[k] << " vs matmul " << y[k];
            if (quant::has_packed_layout(c.type) && std::fabs(y_packed[k] - ref_q[k]) > b.dots)
                ++failures, ADD_FAILURE() << where << ": packed " << y_packed[k] << " vs quantised-activation reference " << ref_q[k];
            if (is_quantized(c.type)) {
                if (std::fabs(y_dots[k] - ref_q[k]) > b.dots)
                    ++failures, ADD_FAILURE() << where << ": dots " << y_dots[k] << " vs quantised-activation reference " << ref_q[k];
                if (std::fabs(ref_q[k] - ref[k]) > b.act + 1e-6)
                    ++failures, ADD_FAILURE() << where << ": activation bound violated by the reference itself";
            } else if (std::fabs(y_dots[k] - ref[k]) > b.plain) {
                ++failures, ADD_FAILURE() << where << ": dots " << y_dots[k] << " vs " << ref[k];
            }
        }
    }
}

}  // namespace

TEST(Matmul, FloatTypesAllShapes) {
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16})
        for (std::int64_t n_in : {32, 45, 256, 4352})
            for (std::int64_t n_out : {1, 7, 33})
                for (std::int64_t n_tokens : {1, 3, 17, 64}) check_case({t, n_out, n_in, n_tokens});
}

// The float row kernels in both compilations (kernels/matmul_dot_float.inl): the build's own xsimd
// one and the AVX-512 twin that a build without AVX-512 flags picks at run time on a CPU with it
// (tests/baseline_dispatch_test.cpp checks that choice in such a build). R = 1 and 4 rows, row
// lengths with and without vector tails, against the double reference with the float budget.
TEST(Matmul, FloatRowKernelsBothCompilations) {
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16})
        for (std::int64_t n_in : {1, 15, 16, 100, 191, 192, 200, 768, 4352}) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " n_in=" + std::to_string(n_in));
            const tensor w = random_weights(t, 4, n_in, static_cast<unsigned>(n_in + 3));
            const auto wd = decoded(w);
            const auto x = gaussian(static_cast<std::size_t>(n_in), static_cast<unsigned>(n_in + 4));
            // kernel<R>: dot_float_rows<K, R>; range: dot_float_row_range<K> (decode, with the first
            // vectors of x held in registers across rows: 192 floats where it holds 24 vectors of 8).
            auto check = [&](const char* which, auto kernel, auto range) {
                float one[4], four[4], ranged[4];
                for (int r = 0; r < 4; ++r) kernel.template operator()<1>(w.raw() + r * w.stride_bytes(0), w.stride_bytes(0), x.data(), n_in, one + r);
                kernel.template operator()<4>(w.raw(), w.stride_bytes(0), x.data(), n_in, four);
                range(w.raw(), w.stride_bytes(0), x.data(), n_in, ranged, 4);
                for (int r = 0; r < 4; ++r) {
                    double ref = 0;
                    for (std::int64_t i = 0; i < n_in; ++i) ref += static_cast<double>(wd[static_cast<std::size_t>(r * n_in + i)]) * x[static_cast<std::size_t>(i)];
                    const double tol = budget_for(t, wd, x.data(), n_in, r).plain;
                    EXPECT_NEAR(one[r], ref, tol) << which << " R=1 row " << r;
                    EXPECT_EQ(four[r], one[r]) << which << ": a row's sum must not depend on R";
                    EXPECT_EQ(ranged[r], one[r]) << which << ": the one-token range kernel must sum as R=1 does";
                }
            };
            auto run = [&]<K::detail::float_kind FK>() {
                check("native", []<int R>(const std::byte* p, std::int64_t st, const float* xx, std::int64_t n, float* out) {
                    K::detail::native::dot_float_rows<FK, R>(p, st, xx, n, out);
                }, [](const std::byte* p, std::int64_t st, const float* xx, std::int64_t n, float* out, std::int64_t rows) {
                    K::detail::native::dot_float_row_range<FK>(p, st, xx, n, out, rows);
                });
#if defined(MINIGPT_AVX512F_DISPATCH)
                if (simd::avx512f::supported())
                    check("avx512", []<int R>(const std::byte* p, std::int64_t st, const float* xx, std::int64_t n, float* out) {
                        K::detail::avx512::dot_float_rows<FK, R>(p, st, xx, n, out);
                    }, [](const std::byte* p, std::int64_t st, const float* xx, std::int64_t n, float* out, std::int64_t rows) {
                        K::detail::avx512::dot_float_row_range<FK>(p, st, xx, n, out, rows);
                    });
#endif
            };
            if (t == dtype::f32) run.template operator()<K::detail::float_kind::f32>();
            else if (t == dtype::f16) run.template operator()<K::detail::float_kind::f16>();
            else run.template operator()<K::detail::float_kind::bf16>();
        }
#if defined(MINIGPT_AVX512F_DISPATCH)
    if (!simd::avx512f::supported()) GTEST_SKIP() << "checked the xsimd kernels only: this CPU has no AVX-512";
#endif
}

// The few-token float path (dot_float_tokens, 2 to 11 tokens split into groups of at most 6): every
// token's output equals, bit for bit, what a one-token matmul gives for that token alone (speculative
// decoding verifies drafts in such batches and must reproduce the target's greedy choice exactly), and
// is within the float budget of the double reference. Several threads, rows split unevenly.
TEST(Matmul, FloatFewTokensEqualOneTokenAtATime) {
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16})
        for (std::int64_t n_in : {15, 200, 768}) {
            const std::int64_t n_out = 37;
            const tensor w = random_weights(t, n_out, n_in, static_cast<unsigned>(n_in + 11));
            const auto wd = decoded(w);
            for (std::int64_t n_tokens = 2; n_tokens < K::detail::gemm_min_tokens(t); ++n_tokens) {
                SCOPED_TRACE(std::string(dtype_name(t)) + " n_in=" + std::to_string(n_in) + " tokens=" + std::to_string(n_tokens));
                const auto x = gaussian(static_cast<std::size_t>(n_in * n_tokens), static_cast<unsigned>(n_tokens));
                std::vector<float> y(static_cast<std::size_t>(n_out * n_tokens)), one(static_cast<std::size_t>(n_out));
                K::matmul(w, x.data(), y.data(), n_tokens, 2);
                for (std::int64_t k = 0; k < n_tokens; ++k) {
                    K::matmul(w, x.data() + k * n_in, one.data(), 1, 1);
                    for (std::int64_t r = 0; r < n_out; ++r) {
                        ASSERT_EQ(y[static_cast<std::size_t>(k * n_out + r)], one[static_cast<std::size_t>(r)]) << "token " << k << " row " << r;
                        double ref = 0;
                        for (std::int64_t i = 0; i < n_in; ++i)
                            ref += static_cast<double>(wd[static_cast<std::size_t>(r * n_in + i)]) * x[static_cast<std::size_t>(k * n_in + i)];
                        EXPECT_NEAR(one[static_cast<std::size_t>(r)], ref, budget_for(t, wd, x.data() + k * n_in, n_in, r).plain);
                    }
                }
            }
        }
}

// The GEMM micro-kernel in both compilations (kernels/matmul_gemm_micro.inl), every tile shape up to
// 4 tokens x 4 rows, k with and without a vector tail, against the double reference.
TEST(Matmul, GemmMicroKernelBothCompilations) {
    for (std::int64_t k : {16, 1000}) {
        const std::int64_t ldx = k + 3, ldw = k + 5, ldc = 7;
        const auto x = gaussian(static_cast<std::size_t>(4 * ldx), 21), w = gaussian(static_cast<std::size_t>(4 * ldw), 22);
        auto check = [&](const char* which, auto micro) {
            for (int mt = 1; mt <= 4; ++mt)
                for (int nr = 1; nr <= 4; ++nr) {
                    std::vector<float> c(static_cast<std::size_t>(4 * ldc), 1.0f);  // the kernel adds to c
                    micro(mt, nr, x.data(), ldx, w.data(), ldw, k, c.data(), ldc);
                    for (int t = 0; t < mt; ++t)
                        for (int r = 0; r < nr; ++r) {
                            double ref = 1, mag = 1;
                            for (std::int64_t i = 0; i < k; ++i) {
                                const double p = static_cast<double>(x[static_cast<std::size_t>(t * ldx + i)]) * w[static_cast<std::size_t>(r * ldw + i)];
                                ref += p;
                                mag += std::fabs(p);
                            }
                            EXPECT_NEAR(c[static_cast<std::size_t>(t * ldc + r)], ref, (static_cast<double>(k) + 8) * u * mag)
                                << which << " k=" << k << " mt=" << mt << " nr=" << nr << " t=" << t << " r=" << r;
                        }
                    EXPECT_EQ(c[static_cast<std::size_t>(3 * ldc + 6)], 1.0f) << which << ": wrote outside the tile";
                }
        };
        check("native", [](auto... a) { K::detail::native::gemm_micro_any(a...); });
#if defined(MINIGPT_AVX512F_DISPATCH)
        if (simd::avx512f::supported()) check("avx512", [](auto... a) { K::detail::avx512::gemm_micro_any(a...); });
#endif
    }
}

// A token's row of a GEMM does not depend on where in the batch it sits: every tile shape (4 x 4, and
// the 3-, 2- and 1-token edges) reduces each accumulator in the same order. On AVX2 the accumulators
// of a 3 x 4 edge tile were summed eight at a time and the last four one by one, with two different
// addition trees, so the same prompt token got logits a rounding apart depending on the sequences
// batched with it (and seeded sampling then drew different tokens). Both compilations of the kernel.
TEST(Matmul, GemmRowsDoNotDependOnTheirPlaceInTheBatch) {
    for (dtype t : {dtype::f32, dtype::f16}) {
        const std::int64_t n_out = 29, n_in = 200, n_tokens = 19;  // 19 = 4 x 4 + 3
        ASSERT_GE(n_tokens - 5, K::detail::gemm_min_tokens(t));   // every batch below takes the GEMM
        const tensor w = random_weights(t, n_out, n_in, 31);
        const auto x = gaussian(static_cast<std::size_t>(n_in * n_tokens), 32);
        std::vector<float> all(static_cast<std::size_t>(n_out * n_tokens));
        K::matmul(w, x.data(), all.data(), n_tokens, 1);
        for (std::int64_t skip = 1; skip <= 5; ++skip) {  // the same tokens shifted by 1..5 places in their tiles
            const std::int64_t n = n_tokens - skip;
            std::vector<float> part(static_cast<std::size_t>(n_out * n));
            K::matmul(w, x.data() + skip * n_in, part.data(), n, 1);
            for (std::int64_t k = 0; k < n; ++k)
                for (std::int64_t r = 0; r < n_out; ++r)
                    ASSERT_EQ(part[static_cast<std::size_t>(k * n_out + r)], all[static_cast<std::size_t>((k + skip) * n_out + r)])
                        << dtype_name(t) << " skip " << skip << " token " << k << " row " << r;
        }
    }
    // The reduction itself: eight at a time and one by one agree.
    std::vector<simd::f32_batch> v;
    for (int i = 0; i < 11; ++i) {
        const auto lanes = gaussian(simd::f32_lanes, static_cast<unsigned>(40 + i), 1e3f);
        v.push_back(simd::f32_batch::load_unaligned(lanes.data()));
    }
    float grouped[11], alone[1];
    simd::reduce_add_each(v.data(), 11, grouped);
    for (int i = 0; i < 11; ++i) {
        simd::reduce_add_each(v.data() + i, 1, alone);
        EXPECT_EQ(grouped[i], alone[0]) << "accumulator " << i;
    }
}

// Every token of each batch size in `counts` gets from matmul(w) exactly what it gets alone.
template <class Weights>
void expect_tokens_equal_alone(const Weights& w, const std::vector<std::int64_t>& counts, unsigned seed) {
    const tensor& shape = [&]() -> const tensor& {
        if constexpr (std::is_same_v<Weights, tensor>) return w;
        else return w.source();
    }();
    const std::int64_t n_out = shape.dim(0), n_in = shape.dim(1);
    for (std::int64_t n_tokens : counts) {
        SCOPED_TRACE(std::string(dtype_name(w.type())) + " of " + std::to_string(n_tokens) + " tokens");
        const auto x = gaussian(static_cast<std::size_t>(n_in * n_tokens), seed + static_cast<unsigned>(n_tokens));
        std::vector<float> all(static_cast<std::size_t>(n_out * n_tokens)), one(static_cast<std::size_t>(n_out));
        K::matmul(w, x.data(), all.data(), n_tokens, 2);
        for (std::int64_t k = 0; k < n_tokens; ++k) {
            K::matmul(w, x.data() + k * n_in, one.data(), 1, 1);
            for (std::int64_t r = 0; r < n_out; ++r)
                ASSERT_EQ(all[static_cast<std::size_t>(k * n_out + r)], one[static_cast<std::size_t>(r)]) << "token " << k << " row " << r;
        }
    }
}

// Below the GEMM's hand-over every token of a batch gets exactly the sums it gets alone (one-token
// kernel): the several-token kernels (dot_tokens_avx2 on AVX2 machines, the row kernels run per
// token elsewhere) share the weights' loads, not the arithmetic. Batched decoding relies on it for
// seeded sampling to draw what a sequence decoded alone draws.
TEST(Matmul, FewTokenRowsEqualOneTokenAtATime) {
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_k}) {
        const std::int64_t n_out = 37, n_in = 512;
        const tensor w = random_weights(t, n_out, n_in, 51);
        // Q8_0 on AVX2 never hands over (gemm_min_tokens is the int64 maximum): also a prefill-sized
        // batch of 8-token groups in 32-row pieces, and one that splits 41 = 6 x 7 - 1 unevenly.
        std::vector<std::int64_t> counts;
        for (std::int64_t n = 2; n < std::min<std::int64_t>(K::detail::gemm_min_tokens(t), 20); ++n) counts.push_back(n);
        for (std::int64_t n : {41, 100})
            if (n < K::detail::gemm_min_tokens(t)) counts.push_back(n);
        expect_tokens_equal_alone(w, counts, 52);
    }
}

// The packed kernels the model uses for Q4_0 / Q8_0 (AVX-512 VNNI, AVX2 or the scalar twin, whichever
// this CPU runs) give a token the same sums whatever its batch: every tile shape (1-8 tokens, one or
// both 8-row halves, partial groups: 37 rows = 16 + 16 + 5) against one token at a time.
TEST(Matmul, PackedTokensEqualOneTokenAtATime) {
    for (dtype t : {dtype::q8_0, dtype::q4_0}) {
        const std::int64_t n_out = 37, n_in = 512;
        const K::packed_matrix w(random_weights(t, n_out, n_in, 61), K::pack_policy::always);
        ASSERT_TRUE(w.is_packed());
        expect_tokens_equal_alone(w, {2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 16, 19, 70, 100}, 62);
    }
}

// The vectorised packed kernels bit for bit against their definition, computed here from the
// original (unpacked) blocks: per block the exact int32 sum of q * x, then acc = fma(float(isum),
// scale_w * scale_x, acc) in block order. (The scalar twin is held to the reference's budget
// instead: whether it fuses that multiply-add is up to the compiler.)
TEST(Matmul, VectorPackedKernelsFollowTheirDefinition) {
    if (!K::detail::packed_kernels_vectorised()) GTEST_SKIP() << "no vectorised packed kernel on this CPU";
    for (dtype t : {dtype::q8_0, dtype::q4_0}) {
        const std::int64_t n_out = 29, n_in = 4352, nb = n_in / 32;
        const tensor src = random_weights(t, n_out, n_in, 71);
        const K::packed_matrix w(src, K::pack_policy::always);
        for (std::int64_t n_tokens : {1, 2, 5, 8}) {
            const auto x = gaussian(static_cast<std::size_t>(n_in * n_tokens), 72 + static_cast<unsigned>(n_tokens));
            std::vector<float> y(static_cast<std::size_t>(n_out * n_tokens), NAN);
            K::matmul(w, x.data(), y.data(), n_tokens, 2);
            for (std::int64_t k = 0; k < n_tokens; ++k) {
                std::vector<quant::act_q8_32> a(static_cast<std::size_t>(nb));
                quant::ref::quantize_act_32(x.data() + k * n_in, a.data(), n_in);
                for (std::int64_t r = 0; r < n_out; ++r) {
                    float acc = 0.0f;
                    for (std::int64_t b = 0; b < nb; ++b) {
                        std::int32_t isum = 0;
                        std::uint16_t d;
                        if (t == dtype::q8_0) {
                            const auto& blk = reinterpret_cast<const quant::block_q8_0*>(src.row_ptr(r))[b];
                            for (int j = 0; j < 32; ++j) isum += blk.qs[j] * a[static_cast<std::size_t>(b)].qs[j];
                            d = blk.d;
                        } else {
                            const auto& blk = reinterpret_cast<const quant::block_q4_0*>(src.row_ptr(r))[b];
                            for (int j = 0; j < 16; ++j)
                                isum += ((blk.qs[j] & 0x0f) - 8) * a[static_cast<std::size_t>(b)].qs[j] +
                                        ((blk.qs[j] >> 4) - 8) * a[static_cast<std::size_t>(b)].qs[j + 16];
                            d = blk.d;
                        }
                        const float scale = fp16_to_fp32(d) * a[static_cast<std::size_t>(b)].d;
                        acc = std::fma(static_cast<float>(isum), scale, acc);
                    }
                    ASSERT_EQ(y[static_cast<std::size_t>(k * n_out + r)], acc)
                        << dtype_name(t) << " of " << n_tokens << " tokens: token " << k << " row " << r;
                }
            }
        }
    }
}

TEST(Matmul, Block32TypesAllShapes) {
    // 70 tokens: more than one cache block of the packed kernels (64) and a partial register tile.
    for (dtype t : {dtype::q8_0, dtype::q4_0})
        for (std::int64_t n_in : {32, 256, 4352})
            for (std::int64_t n_out : {1, 7, 16, 33})
                for (std::int64_t n_tokens : {1, 3, 17, 64, 70}) check_case({t, n_out, n_in, n_tokens});
}

// The other 32-element types (Q4_1, Q5_0, Q5_1, IQ4_NL): row kernels and the GEMM path.
TEST(Matmul, MoreBlock32TypesAllShapes) {
    for (dtype t : {dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::iq4_nl})
        for (std::int64_t n_in : {32, 256, 960})
            for (std::int64_t n_out : {1, 7, 33})
                for (std::int64_t n_tokens : {1, 3, 17}) check_case({t, n_out, n_in, n_tokens});
}

TEST(Matmul, KQuantTypesAllShapes) {
    for (dtype t : {dtype::q4_k, dtype::q6_k, dtype::q2_k, dtype::q3_k, dtype::q5_k, dtype::iq4_xs})
        for (std::int64_t n_in : {256, 4352})
            for (std::int64_t n_out : {1, 7, 33})
                for (std::int64_t n_tokens : {1, 3, 17, 64}) check_case({t, n_out, n_in, n_tokens});
}

// Many rows: the threaded split (balanced pieces with a remainder: 4097 rows, 257 packed groups of
// which the last holds one row) and, at
// n_in = 4352, weights much larger than the caches (there only 1 and 9 tokens, to keep the double
// reference affordable; check_case runs both the dot-kernel and the GEMM path on each).
TEST(Matmul, ManyRowsEveryType) {
    for (dtype t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::q6_k}) {
        for (std::int64_t n_tokens : {1, 3, 17, 64}) check_case({t, 4097, 256, n_tokens});
        for (std::int64_t n_tokens : {1, 9}) check_case({t, 4097, 4352, n_tokens});
    }
}

TEST(Matmul, GemvMatchesMatmulOfOneToken) {
    const tensor w = random_weights(dtype::q4_0, 33, 256, 5);
    const auto x = gaussian(256, 6);
    std::vector<float> a(33), b(33);
    K::gemv(w, x.data(), a.data());
    K::matmul(w, x.data(), b.data(), 1);
    EXPECT_EQ(a, b);
}

// Hand-computed: W = [[1, 2, ..., 32], [-1, 0, 1, 0, ...]] against x = 1 / (i+1): row 0 gives 32.
TEST(Matmul, HandComputedF32) {
    tensor w = tensor::empty(dtype::f32, {2, 32});
    std::vector<float> x(32);
    for (int i = 0; i < 32; ++i) {
        w.row<float>(0)[i] = static_cast<float>(i + 1);
        x[static_cast<std::size_t>(i)] = 1.0f / static_cast<float>(i + 1);
    }
    w.row<float>(1)[0] = -1.0f;
    w.row<float>(1)[2] = 1.0f;
    float y[2];
    K::gemv(w, x.data(), y);
    EXPECT_NEAR(y[0], 32.0f, 32 * 40 * u);
    EXPECT_NEAR(y[1], -1.0f + 1.0f / 3.0f, 1e-6);
}

// The scalar twins (the portable fallback when simd/int8.hpp has no integer dot product),
// against the quantised-activation reference with the tight float budget.
TEST(Matmul, ScalarIntegerKernels) {
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::q6_k, dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::iq4_nl,
                    dtype::q2_k, dtype::q3_k, dtype::q5_k, dtype::iq4_xs}) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        const std::int64_t n_in = 4352;
        const tensor w = random_weights(t, 3, n_in, 11);
        const auto wd = decoded(w);
        const auto x = gaussian(static_cast<std::size_t>(n_in), 12);
        const auto xq = quantised_activations(t, x, n_in);
        std::vector<quant::act_q8_32> a32(static_cast<std::size_t>(n_in / 32));
        std::vector<quant::act_q8_256> a256(static_cast<std::size_t>(n_in / 256));
        quant::ref::quantize_act_32(x.data(), a32.data(), n_in);
        quant::ref::quantize_act_256(x.data(), a256.data(), n_in);
        for (std::int64_t r = 0; r < 3; ++r) {
            float got = 0;
            const void* row = w.row_ptr(r);
            switch (t) {
                case dtype::q8_0: got = K::detail::dot_q8_0_scalar(static_cast<const quant::block_q8_0*>(row), a32.data(), n_in / 32); break;
                case dtype::q4_0: got = K::detail::dot_q4_0_scalar(static_cast<const quant::block_q4_0*>(row), a32.data(), n_in / 32); break;
                case dtype::q4_k: got = K::detail::dot_q4_k_scalar(static_cast<const quant::block_q4_k*>(row), a256.data(), n_in / 256); break;
                case dtype::q4_1: got = K::detail::dot_q4_1_scalar(static_cast<const quant::block_q4_1*>(row), a32.data(), n_in / 32); break;
                case dtype::q5_0: got = K::detail::dot_q5_0_scalar(static_cast<const quant::block_q5_0*>(row), a32.data(), n_in / 32); break;
                case dtype::q5_1: got = K::detail::dot_q5_1_scalar(static_cast<const quant::block_q5_1*>(row), a32.data(), n_in / 32); break;
                case dtype::iq4_nl: got = K::detail::dot_iq4_nl_scalar(static_cast<const quant::block_iq4_nl*>(row), a32.data(), n_in / 32); break;
                case dtype::q2_k: got = K::detail::dot_q2_k_scalar(static_cast<const quant::block_q2_k*>(row), a256.data(), n_in / 256); break;
                case dtype::q3_k: got = K::detail::dot_q3_k_scalar(static_cast<const quant::block_q3_k*>(row), a256.data(), n_in / 256); break;
                case dtype::q5_k: got = K::detail::dot_q5_k_scalar(static_cast<const quant::block_q5_k*>(row), a256.data(), n_in / 256); break;
                case dtype::iq4_xs: got = K::detail::dot_iq4_xs_scalar(static_cast<const quant::block_iq4_xs*>(row), a256.data(), n_in / 256); break;
                default: got = K::detail::dot_q6_k_scalar(static_cast<const quant::block_q6_k*>(row), a256.data(), n_in / 256); break;
            }
            double want = 0;
            for (std::int64_t i = 0; i < n_in; ++i) want += static_cast<double>(wd[static_cast<std::size_t>(r * n_in + i)]) * xq[static_cast<std::size_t>(i)];
            EXPECT_LE(std::fabs(got - want), budget_for(t, wd, x.data(), n_in, r).dots) << "row " << r;
        }
    }
}

// The super-block row kernels on blocks of random bytes: every bit pattern of the packed scales
// (Q3_K's 6-bit scales split over two fields, Q2_K's scale / min nibbles), quants and high bits,
// which quantised Gaussian rows do not all reach. fp16 fields are set to random finite scales.
// One token (one row at a time) and three (four rows at a time), against the double reference on
// the quantised activations with the tight budget.
TEST(Matmul, SuperBlockRowKernelsOnRandomBlocks) {
    struct layout { dtype t; std::vector<std::size_t> fp16_at; };
    const layout cases[] = {{dtype::q2_k, {80, 82}}, {dtype::q3_k, {108}}, {dtype::q4_k, {0, 2}},
                            {dtype::q5_k, {0, 2}},   {dtype::q6_k, {208}}, {dtype::iq4_xs, {0}}};
    std::mt19937 rng(31);
    std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(dtype_name(c.t)));
        const std::int64_t n_out = 5, n_in = 2048, n_tokens = 3;
        tensor w = tensor::empty(c.t, {n_out, n_in});
        auto* bytes = reinterpret_cast<std::uint8_t*>(w.raw());
        for (std::int64_t i = 0; i < w.n_bytes(); ++i) bytes[i] = static_cast<std::uint8_t>(rng());
        for (std::int64_t off = 0; off < w.n_bytes(); off += static_cast<std::int64_t>(block_bytes(c.t)))
            for (std::size_t f : c.fp16_at) {
                const std::uint16_t h = fp32_to_fp16(scale(rng));
                std::memcpy(bytes + off + static_cast<std::int64_t>(f), &h, 2);
            }
        const auto wd = decoded(w);
        const auto x = gaussian(static_cast<std::size_t>(n_tokens * n_in), 32);
        const auto xq = quantised_activations(c.t, x, n_in);
        for (std::int64_t tokens : {std::int64_t{1}, n_tokens}) {
            std::vector<float> y(static_cast<std::size_t>(tokens * n_out), NAN);
            K::detail::matmul_dots(w, x.data(), y.data(), tokens, 1);
            for (std::int64_t t = 0; t < tokens; ++t)
                for (std::int64_t r = 0; r < n_out; ++r) {
                    double want = 0;
                    for (std::int64_t i = 0; i < n_in; ++i)
                        want += static_cast<double>(wd[static_cast<std::size_t>(r * n_in + i)]) * xq[static_cast<std::size_t>(t * n_in + i)];
                    EXPECT_LE(std::fabs(y[static_cast<std::size_t>(t * n_out + r)] - want), budget_for(c.t, wd, x.data() + t * n_in, n_in, r).dots)
                        << tokens << " tokens, token " << t << " row " << r;
                }
        }
    }
}

// The scalar twin of the packed kernels (the fallback without AVX-512 VNNI) on a partial group of
// 7 rows, against the quantised-activation reference with the tight float budget.
TEST(Matmul, ScalarPackedKernel) {
    for (dtype t : {dtype::q8_0, dtype::q4_0}) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        const std::int64_t n_in = 4352, n_out = 7;
        const tensor w = random_weights(t, n_out, n_in, 13);
        const auto wd = decoded(w);
        const auto x = gaussian(static_cast<std::size_t>(n_in), 14);
        const auto xq = quantised_activations(t, x, n_in);
        const K::packed_matrix p(w, K::pack_policy::always);
        ASSERT_TRUE(p.is_packed());
        std::vector<quant::act_q8_32_seeded> a(static_cast<std::size_t>(n_in / 32));
        K::detail::quantize_act_seeded(x.data(), a.data(), n_in, K::detail::packed_zero_point(t));
        float out[16];
        K::detail::packed_dot_scalar(p.layout(), p.packed_data(), 0, a.data(), out);
        for (std::int64_t r = 0; r < n_out; ++r) {
            double want = 0;
            for (std::int64_t i = 0; i < n_in; ++i) want += static_cast<double>(wd[static_cast<std::size_t>(r * n_in + i)]) * xq[static_cast<std::size_t>(i)];
            EXPECT_LE(std::fabs(out[r] - want), budget_for(t, wd, x.data(), n_in, r).dots) << "row " << r;
        }
        for (std::int64_t r = n_out; r < 16; ++r) EXPECT_EQ(out[r], 0.0f) << "padding row " << r;
    }
}

// Seeded activation blocks carry the reference bytes and -zero_point * sum(qs).
TEST(Matmul, SeededActivationsMatchReference) {
    const auto x = gaussian(256, 41);
    std::vector<quant::act_q8_32> ref(8);
    quant::ref::quantize_act_32(x.data(), ref.data(), 256);
    for (dtype t : {dtype::q8_0, dtype::q4_0}) {
        std::vector<quant::act_q8_32_seeded> a(8);
        K::detail::quantize_act_seeded(x.data(), a.data(), 256, K::detail::packed_zero_point(t));
        for (std::size_t b = 0; b < 8; ++b) {
            EXPECT_EQ(a[b].d, ref[b].d);
            EXPECT_EQ(a[b].seed, (t == dtype::q4_0 ? -8 : -128) * ref[b].sum);
            EXPECT_EQ(std::memcmp(a[b].qs, ref[b].qs, 32), 0);
        }
    }
}

TEST(Matmul, PackPolicies) {
    const tensor w = random_weights(dtype::q4_0, 20, 64, 3);
    EXPECT_FALSE(K::packed_matrix(w, K::pack_policy::never).is_packed());
    EXPECT_TRUE(K::packed_matrix(w, K::pack_policy::always).is_packed());
    EXPECT_EQ(K::packed_matrix(w).is_packed(), K::detail::packed_kernels_vectorised());
    EXPECT_FALSE(K::packed_matrix(random_weights(dtype::q6_k, 20, 256, 3), K::pack_policy::always).is_packed());
    EXPECT_THROW(K::packed_matrix(tensor{}), shape_error);
    EXPECT_THROW(K::packed_matrix(tensor::empty(dtype::q8_0, {2, 2, 64})), shape_error);
    const K::packed_matrix p(w, K::pack_policy::always);
    std::vector<float> x(64), y(20);
    EXPECT_THROW(K::matmul(p, nullptr, y.data(), 1), shape_error);
    EXPECT_THROW(K::matmul(p, x.data(), y.data(), -1), shape_error);
}

// The vector activation quantisers used by matmul give the reference quantisers' bytes, on
// random data, exact ties (x * 127/amax = k + 1/2) and an all-zero block.
TEST(Matmul, ActivationQuantisersMatchReference) {
    auto x = gaussian(1024, 31);
    for (std::size_t i = 0; i < 32; ++i) x[i] = static_cast<float>(static_cast<int>(i) - 16) + 0.5f;  // ties, amax 15.5
    x[40] = 127.0f;
    for (std::size_t i = 64; i < 96; ++i) x[i] = 0.0f;
    std::vector<quant::act_q8_32> fast32(32), ref32(32);
    K::detail::quantize_act_32(x.data(), fast32.data(), 1024);
    quant::ref::quantize_act_32(x.data(), ref32.data(), 1024);
    EXPECT_EQ(std::memcmp(fast32.data(), ref32.data(), sizeof(quant::act_q8_32) * 32), 0);
    // Near-ties under an inexact id = 127/100: x within a few ulps of (k + 1/2) / id, where rounding
    // the product x * id separately or fused into the rounding step would give different integers.
    std::vector<float> near(32 * 256);
    for (std::size_t b = 0; b < 256; ++b) {
        near[b * 32] = 100.0f;  // the block maximum
        for (std::size_t j = 1; j < 32; ++j) {
            float v = (static_cast<float>(static_cast<int>((b * 31 + j) % 200) - 100) + 0.5f) / 1.27f;
            for (std::size_t step = 0; step < (b + j) % 5; ++step) v = std::nextafter(v, 1e9f);
            near[b * 32 + j] = v;
        }
    }
    std::vector<quant::act_q8_32> near_fast(256), near_ref(256);
    K::detail::quantize_act_32(near.data(), near_fast.data(), 32 * 256);
    quant::ref::quantize_act_32(near.data(), near_ref.data(), 32 * 256);
    EXPECT_EQ(std::memcmp(near_fast.data(), near_ref.data(), sizeof(quant::act_q8_32) * 256), 0);

    std::vector<quant::act_q8_256> fast256(4), ref256(4);
    K::detail::quantize_act_256(x.data(), fast256.data(), 1024);
    quant::ref::quantize_act_256(x.data(), ref256.data(), 1024);
    EXPECT_EQ(std::memcmp(fast256.data(), ref256.data(), sizeof(quant::act_q8_256) * 4), 0);
}

// A view of rows [2, 9) of a larger matrix (non-zero offset into the storage).
TEST(Matmul, RowViewOfLargerTensor) {
    const tensor full = random_weights(dtype::q6_k, 12, 512, 21);
    const tensor part = full.rows(2, 9);
    const auto x = gaussian(512 * 5, 22);
    std::vector<float> y(7 * 5), y_full(12 * 5);
    K::matmul(part, x.data(), y.data(), 5);
    K::matmul(full, x.data(), y_full.data(), 5);
    for (int t = 0; t < 5; ++t)
        for (int r = 0; r < 7; ++r) EXPECT_EQ(y[static_cast<std::size_t>(t * 7 + r)], y_full[static_cast<std::size_t>(t * 12 + r + 2)]);
}

// matmul_shared gives exactly the separate matmul results (same kernels, same quantised activations),
// fused (all packed of one type, all of one float type) or not (mixed types), for row counts that
// end mid-group, one thread or two.
TEST(Matmul, SharedInputEqualsSeparateCalls) {
    const std::int64_t n_in = 320;
    for (auto types : {std::vector<dtype>{dtype::q4_0, dtype::q4_0, dtype::q4_0}, std::vector<dtype>{dtype::q8_0, dtype::q8_0},
                       std::vector<dtype>{dtype::f32, dtype::f32, dtype::f32}, std::vector<dtype>{dtype::f16, dtype::f16},
                       std::vector<dtype>{dtype::q8_0, dtype::f32, dtype::q6_k}})
        for (std::int64_t n_tokens : {1, 3, 70})
            for (int threads : {1, 2}) {
                SCOPED_TRACE(std::string(dtype_name(types[0])) + " n_tokens " + std::to_string(n_tokens) + " threads " + std::to_string(threads));
                const std::int64_t n_outs[] = {333, 7, 48};
                std::vector<K::packed_matrix> ws;
                for (std::size_t i = 0; i < types.size(); ++i)
                    ws.emplace_back(random_weights(types[i], n_outs[i], types[i] == dtype::q6_k ? 256 : n_in, 50 + static_cast<unsigned>(i)),
                                    K::pack_policy::always);
                if (types[2 % types.size()] == dtype::q6_k) {  // different widths are refused
                    std::vector<float> x(static_cast<std::size_t>(n_in * n_tokens)), y0(static_cast<std::size_t>(333 * n_tokens)),
                        y2(static_cast<std::size_t>(48 * n_tokens));
                    EXPECT_THROW(K::matmul_shared({{ws[0], y0.data()}, {ws[2], y2.data()}}, x.data(), n_tokens, threads), shape_error);
                    ws.pop_back();
                }
                const auto x = gaussian(static_cast<std::size_t>(n_in * n_tokens), 51);
                std::vector<std::vector<float>> sep, fused;
                for (const auto& w : ws) {
                    sep.emplace_back(static_cast<std::size_t>(w.n_out() * n_tokens), NAN);
                    fused.emplace_back(static_cast<std::size_t>(w.n_out() * n_tokens), NAN);
                    K::matmul(w, x.data(), sep.back().data(), n_tokens, threads);
                }
                if (ws.size() == 3)
                    K::matmul_shared({{ws[0], fused[0].data()}, {ws[1], fused[1].data()}, {ws[2], fused[2].data()}}, x.data(), n_tokens, threads);
                else
                    K::matmul_shared({{ws[0], fused[0].data()}, {ws[1], fused[1].data()}}, x.data(), n_tokens, threads);
                for (std::size_t i = 0; i < ws.size(); ++i) EXPECT_EQ(fused[i], sep[i]) << "target " << i;
            }
}

// parallel_for_balanced (core/threads.hpp), which splits the matmuls: every index exactly once, in
// ranges that start on chunk boundaries, whatever the thread count, chunk and rounding. (Here rather
// than in core_test.cpp because the matmul kernels are its users.)
TEST(Matmul, BalancedParallelForCoversEveryIndexOnce) {
    for (int threads : {1, 2, 3, 8, 20})
        for (std::int64_t n : {0, 1, 5, 64, 1000})
            for (std::int64_t chunk : {1, 3, 16, 2000}) {
                std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
                std::atomic<int> bad{0};
                parallel_for_balanced(n, threads, [&](std::int64_t b, std::int64_t e) {
                    if (b % chunk != 0 || b >= e || e > n) ++bad;
                    for (std::int64_t i = b; i < e; ++i) ++seen[static_cast<std::size_t>(i)];
                }, chunk);
                EXPECT_EQ(bad.load(), 0);
                for (std::int64_t i = 0; i < n; ++i)
                    ASSERT_EQ(seen[static_cast<std::size_t>(i)].load(), 1) << "n " << n << " chunk " << chunk << " threads " << threads << " index " << i;
            }
}

TEST(Matmul, ZeroSizes) {
    const tensor w = random_weights(dtype::f32, 4, 32, 1);
    std::vector<float> x(32, 1.0f), y(4, 7.0f);
    K::matmul(w, x.data(), y.data(), 0);
    EXPECT_EQ(y[0], 7.0f);
    K::matmul(w, nullptr, nullptr, 0);  // nothing to do, nothing dereferenced
}

TEST(Matmul, BadInputThrows) {
    const tensor w = random_weights(dtype::q8_0, 4, 64, 1);
    std::vector<float> x(64 * 2), y(8);
    EXPECT_THROW(K::matmul(w, nullptr, y.data(), 1), shape_error);
    EXPECT_THROW(K::matmul(w, x.data(), nullptr, 1), shape_error);
    EXPECT_THROW(K::gemv(w, nullptr, y.data()), shape_error);
    EXPECT_THROW(K::matmul(w, x.data(), y.data(), -1), shape_error);
    EXPECT_THROW(K::matmul(tensor{}, x.data(), y.data(), 1), shape_error);
    EXPECT_THROW(K::matmul_reference(tensor{}, x.data(), y.data(), 1), shape_error);
    const tensor rank1 = tensor::empty(dtype::f32, {64});
    EXPECT_THROW(K::gemv(rank1, x.data(), y.data()), shape_error);
    const tensor rank3 = tensor::empty(dtype::f32, {2, 2, 64});
    try {
        K::matmul(rank3, x.data(), y.data(), 1);
        FAIL() << "rank-3 weight accepted";
    } catch (const shape_error& e) {
        EXPECT_NE(std::string(e.what()).find("(2, 2, 64)"), std::string::npos) << e.what();
    }
    // A weight of an unsupported type cannot exist: the tensor refuses it (q8_1 = 9).
    float storage[64] = {};
    EXPECT_THROW(tensor::view(static_cast<dtype>(9), {1, 32}, storage), error);
}

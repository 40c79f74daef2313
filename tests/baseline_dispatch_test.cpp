// Built without -march=native (tests/CMakeLists.txt), as a consumer's program would be by default:
// checks that the kernels chosen at run time are the AVX-512 ones on a CPU that has it (the float
// row kernels, simd/float_ops.hpp; the packed integer kernels, simd/avx512_vnni.hpp), that the
// quantised row kernels (Q8_0, Q4_0 in place, and every other quantised type) take their AVX2 forms on a CPU with AVX2
// (simd/int8.hpp), and that the public matmul still agrees with the double-precision reference
// from this translation unit.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "minigpt/kernels/matmul.hpp"
#include "test_data.hpp"

using namespace minigpt;
namespace K = minigpt::kernels;
using minigpt::test::gaussian;

TEST(BaselineBuild, PicksAvx512KernelsAtRunTime) {
#if defined(__AVX512F__)
    GTEST_SKIP() << "this test must be compiled without AVX-512 flags";
#elif defined(MINIGPT_AVX512F_DISPATCH)
    EXPECT_EQ(K::detail::float_kernels_use_avx512(), simd::avx512f::supported());
    EXPECT_EQ(K::detail::packed_kernels_vnni(), simd::vnni512::supported());
    EXPECT_EQ(K::detail::packed_kernels_vectorised(), simd::vnni512::supported() || simd::int8_avx2_supported());
    if (!simd::avx512f::supported()) GTEST_SKIP() << "this CPU has no AVX-512: the baseline kernels run";
#else
    GTEST_SKIP() << "no run-time dispatch on this compiler or architecture";
#endif
}

TEST(BaselineBuild, PicksAvx2IntegerKernelsAtRunTime) {
#if defined(__AVX2__)
    GTEST_SKIP() << "this test must be compiled without AVX2 flags";
#elif defined(MINIGPT_SIMD_INT8_AVX2)
    __builtin_cpu_init();
    // F16C straight from CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c").
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    EXPECT_EQ(simd::int8_avx2_supported(), avx2);
    if (!avx2) GTEST_SKIP() << "this CPU has no AVX2: the scalar loops run";
#else
    GTEST_SKIP() << "no run-time dispatch on this compiler or architecture";
#endif
}

// Every float type and Q4_0 / Q8_0 through the public matmul (few-token and GEMM paths) against the
// double reference. Float types: the summation budget (n_in + 8) u sum|w x|; quantised types: the
// activation rounding (half a step of max|x| / 127 per block, over sum|w|) on top.
TEST(BaselineBuild, MatmulMatchesReference) {
    const std::int64_t n_out = 37;
    struct test_case {
        dtype type;
        K::pack_policy policy;  // never: Q4_0 / Q8_0 on their row kernels (in place), not packed
    };
    for (auto [t, policy] : {test_case{dtype::f32, K::pack_policy::when_faster}, test_case{dtype::f16, K::pack_policy::when_faster},
                             test_case{dtype::bf16, K::pack_policy::when_faster}, test_case{dtype::q8_0, K::pack_policy::when_faster},
                             test_case{dtype::q4_0, K::pack_policy::when_faster}, test_case{dtype::q8_0, K::pack_policy::never},
                             test_case{dtype::q4_0, K::pack_policy::never}, test_case{dtype::q4_k, K::pack_policy::when_faster},
                             test_case{dtype::q6_k, K::pack_policy::when_faster}, test_case{dtype::q4_1, K::pack_policy::when_faster},
                             test_case{dtype::q5_0, K::pack_policy::when_faster}, test_case{dtype::q5_1, K::pack_policy::when_faster},
                             test_case{dtype::iq4_nl, K::pack_policy::when_faster}, test_case{dtype::q2_k, K::pack_policy::when_faster},
                             test_case{dtype::q3_k, K::pack_policy::when_faster}, test_case{dtype::q5_k, K::pack_policy::when_faster},
                             test_case{dtype::iq4_xs, K::pack_policy::when_faster}})
        for (std::int64_t n_tokens : {1, 5, 40}) {
            // The K-quants' super-blocks hold 256 values; the activation is rounded per block of 32 or 256.
            const bool k_quant = block_size(t) == 256;
            const std::int64_t n_in = k_quant ? 768 : 800, act_block = k_quant ? 256 : 32;
            SCOPED_TRACE(std::string(dtype_name(t)) + (policy == K::pack_policy::never ? " in place" : "") +
                         " n_tokens=" + std::to_string(n_tokens));
            tensor w = tensor::empty(t, {n_out, n_in});
            const auto src = gaussian(static_cast<std::size_t>(n_out * n_in), 11);
            for (std::int64_t r = 0; r < n_out; ++r) quant::quantize_row(t, src.data() + r * n_in, w.row_ptr(r), n_in);
            std::vector<float> wd(static_cast<std::size_t>(n_out * n_in));
            for (std::int64_t r = 0; r < n_out; ++r) quant::dequantize_row(t, w.row_ptr(r), wd.data() + r * n_in, n_in);
            const auto x = gaussian(static_cast<std::size_t>(n_tokens * n_in), 12);
            std::vector<float> y(static_cast<std::size_t>(n_tokens * n_out));
            const K::packed_matrix prepared(w, policy);
            K::matmul(prepared, x.data(), y.data(), n_tokens, 2);
            for (std::int64_t tok = 0; tok < n_tokens; ++tok)
                for (std::int64_t r = 0; r < n_out; ++r) {
                    double ref = 0, mag = 0, act = 0;
                    for (std::int64_t i = 0; i < n_in; ++i) {
                        const double p = static_cast<double>(wd[static_cast<std::size_t>(r * n_in + i)]) * x[static_cast<std::size_t>(tok * n_in + i)];
                        ref += p;
                        mag += std::fabs(p);
                    }
                    if (is_quantized(t))
                        for (std::int64_t b = 0; b < n_in; b += act_block) {
                            double amax = 0, wsum = 0;
                            for (std::int64_t i = b; i < b + act_block; ++i) {
                                amax = std::max(amax, static_cast<double>(std::fabs(x[static_cast<std::size_t>(tok * n_in + i)])));
                                wsum += std::fabs(wd[static_cast<std::size_t>(r * n_in + i)]);
                            }
                            act += amax / 127 / 2 * wsum * 1.01;
                        }
                    const double tol = (static_cast<double>(n_in) + 8) * 0x1p-24 * mag * (is_quantized(t) ? 4 : 1) + act;
                    ASSERT_NEAR(y[static_cast<std::size_t>(tok * n_out + r)], ref, tol) << "row " << r << " token " << tok;
                }
        }
}

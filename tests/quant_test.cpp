// Tests of the block formats and row codecs (quant/*.hpp, simd/convert.hpp).
//
// Decoding is checked against blocks built byte by byte in the test, with the expected
// floats written from the format definition (docs/formats.md), not from the decoder; the
// packed layouts of quant/repack.hpp byte by byte against their definition and row by row
// against the original rows' decoding.
// Quantisers are checked by round trips: exact on values the format represents, and
// within error bounds derived from each format's rounding on random data.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "minigpt/quant/quant.hpp"
#include "minigpt/simd/avx512f.hpp"
#include "minigpt/quant/repack.hpp"
#include "test_data.hpp"

using namespace minigpt;
using namespace minigpt::quant;

namespace {

using minigpt::test::gaussian;

template <class Block>
std::vector<float> decode(dtype t, const std::vector<Block>& blocks) {
    std::vector<float> out(blocks.size() * block_size(t));
    dequantize_row(t, blocks.data(), out.data(), static_cast<std::int64_t>(out.size()));
    return out;
}

}  // namespace

TEST(QuantBlocks, LayoutMatchesGgml) {
    EXPECT_EQ(offsetof(block_q8_0, qs), 2u);
    EXPECT_EQ(offsetof(block_q4_0, qs), 2u);
    EXPECT_EQ(offsetof(block_q4_k, dmin), 2u);
    EXPECT_EQ(offsetof(block_q4_k, scales), 4u);
    EXPECT_EQ(offsetof(block_q4_k, qs), 16u);
    EXPECT_EQ(offsetof(block_q6_k, qh), 128u);
    EXPECT_EQ(offsetof(block_q6_k, scales), 192u);
    EXPECT_EQ(offsetof(block_q6_k, d), 208u);
    EXPECT_EQ(block_bytes(dtype::q8_0), sizeof(block_q8_0));
    EXPECT_EQ(block_bytes(dtype::q4_0), sizeof(block_q4_0));
    EXPECT_EQ(block_bytes(dtype::q4_k), sizeof(block_q4_k));
    EXPECT_EQ(block_bytes(dtype::q6_k), sizeof(block_q6_k));
}

TEST(QuantDecode, Q8_0HandBuilt) {
    std::vector<block_q8_0> b(2);
    b[0].d = 0x3800;  // fp16 0.5
    const int q0[8] = {0, 1, -1, 127, -127, -128, 64, 3};
    for (int j = 0; j < 8; ++j) b[0].qs[j] = static_cast<std::int8_t>(q0[j]);
    b[1].d = 0xc400;  // fp16 -4.0
    b[1].qs[31] = 10;
    const auto y = decode(dtype::q8_0, b);
    const float expect0[8] = {0.0f, 0.5f, -0.5f, 63.5f, -63.5f, -64.0f, 32.0f, 1.5f};
    for (int j = 0; j < 8; ++j) EXPECT_EQ(y[static_cast<std::size_t>(j)], expect0[j]) << j;
    for (int j = 8; j < 32; ++j) EXPECT_EQ(y[static_cast<std::size_t>(j)], 0.0f);
    EXPECT_EQ(y[63], -40.0f);
    EXPECT_EQ(y[32], 0.0f);
}

TEST(QuantDecode, Q4_0HandBuilt) {
    std::vector<block_q4_0> b(1);
    b[0].d = 0x4000;  // 2.0
    b[0].qs[0] = 0x9f;  // element 0: 15, element 16: 9
    b[0].qs[1] = 0x08;  // element 1: 8, element 17: 0
    b[0].qs[15] = 0x7c;  // element 15: 12, element 31: 7
    const auto y = decode(dtype::q4_0, b);
    EXPECT_EQ(y[0], 14.0f);
    EXPECT_EQ(y[16], 2.0f);
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[17], -16.0f);
    EXPECT_EQ(y[15], 8.0f);
    EXPECT_EQ(y[31], -2.0f);
    for (int j : {2, 3, 14, 18, 30}) EXPECT_EQ(y[static_cast<std::size_t>(j)], -16.0f) << j;  // nibble 0 -> (0-8)*2
}

TEST(QuantDecode, Q4_KHandBuilt) {
    // Sub-block scales/mins chosen so that both packing cases are exercised:
    // sc = {1, 3, 0, 0, 0, 37, 0, 0}, m = {2, 0, 0, 0, 0, 50, 0, 0}.
    // 37 = 0b10'0101 and 50 = 0b11'0010: low 4 bits in byte 9, top 2 bits in bytes 1 and 5.
    std::vector<block_q4_k> b(1);
    b[0].d = 0x3c00;     // 1.0
    b[0].dmin = 0x3800;  // 0.5
    const std::uint8_t scales[12] = {0x01, 0x83, 0, 0, 0x02, 0xc0, 0, 0, 0, 0x25, 0, 0};
    std::memcpy(b[0].scales, scales, 12);
    b[0].qs[0] = 0x7a;       // element 0 (sub-block 0): 10; element 32 (sub-block 1): 7
    b[0].qs[64 + 3] = 0xb0;  // element 131 (sub-block 4): 0; element 163 (sub-block 5): 11
    const auto y = decode(dtype::q4_k, b);
    // x = d*sc*q - dmin*m per sub-block; with q = 0 the defaults are -dmin*m.
    const float default_of_sub[8] = {-1.0f, 0.0f, 0.0f, 0.0f, 0.0f, -25.0f, 0.0f, 0.0f};
    for (int i = 0; i < 256; ++i) {
        float expect = default_of_sub[i / 32];
        if (i == 0) expect = 1.0f * 1 * 10 - 0.5f * 2;     // 9
        if (i == 32) expect = 1.0f * 3 * 7;                 // 21
        if (i == 163) expect = 1.0f * 37 * 11 - 0.5f * 50;  // 382
        EXPECT_EQ(y[static_cast<std::size_t>(i)], expect) << i;
    }
}

TEST(QuantDecode, Q6_KHandBuilt) {
    std::vector<block_q6_k> b(1);
    b[0].d = 0x3400;  // 0.25
    b[0].scales[0] = 2;
    b[0].scales[2] = -3;
    b[0].scales[4] = 4;
    b[0].scales[6] = 1;
    b[0].scales[9] = 5;
    b[0].ql[0] = 0x5f;   // element 0 low bits 15, element 64 low bits 5
    b[0].ql[32] = 0x03;  // element 32 low bits 3, element 96 low bits 0
    b[0].qh[0] = 0xd8;   // 0b11'01'10'00: high bits 0 (elem 0), 2 (elem 32), 1 (elem 64), 3 (elem 96)
    b[0].ql[64 + 18] = 0x0c;  // element 128 + 18 = 146: low bits 12
    b[0].qh[32 + 18] = 0x03;  // element 146: high bits 3 -> q = 60
    const auto y = decode(dtype::q6_k, b);
    // x = d * scale[group of 16] * (q - 32); with q = 0 everywhere else: -8 * scale.
    for (int i = 0; i < 256; ++i) {
        const int group_scale[16] = {2, 0, -3, 0, 4, 0, 1, 0, 0, 5, 0, 0, 0, 0, 0, 0};
        float expect = 0.25f * static_cast<float>(group_scale[i / 16]) * -32.0f;
        if (i == 0) expect = 0.25f * 2 * (15 - 32);        // -8.5
        if (i == 32) expect = 0.25f * -3 * (35 - 32);      // -2.25
        if (i == 64) expect = 0.25f * 4 * (21 - 32);       // -11
        if (i == 96) expect = 0.25f * 1 * (48 - 32);       // 4
        if (i == 146) expect = 0.25f * 5 * (60 - 32);      // 35
        EXPECT_EQ(y[static_cast<std::size_t>(i)], expect) << i;
    }
}

TEST(QuantDecode, HalfFormats) {
    const std::uint16_t f16[8] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x8000, 0x7c00, 0x0400};
    const float expect16[8] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 0x1.554p-2f, -0.0f, INFINITY, 0x1p-14f};
    const std::uint16_t bf16[8] = {0x3f80, 0xc0a0, 0x4049, 0x0001, 0x7f80, 0x8000, 0x3e00, 0x4f80};
    const float expectb[8] = {1.0f, -5.0f, 3.140625f, 0x1p-133f, INFINITY, -0.0f, 0.125f, 0x1p32f};
    float out[8];
    dequantize_row(dtype::f16, f16, out, 8);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(std::bit_cast<std::uint32_t>(out[i]), std::bit_cast<std::uint32_t>(expect16[i])) << i;
    dequantize_row(dtype::bf16, bf16, out, 8);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(std::bit_cast<std::uint32_t>(out[i]), std::bit_cast<std::uint32_t>(expectb[i])) << i;
}

// The vector f16/bf16 converters against the exact scalar ones of core/half.hpp on every
// 16-bit pattern (decode) and on random f32 bit patterns including NaN/inf/subnormals (encode).
TEST(QuantDecode, VectorHalfMatchesScalarOnAllPatterns) {
    std::vector<std::uint16_t> all(65536);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
    std::vector<float> out(all.size());
    dequantize_row(dtype::f16, all.data(), out.data(), 65536);
    for (std::size_t i = 0; i < all.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(out[i]), std::bit_cast<std::uint32_t>(fp16_to_fp32(all[i]))) << i;
    dequantize_row(dtype::bf16, all.data(), out.data(), 65536);
    for (std::size_t i = 0; i < all.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(out[i]), std::bit_cast<std::uint32_t>(bf16_to_fp32(all[i]))) << i;

    std::mt19937 rng(7);
    std::vector<float> src(1 << 16);
    for (auto& x : src) x = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    for (std::size_t i = 0; i < 4096; ++i) src[i] = static_cast<float>(i) * 0x1p-30f - 0x1p-19f;  // around fp16 subnormals
    std::vector<std::uint16_t> enc(src.size());
    quantize_row(dtype::f16, src.data(), enc.data(), static_cast<std::int64_t>(src.size()));
    for (std::size_t i = 0; i < src.size(); ++i) ASSERT_EQ(enc[i], fp32_to_fp16(src[i])) << std::hex << std::bit_cast<std::uint32_t>(src[i]);
    quantize_row(dtype::bf16, src.data(), enc.data(), static_cast<std::int64_t>(src.size()));
    for (std::size_t i = 0; i < src.size(); ++i) ASSERT_EQ(enc[i], fp32_to_bf16(src[i]));
}

// The AVX-512 row converters that builds without F16C flags pick at run time (simd/avx512f.hpp),
// bit for bit against the scalar codecs: every fp16 pattern, random f32 bits (NaN, inf, subnormal
// results included), and a length with a tail.
TEST(QuantDecode, Avx512HalfRowConvertersMatchScalar) {
#if defined(MINIGPT_AVX512F_DISPATCH)
    if (!simd::avx512f::supported()) GTEST_SKIP() << "this CPU has no AVX-512";
    for (std::int64_t n : {65536, 17}) {
        std::vector<std::uint16_t> halves(static_cast<std::size_t>(n));
        for (std::size_t i = 0; i < halves.size(); ++i) halves[i] = static_cast<std::uint16_t>(i * 4099u);
        std::vector<float> out(halves.size());
        simd::avx512f::f16_to_f32_row(halves.data(), out.data(), n);
        for (std::size_t i = 0; i < halves.size(); ++i)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(out[i]), std::bit_cast<std::uint32_t>(fp16_to_fp32(halves[i]))) << i;
        std::mt19937 rng(static_cast<unsigned>(n));
        std::vector<float> src(static_cast<std::size_t>(n));
        for (auto& x : src) x = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
        std::vector<std::uint16_t> enc(src.size());
        simd::avx512f::f32_to_f16_row(src.data(), enc.data(), n);
        for (std::size_t i = 0; i < src.size(); ++i) ASSERT_EQ(enc[i], fp32_to_fp16(src[i])) << std::hex << std::bit_cast<std::uint32_t>(src[i]);
    }
#else
    GTEST_SKIP() << "no run-time dispatch on this compiler or architecture";
#endif
}

// The vector dequantisers behind dequantize_row against the scalar reference codecs, bit for
// bit, on blocks of random bytes (scales restricted to finite fp16 values).
TEST(QuantDecode, VectorDecodersMatchReference) {
    std::mt19937 rng(17);
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::q6_k}) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        const std::int64_t n = 256 * 64;
        std::vector<std::uint8_t> raw(row_bytes(t, static_cast<std::uint64_t>(n)));
        for (auto& b : raw) b = static_cast<std::uint8_t>(rng());
        const std::size_t bb = block_bytes(t);
        for (std::size_t off = 0; off < raw.size(); off += bb) {
            // fp16 fields: d (and dmin) at the start, Q6_K's d at the end; exponent kept below 31.
            auto finite = [&](std::size_t at) { raw[at + 1] = static_cast<std::uint8_t>(raw[at + 1] & 0x7b); };
            if (t == dtype::q6_k) finite(off + 208);
            else finite(off);
            if (t == dtype::q4_k) finite(off + 2);
        }
        std::vector<float> fast(static_cast<std::size_t>(n)), ref(static_cast<std::size_t>(n));
        dequantize_row(t, raw.data(), fast.data(), n);
        switch (t) {
            case dtype::q8_0: ref::dequantize_q8_0(reinterpret_cast<const block_q8_0*>(raw.data()), ref.data(), n); break;
            case dtype::q4_0: ref::dequantize_q4_0(reinterpret_cast<const block_q4_0*>(raw.data()), ref.data(), n); break;
            case dtype::q4_k: ref::dequantize_q4_k(reinterpret_cast<const block_q4_k*>(raw.data()), ref.data(), n); break;
            default: ref::dequantize_q6_k(reinterpret_cast<const block_q6_k*>(raw.data()), ref.data(), n); break;
        }
        for (std::size_t i = 0; i < fast.size(); ++i)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[i]), std::bit_cast<std::uint32_t>(ref[i])) << i;
    }
}

TEST(QuantRoundTrip, ExactOnRepresentableValues) {
    // Q8_0: multiples of 0.5 with max |x| = 63.5 give d = 0.5 exactly.
    std::vector<float> x(64);
    for (std::size_t i = 0; i < 64; ++i) x[i] = 0.5f * static_cast<float>(static_cast<int>(i * 37 % 255) - 127);
    x[5] = 63.5f;
    x[40] = -63.5f;
    std::vector<block_q8_0> q8(2);
    quantize_row(dtype::q8_0, x.data(), q8.data(), 64);
    EXPECT_EQ(decode(dtype::q8_0, q8), x);

    // Q4_0: (q - 8) * 0.25 with some q = 0 (the largest magnitude, -2.0) gives d = 0.25.
    for (std::size_t i = 0; i < 64; ++i) x[i] = 0.25f * static_cast<float>(static_cast<int>(i * 7 % 16) - 8);
    std::vector<block_q4_0> q4(2);
    quantize_row(dtype::q4_0, x.data(), q4.data(), 64);
    EXPECT_EQ(decode(dtype::q4_0, q4), x);
}

// Q8_0 (ggml's rounding): q = round(x/d) with the unrounded d = amax/127, decoded with the fp16
// d16: |x - q*d16| <= d/2 + 127*|d - d16| <= d * (1/2 + 127 * 2^-11).
TEST(QuantRoundTrip, Q8_0ErrorBound) {
    const auto x = gaussian(32 * 64, 1);
    std::vector<block_q8_0> q(64);
    quantize_row(dtype::q8_0, x.data(), q.data(), 32 * 64);
    const auto y = decode(dtype::q8_0, q);
    for (std::size_t b = 0; b < 64; ++b) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + static_cast<std::size_t>(j)]));
        const double bound = amax / 127.0 * (0.5 + 127.0 / 2048.0);
        for (std::size_t j = b * 32; j < b * 32 + 32; ++j) ASSERT_LE(std::fabs(x[j] - y[j]), bound) << j;
    }
}

// Q4_0: x/d lies in [-8, 8]; rounding is to nearest except that +8 clamps to 7, so the error is
// at most |d| (the clamped element) plus 8*|d - d16| from the fp16 scale.
TEST(QuantRoundTrip, Q4_0ErrorBound) {
    const auto x = gaussian(32 * 64, 2);
    std::vector<block_q4_0> q(64);
    quantize_row(dtype::q4_0, x.data(), q.data(), 32 * 64);
    const auto y = decode(dtype::q4_0, q);
    double sq = 0;
    for (std::size_t b = 0; b < 64; ++b) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + static_cast<std::size_t>(j)]));
        const double d = amax / 8.0;
        for (std::size_t j = b * 32; j < b * 32 + 32; ++j) {
            ASSERT_LE(std::fabs(x[j] - y[j]), d * (1.0 + 8.0 / 2048.0)) << j;
            sq += (x[j] - y[j]) * (x[j] - y[j]);
        }
    }
    // Uniform rounding noise: rms = step/sqrt(12) with step ~ amax/8 ~ 2.2/8 for 32 unit normals.
    EXPECT_LT(std::sqrt(sq / static_cast<double>(x.size())), 0.1);
}

// K-quants have no closed-form per-element bound (a sub-block's scale is itself rounded to 6 or
// 8 bits), so check the rms against the uniform-noise level step/sqrt(12) of the step size:
// Q4_K step ~ range(32 normals)/15 ~ 4.1/15 -> rms ~ 0.08; Q6_K step ~ max|16 normals|/32 ~ 1.8/32
// -> rms ~ 0.016 (scale rounding adds a little: 0.074 and 0.019 measured), with ~1.3-1.6x margin.
// Also a hard per-element cap of about two steps of the coarsest sub-block.
TEST(QuantRoundTrip, KQuantErrorLevels) {
    const std::int64_t n = 256 * 16;
    for (auto [t, rms_limit, cap] : {std::tuple{dtype::q4_k, 0.12, 0.6}, std::tuple{dtype::q6_k, 0.025, 0.2}}) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        const auto x = gaussian(static_cast<std::size_t>(n), 3);
        std::vector<std::byte> q(row_bytes(t, static_cast<std::uint64_t>(n)));
        quantize_row(t, x.data(), q.data(), n);
        std::vector<float> y(static_cast<std::size_t>(n));
        dequantize_row(t, q.data(), y.data(), n);
        double sq = 0, worst = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            sq += (x[i] - y[i]) * (x[i] - y[i]);
            worst = std::max(worst, static_cast<double>(std::fabs(x[i] - y[i])));
        }
        const double rms = std::sqrt(sq / static_cast<double>(n));
        EXPECT_LT(rms, rms_limit);
        EXPECT_LT(worst, cap);
        // And the codec really quantises: far from lossless at these bit widths.
        EXPECT_GT(rms, rms_limit / 20);
    }
}

// Scaled inputs keep the relative error (scales are relative), including tiny and huge rows
// where fp16 scales approach their range limits.
TEST(QuantRoundTrip, KQuantsScaleInvariant) {
    for (dtype t : {dtype::q4_k, dtype::q6_k, dtype::q8_0, dtype::q4_0}) {
        for (float s : {1e-3f, 1.0f, 100.0f}) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " scale " + std::to_string(s));
            auto x = gaussian(512, 4, s);
            std::vector<std::byte> q(row_bytes(t, 512));
            quantize_row(t, x.data(), q.data(), 512);
            std::vector<float> y(512);
            dequantize_row(t, q.data(), y.data(), 512);
            double sq = 0;
            for (std::size_t i = 0; i < 512; ++i) sq += (x[i] - y[i]) * (x[i] - y[i]);
            EXPECT_LT(std::sqrt(sq / 512) / s, 0.12);
        }
    }
}

TEST(QuantRoundTrip, ZeroRowsStayZero) {
    for (dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::q6_k, dtype::f16, dtype::bf16}) {
        std::vector<float> x(256, 0.0f), y(256, 1.0f);
        std::vector<std::byte> q(row_bytes(t, 256));
        quantize_row(t, x.data(), q.data(), 256);
        dequantize_row(t, q.data(), y.data(), 256);
        for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(t);
    }
}

// Activation quantisers used by the integer matmul paths: |x - q*d| <= d/2 (plus the float
// error of x * (127/amax), below 1e-5 steps), and the stored sums are the sums of q.
TEST(QuantActivations, RoundingBoundAndSums) {
    const auto x = gaussian(512, 5, 3.0f);
    std::vector<act_q8_32> a(16);
    ref::quantize_act_32(x.data(), a.data(), 512);
    for (std::size_t b = 0; b < 16; ++b) {
        int sum = 0;
        for (std::size_t j = 0; j < 32; ++j) {
            ASSERT_LE(std::fabs(x[b * 32 + j] - a[b].qs[j] * a[b].d), a[b].d * (0.5 + 1e-5));
            sum += a[b].qs[j];
        }
        EXPECT_EQ(sum, a[b].sum);
    }
    std::vector<act_q8_256> k(2);
    ref::quantize_act_256(x.data(), k.data(), 512);
    for (std::size_t b = 0; b < 2; ++b) {
        for (std::size_t g = 0; g < 16; ++g) {
            int sum = 0;
            for (std::size_t j = 16 * g; j < 16 * g + 16; ++j) {
                ASSERT_LE(std::fabs(x[b * 256 + j] - k[b].qs[j] * k[b].d), k[b].d * (0.5 + 1e-5));
                sum += k[b].qs[j];
            }
            EXPECT_EQ(sum, k[b].bsums[g]);
        }
    }
}

TEST(QuantErrors, BadInputThrows) {
    float buf[64] = {};
    std::byte blocks[2 * 144] = {};
    EXPECT_THROW(dequantize_row(dtype::q4_0, blocks, buf, 33), shape_error);
    EXPECT_THROW(quantize_row(dtype::q4_k, buf, blocks, 64), shape_error);
    EXPECT_THROW(dequantize_row(dtype::q8_0, nullptr, buf, 32), shape_error);
    EXPECT_THROW(quantize_row(dtype::f16, buf, nullptr, 4), shape_error);
    EXPECT_THROW(dequantize_row(dtype::f32, buf, buf, -1), shape_error);
    EXPECT_THROW(dequantize_row(static_cast<dtype>(9), blocks, buf, 32), error);  // q8_1: not a weight type
    EXPECT_THROW(quantize_row(static_cast<dtype>(99), buf, blocks, 32), error);
    try {
        dequantize_row(dtype::q6_k, blocks, buf, 100);
        FAIL();
    } catch (const shape_error& e) {
        EXPECT_NE(std::string(e.what()).find("q6_k"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(dequantize_row(dtype::q8_0, nullptr, nullptr, 0));
}

// ---- packed (16-row interleaved) layouts, quant/repack.hpp -----------------------------------

namespace {

// A (n_rows, n_cols) matrix of type t with distinct, hand-chosen bytes: row r, block b has scale
// bits 0x3c00 + 16 r + b (fp16 1.0 plus a few ulps) and byte j = (r * 7 + b * 13 + j * 3) % 256.
std::vector<std::byte> hand_matrix(dtype t, std::int64_t n_rows, std::int64_t n_cols) {
    const std::int64_t nb = n_cols / 32, bb = block_bytes(t);
    std::vector<std::byte> m(static_cast<std::size_t>(n_rows * nb * bb));
    for (std::int64_t r = 0; r < n_rows; ++r)
        for (std::int64_t b = 0; b < nb; ++b) {
            std::byte* blk = m.data() + (r * nb + b) * bb;
            const auto d = static_cast<std::uint16_t>(0x3c00 + 16 * r + b);
            std::memcpy(blk, &d, 2);
            for (std::int64_t j = 0; j < bb - 2; ++j) blk[2 + j] = static_cast<std::byte>((r * 7 + b * 13 + j * 3) % 256);
        }
    return m;
}

}  // namespace

TEST(QuantPacked, ByteLayoutMatchesDefinition) {
    // 19 rows: one full group and a partial one (rows 16-18, lanes 3-15 zero).
    for (dtype t : {dtype::q4_0, dtype::q8_0}) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        const std::int64_t n_rows = 19, n_cols = 64, bb = block_bytes(t);
        const auto src = hand_matrix(t, n_rows, n_cols);
        const packed_layout L(t, n_rows, n_cols);
        EXPECT_EQ(L.n_groups, 2);
        EXPECT_EQ(L.n_blocks, 2);
        EXPECT_EQ(L.quant_bytes, t == dtype::q4_0 ? 256 : 512);
        EXPECT_EQ(L.group_bytes, 64 + 2 * L.quant_bytes);  // one pair of blocks: Q4_0 576, Q8_0 1088
        EXPECT_EQ(L.n_bytes, 2 * L.group_bytes);
        EXPECT_EQ(L.scales_of(1, 0), L.group_bytes);
        EXPECT_EQ(L.scales_of(1, 1), L.group_bytes + 32);
        EXPECT_EQ(L.quants_of(1, 0), L.group_bytes + 64);
        EXPECT_EQ(L.quants_of(1, 1), L.group_bytes + 64 + L.quant_bytes);
        std::vector<std::byte> packed(static_cast<std::size_t>(L.n_bytes), std::byte{0xee});  // padding must be written
        pack_groups(L, src.data(), 2 * bb, packed.data(), 0, L.n_groups);
        const auto byte_at = [&](std::int64_t off) { return static_cast<unsigned>(packed[static_cast<std::size_t>(off)]); };
        // Row 17 = group 1 lane 1, block 1: chunk c holds its qs bytes 4c..4c+3 (Q8_0: XOR 0x80).
        const std::int64_t r = 17, b = 1;
        for (int c = 0; c < L.quant_bytes / 64; ++c)
            for (int k = 0; k < 4; ++k) {
                unsigned want = static_cast<unsigned>((r * 7 + b * 13 + (4 * c + k) * 3) % 256);
                if (t == dtype::q8_0) want ^= 0x80u;
                EXPECT_EQ(byte_at(L.quants_of(1, b) + 64 * c + 4 * 1 + k), want) << "chunk " << c << " byte " << k;
            }
        std::uint16_t d;
        std::memcpy(&d, packed.data() + L.scales_of(1, b) + 2 * 1, 2);
        EXPECT_EQ(d, 0x3c00 + 16 * 17 + 1);
        // Lanes of missing rows (group 1, lanes 3..15) are zero.
        for (int lane = 3; lane < 16; ++lane) {
            for (int c = 0; c < L.quant_bytes / 64; ++c) EXPECT_EQ(byte_at(L.quants_of(1, 0) + 64 * c + 4 * lane), 0u);
            EXPECT_EQ(byte_at(L.scales_of(1, 0) + 2 * lane), 0u);
        }
    }
}

TEST(QuantPacked, RowsDecodeToTheOriginalBits) {
    for (dtype t : {dtype::q4_0, dtype::q8_0}) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        const std::int64_t n_rows = 37, n_cols = 352;  // 11 blocks: the last pair is half empty
        const auto x = gaussian(static_cast<std::size_t>(n_rows * n_cols), 77);
        const std::int64_t rb = static_cast<std::int64_t>(row_bytes(t, n_cols));
        std::vector<std::byte> src(static_cast<std::size_t>(n_rows * rb));
        for (std::int64_t r = 0; r < n_rows; ++r) quantize_row(t, x.data() + r * n_cols, src.data() + r * rb, n_cols);
        const packed_layout L(t, n_rows, n_cols);
        std::vector<std::byte> packed(static_cast<std::size_t>(L.n_bytes), std::byte{0xee});
        // Packed in two pieces, as the parallel packer does.
        pack_groups(L, src.data(), rb, packed.data(), 0, 1);
        pack_groups(L, src.data(), rb, packed.data(), 1, L.n_groups);
        std::vector<float> want(static_cast<std::size_t>(n_cols)), got(static_cast<std::size_t>(n_cols));
        for (std::int64_t r = 0; r < n_rows; ++r) {
            dequantize_row(t, src.data() + r * rb, want.data(), n_cols);
            dequantize_packed_row(L, packed.data(), r, got.data());
            ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << "row " << r;
        }
        EXPECT_THROW(dequantize_packed_row(L, packed.data(), n_rows, got.data()), shape_error);
        // The half-empty last pair of every group and the 11 missing rows of the last group are zero.
        for (std::int64_t g = 0; g < L.n_groups; ++g)
            for (std::int64_t i = 0; i < L.quant_bytes; ++i)
                ASSERT_EQ(packed[static_cast<std::size_t>(L.quants_of(g, 11) + i)], std::byte{0}) << "group " << g;
        for (std::int64_t b = 0; b < L.n_blocks; ++b)
            for (int i = 4 * 5; i < 64; ++i) ASSERT_EQ(packed[static_cast<std::size_t>(L.quants_of(2, b) + i)], std::byte{0});
    }
}

TEST(QuantPacked, BadLayoutsThrow) {
    EXPECT_THROW(packed_layout(dtype::q4_k, 16, 256), error);
    EXPECT_THROW(packed_layout(dtype::f32, 16, 32), error);
    EXPECT_THROW(packed_layout(dtype::q8_0, 16, 48), shape_error);
    EXPECT_THROW(packed_layout(dtype::q4_0, -1, 32), shape_error);
    EXPECT_EQ(packed_layout(dtype::q4_0, 16, 96).group_bytes, 2 * 576);  // 3 blocks: two pairs
    EXPECT_EQ(packed_layout(dtype::q8_0, 17, 96).n_bytes, 2 * 2 * 1088);  // two groups of two pairs
    EXPECT_TRUE(has_packed_layout(dtype::q4_0));
    EXPECT_FALSE(has_packed_layout(dtype::q6_k));
}

// Tests of the block types Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS.
//
// Decoders: blocks built byte by byte here, expected floats written from the format definition
// (ggml's dequantize_row_* formulas, docs/formats.md), not from the decoder. Quantisers: exact on
// values a format represents, error bounds from each format's rounding on random data, and checks
// of llama-quantize's choices that a different search would not make (Q5_0's signed extreme at
// q = 0, Q4_1's min stored as the offset). End to end: the llama256 files llama-quantize made in
// ../shared/models/coverage against llama.cpp's logits (argmax >= 0.85, mean |err| <= 0.06 row std).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "minigpt/model.hpp"
#include "minigpt/quant/quant.hpp"
#include "test_data.hpp"

using namespace minigpt;
using namespace minigpt::quant;
using minigpt::test::gaussian;
using minigpt::test::read_f32;
using minigpt::test::read_ids;
using minigpt::test::shared_path;

namespace {

const dtype k_new_types[] = {dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::q2_k, dtype::q3_k, dtype::q5_k, dtype::iq4_nl, dtype::iq4_xs};

std::vector<float> decode_bytes(dtype t, const void* blocks, std::int64_t n) {
    std::vector<float> out(static_cast<std::size_t>(n));
    dequantize_row(t, blocks, out.data(), n);
    return out;
}

std::vector<float> round_trip(dtype t, const std::vector<float>& x) {
    std::vector<std::byte> q(row_bytes(t, x.size()));
    quantize_row(t, x.data(), q.data(), static_cast<std::int64_t>(x.size()));
    return decode_bytes(t, q.data(), static_cast<std::int64_t>(x.size()));
}

}  // namespace

TEST(QuantTypes, LayoutsMatchGgml) {
    EXPECT_EQ(offsetof(block_q4_1, qs), 4u);
    EXPECT_EQ(offsetof(block_q5_0, qs), 6u);
    EXPECT_EQ(offsetof(block_q5_1, qh), 4u);
    EXPECT_EQ(offsetof(block_q5_1, qs), 8u);
    EXPECT_EQ(offsetof(block_q2_k, qs), 16u);
    EXPECT_EQ(offsetof(block_q2_k, d), 80u);
    EXPECT_EQ(offsetof(block_q3_k, qs), 32u);
    EXPECT_EQ(offsetof(block_q3_k, scales), 96u);
    EXPECT_EQ(offsetof(block_q3_k, d), 108u);
    EXPECT_EQ(offsetof(block_q5_k, qh), 16u);
    EXPECT_EQ(offsetof(block_q5_k, qs), 48u);
    EXPECT_EQ(offsetof(block_iq4_xs, scales_l), 4u);
    EXPECT_EQ(offsetof(block_iq4_xs, qs), 8u);
    // ggml type ids (ggml.h) and block geometry.
    EXPECT_EQ(static_cast<int>(dtype::q4_1), 3);
    EXPECT_EQ(static_cast<int>(dtype::q5_0), 6);
    EXPECT_EQ(static_cast<int>(dtype::q5_1), 7);
    EXPECT_EQ(static_cast<int>(dtype::q2_k), 10);
    EXPECT_EQ(static_cast<int>(dtype::q3_k), 11);
    EXPECT_EQ(static_cast<int>(dtype::q5_k), 13);
    EXPECT_EQ(static_cast<int>(dtype::iq4_nl), 20);
    EXPECT_EQ(static_cast<int>(dtype::iq4_xs), 23);
    EXPECT_EQ(block_bytes(dtype::q4_1), sizeof(block_q4_1));
    EXPECT_EQ(block_bytes(dtype::q5_0), sizeof(block_q5_0));
    EXPECT_EQ(block_bytes(dtype::q5_1), sizeof(block_q5_1));
    EXPECT_EQ(block_bytes(dtype::q2_k), sizeof(block_q2_k));
    EXPECT_EQ(block_bytes(dtype::q3_k), sizeof(block_q3_k));
    EXPECT_EQ(block_bytes(dtype::q5_k), sizeof(block_q5_k));
    EXPECT_EQ(block_bytes(dtype::iq4_nl), sizeof(block_iq4_nl));
    EXPECT_EQ(block_bytes(dtype::iq4_xs), sizeof(block_iq4_xs));
}

TEST(QuantTypes, Q4_1AndQ5_1HandBuilt) {
    block_q4_1 b{};
    b.d = fp32_to_fp16(0.5f);
    b.m = fp32_to_fp16(-2.0f);
    b.qs[0] = 0x3a;  // element 0 = 10, element 16 = 3
    b.qs[15] = 0xf0;  // element 15 = 0, element 31 = 15
    const auto y = decode_bytes(dtype::q4_1, &b, 32);
    EXPECT_EQ(y[0], 10 * 0.5f - 2.0f);
    EXPECT_EQ(y[16], 3 * 0.5f - 2.0f);
    EXPECT_EQ(y[15], -2.0f);
    EXPECT_EQ(y[31], 15 * 0.5f - 2.0f);
    EXPECT_EQ(y[1], -2.0f);

    block_q5_1 c{};
    c.d = fp32_to_fp16(0.25f);
    c.m = fp32_to_fp16(1.0f);
    c.qs[2] = 0x51;       // element 2 low nibble 1, element 18 high nibble 5
    c.qh[0] = 0x04;       // fifth bit of element 2
    c.qh[2] = 0x04;       // fifth bit of element 18
    const auto z = decode_bytes(dtype::q5_1, &c, 32);
    EXPECT_EQ(z[2], 17 * 0.25f + 1.0f);
    EXPECT_EQ(z[18], 21 * 0.25f + 1.0f);
    EXPECT_EQ(z[0], 1.0f);
}

TEST(QuantTypes, Q5_0HandBuilt) {
    block_q5_0 b{};
    b.d = fp32_to_fp16(2.0f);
    for (auto& q : b.qs) q = 0x00;
    b.qs[7] = 0xc3;       // element 7 low 3, element 23 high 12
    b.qh[0] = 0x80;       // element 7 fifth bit
    b.qh[3] = 0x80;       // element 31 fifth bit
    const auto y = decode_bytes(dtype::q5_0, &b, 32);
    EXPECT_EQ(y[7], (19 - 16) * 2.0f);
    EXPECT_EQ(y[23], (12 - 16) * 2.0f);
    EXPECT_EQ(y[31], (16 - 16) * 2.0f);
    EXPECT_EQ(y[0], -16 * 2.0f);
}

TEST(QuantTypes, Q2_KHandBuilt) {
    block_q2_k b{};
    b.d = fp32_to_fp16(0.5f);
    b.dmin = fp32_to_fp16(0.25f);
    for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<std::uint8_t>((g % 16) | ((15 - g) << 4));
    // Byte 17 of the second half: elements 128 + 17 (bits 0-1), 160 + 17, 192 + 17, 224 + 17.
    b.qs[32 + 17] = static_cast<std::uint8_t>(1 | (2 << 2) | (3 << 4) | (0 << 6));
    const auto y = decode_bytes(dtype::q2_k, &b, 256);
    auto expect = [&](int e, int q) {
        const int g = e / 16;
        EXPECT_EQ(y[static_cast<std::size_t>(e)], 0.5f * static_cast<float>(g) * static_cast<float>(q) - 0.25f * static_cast<float>(15 - g)) << e;
    };
    expect(128 + 17, 1);
    expect(160 + 17, 2);
    expect(192 + 17, 3);
    expect(224 + 17, 0);
    expect(0, 0);
}

TEST(QuantTypes, Q3_KHandBuilt) {
    block_q3_k b{};
    b.d = fp32_to_fp16(0.125f);
    // Group 9's scale = 40 (-32 -> 8): low 4 bits 8 in the high nibble of byte 1, high 2 bits (2) at
    // bits 2*(9/4) = 4..5 of byte 8 + 9 % 4 = 9.
    b.scales[1] = 0x80;
    b.scales[9] = 2 << 4;
    // Element 144 = 128 + 16: half 1, k = 0, l = 16 (group 9): low bits 3, high bit set -> q = 3.
    b.qs[32 + 16] = 3;
    b.hmask[16] = 1 << 4;
    // Element 145: low bits 1, high bit clear -> q = 1 - 4 = -3.
    b.qs[32 + 17] = 1;
    const auto y = decode_bytes(dtype::q3_k, &b, 256);
    EXPECT_EQ(y[144], 0.125f * 8 * 3);
    EXPECT_EQ(y[145], 0.125f * 8 * -3);
    EXPECT_EQ(y[0], 0.125f * -32 * -4);  // group 0: scale 0 - 32, q = 0 - 4
}

TEST(QuantTypes, Q5_KHandBuilt) {
    block_q5_k b{};
    b.d = fp32_to_fp16(0.5f);
    b.dmin = fp32_to_fp16(1.0f);
    const int sc[8] = {1, 2, 3, 4, 5, 6, 7, 63}, m[8] = {0, 1, 0, 0, 0, 0, 2, 3};
    ref::q4_k_pack_scales(sc, m, b.scales);
    b.qs[32 * 3 + 5] = 0x9e;  // element 192 + 5 = 14, element 224 + 5 = 9
    b.qh[5] = (1 << 6) | (1 << 7);  // fifth bits of both
    const auto y = decode_bytes(dtype::q5_k, &b, 256);
    EXPECT_EQ(y[197], 0.5f * 7 * 30 - 1.0f * 2);
    EXPECT_EQ(y[229], 0.5f * 63 * 25 - 1.0f * 3);
    EXPECT_EQ(y[32], -1.0f);
}

TEST(QuantTypes, Iq4HandBuilt) {
    block_iq4_nl b{};
    b.d = fp32_to_fp16(0.5f);
    b.qs[3] = 0xf0;  // element 3 -> level 0 (-127), element 19 -> level 15 (113)
    const auto y = decode_bytes(dtype::iq4_nl, &b, 32);
    EXPECT_EQ(y[3], -63.5f);
    EXPECT_EQ(y[19], 56.5f);
    EXPECT_EQ(y[0], -63.5f);

    block_iq4_xs c{};
    c.d = fp32_to_fp16(0.25f);
    c.scales_l[2] = 0x70;          // sub-block 5: low 4 bits 7
    c.scales_h = 3 << 10;          // sub-block 5: high bits 3 -> 55 - 32 = 23
    c.qs[16 * 5 + 4] = 0x89;       // element 160 + 4 -> level 9 (13), 160 + 20 -> level 8 (1)
    const auto z = decode_bytes(dtype::iq4_xs, &c, 256);
    EXPECT_EQ(z[164], 0.25f * 23 * 13);
    EXPECT_EQ(z[180], 0.25f * 23 * 1);
    EXPECT_EQ(z[0], 0.25f * -32 * -127);
}

// Quantisation choices of llama-quantize's reference quantisers that a different search would not make.
TEST(QuantTypes, QuantiserChoicesAsGgml) {
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[static_cast<std::size_t>(j)] = static_cast<float>(j) * 0.1f - 1.0f;
    x[5] = -4.0f;  // the signed extreme
    block_q5_0 b5{};
    quantize_row(dtype::q5_0, x.data(), &b5, 32);
    EXPECT_EQ(fp16_to_fp32(b5.d), fp16_to_fp32(fp32_to_fp16(-4.0f / -16.0f)));
    EXPECT_EQ(decode_bytes(dtype::q5_0, &b5, 32)[5], -4.0f);  // maps to q = 0 exactly
    block_q4_1 b4{};
    quantize_row(dtype::q4_1, x.data(), &b4, 32);
    EXPECT_EQ(fp16_to_fp32(b4.m), -4.0f);
    EXPECT_EQ(fp16_to_fp32(b4.d), fp16_to_fp32(fp32_to_fp16((x[31] - -4.0f) / 15.0f)));
    block_iq4_nl bn{};
    quantize_row(dtype::iq4_nl, x.data(), &bn, 32);
    const int level = bn.qs[5] & 0x0f;
    EXPECT_TRUE(level == 0 || level == 15) << level;  // the extreme gets an outermost level (d may be negative)
}

TEST(QuantTypes, ExactOnRepresentableValues) {
    // Every element a level the format stores exactly (small integers times a power of two).
    for (dtype t : {dtype::q4_1, dtype::q5_0, dtype::q5_1}) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        const int levels = t == dtype::q4_1 ? 16 : 32;
        std::vector<float> x(256);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = (static_cast<float>(static_cast<int>(i * 7 % levels)) - (t == dtype::q5_0 ? 16 : 0)) * 0.125f;
        for (std::size_t b = 0; b < x.size(); b += 32) x[b] = (t == dtype::q5_0 ? -16 : 0) * 0.125f, x[b + 1] = (levels - 1 - (t == dtype::q5_0 ? 16 : 0)) * 0.125f;
        const auto y = round_trip(t, x);
        for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], x[i]) << i;
    }
}

// Round-trip RMS error relative to sigma on Gaussian data: bounded by each format's step size
// (uniform rounding error = step / sqrt(12)); the lower bits the looser. Also: the error must
// shrink with more bits where formats are otherwise alike.
TEST(QuantTypes, RoundTripErrorBounds) {
    const auto x = gaussian(256 * 64, 7);
    struct expectation {
        dtype t;
        double max_rel_rms;
    };
    double rms_of[64] = {};
    for (auto [t, bound] : {expectation{dtype::q4_1, 0.09}, expectation{dtype::q5_0, 0.05}, expectation{dtype::q5_1, 0.045},
                            expectation{dtype::q2_k, 0.35}, expectation{dtype::q3_k, 0.18}, expectation{dtype::q5_k, 0.045},
                            expectation{dtype::iq4_nl, 0.09}, expectation{dtype::iq4_xs, 0.09}, expectation{dtype::q4_k, 0.085},
                            expectation{dtype::q6_k, 0.035}}) {
        const auto y = round_trip(t, x);
        double se = 0;
        for (std::size_t i = 0; i < x.size(); ++i) se += (y[i] - x[i]) * (y[i] - x[i]);
        const double rel = std::sqrt(se / static_cast<double>(x.size()));
        rms_of[static_cast<int>(t)] = rel;
        std::printf("[ measured ] %s round trip: rms error %.4f sigma\n", std::string(dtype_name(t)).c_str(), rel);
        EXPECT_LT(rel, bound) << dtype_name(t);
        EXPECT_GT(rel, 0.0) << dtype_name(t);
    }
    EXPECT_LT(rms_of[static_cast<int>(dtype::q5_k)], rms_of[static_cast<int>(dtype::q4_k)]);
    EXPECT_LT(rms_of[static_cast<int>(dtype::q4_k)], rms_of[static_cast<int>(dtype::q3_k)]);
    EXPECT_LT(rms_of[static_cast<int>(dtype::q3_k)], rms_of[static_cast<int>(dtype::q2_k)]);
    EXPECT_LT(rms_of[static_cast<int>(dtype::q5_1)], rms_of[static_cast<int>(dtype::q4_1)]);
}

TEST(QuantTypes, ZeroRowsStayZero) {
    std::vector<float> x(512, 0.0f);
    for (dtype t : k_new_types) {
        const auto y = round_trip(t, x);
        for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(t);
    }
}

namespace {

// The reference decoder of each type, called directly.
void reference_decode(dtype t, const void* q, float* y, std::int64_t n) {
    switch (t) {
        case dtype::q4_1: ref::dequantize_q4_1(static_cast<const block_q4_1*>(q), y, n); break;
        case dtype::q5_0: ref::dequantize_q5_0(static_cast<const block_q5_0*>(q), y, n); break;
        case dtype::q5_1: ref::dequantize_q5_1(static_cast<const block_q5_1*>(q), y, n); break;
        case dtype::q2_k: ref::dequantize_q2_k(static_cast<const block_q2_k*>(q), y, n); break;
        case dtype::q3_k: ref::dequantize_q3_k(static_cast<const block_q3_k*>(q), y, n); break;
        case dtype::q5_k: ref::dequantize_q5_k(static_cast<const block_q5_k*>(q), y, n); break;
        case dtype::iq4_nl: ref::dequantize_iq4_nl(static_cast<const block_iq4_nl*>(q), y, n); break;
        case dtype::iq4_xs: ref::dequantize_iq4_xs(static_cast<const block_iq4_xs*>(q), y, n); break;
        default: FAIL() << "no reference decoder for " << dtype_name(t);
    }
}

// Byte offsets of the fp16 fields in one block of t.
std::vector<std::size_t> fp16_fields(dtype t) {
    switch (t) {
        case dtype::q4_1: case dtype::q5_1: case dtype::q5_k: return {0, 2};
        case dtype::q2_k: return {80, 82};
        case dtype::q3_k: return {108};
        default: return {0};  // q5_0, iq4_nl, iq4_xs
    }
}

}  // namespace

// The vectorised decoders (dequantize_row, and so the GEMM's tiles) give the reference's bits, on
// quantised data and on blocks of random bytes (every bit pattern of the quants, scales, high bits;
// fp16 fields kept finite).
TEST(QuantTypes, FastDecodersMatchReference) {
    const auto x = gaussian(1024, 9);
    std::mt19937 rng(23);
    for (dtype t : k_new_types) {
        SCOPED_TRACE(std::string(dtype_name(t)));
        std::vector<std::uint8_t> q(row_bytes(t, x.size()));
        quantize_row(t, x.data(), q.data(), 1024);
        std::vector<float> a(1024), b(1024);
        dequantize_row(t, q.data(), a.data(), 1024);
        reference_decode(t, q.data(), b.data(), 1024);
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);

        const std::int64_t n = 256 * 64;
        std::vector<std::uint8_t> raw(row_bytes(t, static_cast<std::uint64_t>(n)));
        for (auto& v : raw) v = static_cast<std::uint8_t>(rng());
        const std::size_t bb = block_bytes(t);
        for (std::size_t off = 0; off < raw.size(); off += bb)
            for (std::size_t f : fp16_fields(t)) raw[off + f + 1] = static_cast<std::uint8_t>(raw[off + f + 1] & 0x7b);
        std::vector<float> fast(static_cast<std::size_t>(n)), slow(static_cast<std::size_t>(n));
        dequantize_row(t, raw.data(), fast.data(), n);
        reference_decode(t, raw.data(), slow.data(), n);
        for (std::size_t i = 0; i < fast.size(); ++i)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[i]), std::bit_cast<std::uint32_t>(slow[i])) << i;
    }
}

TEST(QuantTypes, BlockCountMustDivideTheRow) {
    std::vector<float> x(960);
    std::vector<std::byte> q(4096);
    for (dtype t : {dtype::q2_k, dtype::q3_k, dtype::q5_k, dtype::iq4_xs}) EXPECT_THROW(quantize_row(t, x.data(), q.data(), 960), shape_error);
    for (dtype t : {dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::iq4_nl}) EXPECT_THROW(dequantize_row(t, q.data(), x.data(), 48), shape_error);
}

// The llama256 files made by llama-quantize (mixed types) against llama.cpp's logits.
class QuantCoverage : public ::testing::TestWithParam<const char*> {};

TEST_P(QuantCoverage, MatchesLlamaCpp) {
    const std::string name = GetParam();
    MINIGPT_REQUIRE_SHARED("models/coverage/" + name + ".gguf");
    auto m = model::load(shared_path("models/coverage/" + name + ".gguf"));
    const auto ids = read_ids(shared_path("models/coverage/" + name + ".prompt-ids.txt"));
    const auto golden = read_f32(shared_path("models/coverage/" + name + ".logits.f32"));
    const std::int64_t n_vocab = m->config().n_vocab, n_pos = static_cast<std::int64_t>(ids.size());
    ASSERT_EQ(static_cast<std::int64_t>(golden.size()), n_pos * n_vocab);
    context ctx(m, {.n_ctx = n_pos});
    ctx.decode(ids, logits_for::all);
    int agree = 0;
    double worst_rel = 0;
    for (std::int64_t p = 0; p < n_pos; ++p) {
        const auto got = ctx.logits(p);
        const float* ref = golden.data() + p * n_vocab;
        double mean = 0, var = 0, err = 0;
        for (std::int64_t i = 0; i < n_vocab; ++i) mean += ref[i];
        mean /= static_cast<double>(n_vocab);
        for (std::int64_t i = 0; i < n_vocab; ++i) var += (ref[i] - mean) * (ref[i] - mean), err += std::fabs(got[static_cast<std::size_t>(i)] - ref[i]);
        const double rel = err / static_cast<double>(n_vocab) / std::sqrt(var / static_cast<double>(n_vocab));
        worst_rel = std::max(worst_rel, rel);
        EXPECT_LE(rel, 0.06) << name << " position " << p;
        agree += std::max_element(got.begin(), got.end()) - got.begin() == std::max_element(ref, ref + n_vocab) - ref;
    }
    const double agreement = static_cast<double>(agree) / static_cast<double>(n_pos);
    std::printf("[ measured ] %s: argmax agreement %.3f, worst mean |err| / row std %.4f\n", name.c_str(), agreement, worst_rel);
    EXPECT_GE(agreement, 0.85) << name;
}

INSTANTIATE_TEST_SUITE_P(Llama256, QuantCoverage, ::testing::Values("llama256-Q5_K_M", "llama256-Q5_0", "llama256-Q4_1"),
                         [](const auto& info) {
                             std::string s = info.param;
                             std::replace(s.begin(), s.end(), '-', '_');
                             return s;
                         });

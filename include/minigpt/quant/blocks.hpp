// On-disk block structs of the quantised GGUF types, byte for byte as ggml lays them out.
//
// A quantised row is a run of these blocks with no padding between them, so a
// pointer into a memory-mapped GGUF file can be cast to `const block_q4_0*` etc.
// All members have alignment 1 or 2 and every struct size is even, so arrays of
// blocks need only 2-byte alignment; the static_asserts pin the sizes ggml uses.
// The full layouts and dequantisation formulas are in docs/formats.md.
#pragma once

#include <cstdint>

namespace minigpt::quant {

inline constexpr int k_qk = 32;     // elements per Q8_0 / Q4_0 block
inline constexpr int k_qk_k = 256;  // elements per K-quant super-block

// 32 elements: x[j] = qs[j] * d.
struct block_q8_0 {
    std::uint16_t d;             // fp16 scale
    std::int8_t qs[k_qk];
};
static_assert(sizeof(block_q8_0) == 34);

// 32 elements: x[j] = ((qs[j] & 15) - 8) * d, x[j + 16] = ((qs[j] >> 4) - 8) * d, j < 16.
struct block_q4_0 {
    std::uint16_t d;             // fp16 scale
    std::uint8_t qs[k_qk / 2];
};
static_assert(sizeof(block_q4_0) == 18);

// 256 elements in 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min:
// x = d * sc[s] * q - dmin * m[s], q a 4-bit nibble (see quant/reference.hpp for the packing).
struct block_q4_k {
    std::uint16_t d;             // fp16 scale of the sub-block scales
    std::uint16_t dmin;          // fp16 scale of the sub-block mins
    std::uint8_t scales[12];     // 8 scales and 8 mins, 6 bits each, packed
    std::uint8_t qs[k_qk_k / 2]; // nibbles, 64 elements per 32 bytes
};
static_assert(sizeof(block_q4_k) == 144);

// 256 elements in 16 groups of 16, each with an int8 scale: x = d * scales[g] * (q - 32),
// q a 6-bit value split into 4 low bits (ql) and 2 high bits (qh).
struct block_q6_k {
    std::uint8_t ql[k_qk_k / 2];
    std::uint8_t qh[k_qk_k / 4];
    std::int8_t scales[k_qk_k / 16];
    std::uint16_t d;             // fp16 super-block scale
};
static_assert(sizeof(block_q6_k) == 210);

// 32 elements: x[j] = d * q[j] + m, q the 4-bit nibble (Q4_0's order: low nibbles first).
struct block_q4_1 {
    std::uint16_t d;             // fp16 scale
    std::uint16_t m;             // fp16 offset (the block minimum)
    std::uint8_t qs[k_qk / 2];
};
static_assert(sizeof(block_q4_1) == 20);

// 32 elements: x[j] = d * (q[j] - 16), q = nibble | (bit j of qh) << 4; nibbles in Q4_0's order,
// qh bit j belongs to element j.
struct block_q5_0 {
    std::uint16_t d;             // fp16 scale
    std::uint8_t qh[4];          // 32 fifth bits, little-endian
    std::uint8_t qs[k_qk / 2];
};
static_assert(sizeof(block_q5_0) == 22);

// 32 elements: x[j] = d * q[j] + m, q as in Q5_0 (0..31).
struct block_q5_1 {
    std::uint16_t d;             // fp16 scale
    std::uint16_t m;             // fp16 offset
    std::uint8_t qh[4];
    std::uint8_t qs[k_qk / 2];
};
static_assert(sizeof(block_q5_1) == 24);

// 256 elements in 16 groups of 16: x = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4), q 2 bits.
// Byte l of each 32-byte half of qs holds elements 128h + l + 32k at bits 2k..2k+1 (k = 0..3).
struct block_q2_k {
    std::uint8_t scales[k_qk_k / 16];
    std::uint8_t qs[k_qk_k / 4];
    std::uint16_t d;             // fp16 scale of the group scales
    std::uint16_t dmin;          // fp16 scale of the group mins
};
static_assert(sizeof(block_q2_k) == 84);

// 256 elements in 16 groups of 16: x = d * (sc[g] - 32) * (q - 4 * !hbit), q 2 low bits laid out as
// Q2_K's, hbit bit (4h + k) of hmask[l] for element 128h + 32k + l; sc 6-bit values packed in 12 bytes.
struct block_q3_k {
    std::uint8_t hmask[k_qk_k / 8];
    std::uint8_t qs[k_qk_k / 4];
    std::uint8_t scales[12];
    std::uint16_t d;             // fp16 super-block scale
};
static_assert(sizeof(block_q3_k) == 110);

// 256 elements: Q4_K with a fifth bit per element: bit 2c of qh[l] for element 64c + l, bit 2c+1 for
// 64c + 32 + l, so q is 0..31; scales and mins packed exactly as Q4_K's.
struct block_q5_k {
    std::uint16_t d;
    std::uint16_t dmin;
    std::uint8_t scales[12];
    std::uint8_t qh[k_qk_k / 8];
    std::uint8_t qs[k_qk_k / 2];
};
static_assert(sizeof(block_q5_k) == 176);

// The 16 non-uniform levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl): denser near zero, where most
// weights are.
inline constexpr std::int8_t k_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// 32 elements: x[j] = d * k_iq4nl_values[q[j]], nibbles in Q4_0's order.
struct block_iq4_nl {
    std::uint16_t d;
    std::uint8_t qs[k_qk / 2];
};
static_assert(sizeof(block_iq4_nl) == 18);

// 256 elements in 8 sub-blocks of 32, each IQ4_NL-coded with scale d * (ls - 32), ls a 6-bit value:
// low 4 bits in nibble (s & 1) of scales_l[s / 2], high 2 bits at bits 2s..2s+1 of scales_h.
struct block_iq4_xs {
    std::uint16_t d;
    std::uint16_t scales_h;
    std::uint8_t scales_l[k_qk_k / 64];
    std::uint8_t qs[k_qk_k / 2];
};
static_assert(sizeof(block_iq4_xs) == 136);

// In-memory activation blocks (never on disk): an f32 vector quantised once per matmul so
// that the dot products with quantised weights run in integer arithmetic.

// 32 activations: x[j] ~ qs[j] * d. `sum` is the sum of qs, which lets a weight format with an
// offset (Q4_0's "- 8") fold the offset into one multiply per block instead of per element.
struct act_q8_32 {
    float d;
    std::int32_t sum;
    std::int8_t qs[k_qk];
};
static_assert(sizeof(act_q8_32) == 40);

// 32 activations for the packed (row-interleaved) kernels of quant/repack.hpp: as act_q8_32, but
// carrying the weight layout's zero-point correction, seed = -z * sum(qs) (z = 8 for Q4_0's
// nibbles, 128 for packed Q8_0's w + 128 bytes), ready to start the int32 sums of a block.
struct act_q8_32_seeded {
    float d;
    std::int32_t seed;
    std::int8_t qs[k_qk];
};
static_assert(sizeof(act_q8_32_seeded) == 40);

// 256 activations for the K-quants: x[j] ~ qs[j] * d; bsums[g] is the sum of qs over group g
// of 16, which carries Q4_K's mins and Q6_K's "- 32" offset.
struct act_q8_256 {
    float d;
    std::int8_t qs[k_qk_k];
    std::int16_t bsums[k_qk_k / 16];
};
static_assert(sizeof(act_q8_256) == 292);

}  // namespace minigpt::quant

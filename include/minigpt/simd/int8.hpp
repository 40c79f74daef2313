// 8-bit integer dot-product primitives for the quantised matmul kernels.
//
// The quantised kernels multiply 8-bit weights (or 4/6-bit values widened to bytes)
// by 8-bit activations and accumulate in int32, which is exact, so the only error of
// a quantised matmul is the activation rounding. xsimd 8 has no u8*i8 dot product,
// so the instructions are wrapped here on raw 256-bit registers (one 32-element block
// per register): AVX-512 VNNI (vpdpbusd / vpdpwssd on ymm) or AVX-VNNI when the compiler
// targets them, otherwise AVX2 vpmaddubsw + vpmaddwd.
//
// Every function carries MINIGPT_TARGET_AVX2 (AVX2 + FMA + F16C), and so must every kernel
// that calls them with vectors in flight, so that they compile in any x86-64 build, as
// simd/avx512f.hpp's do: MINIGPT_SIMD_INT8_AVX2 says they exist (x86-64, GCC or Clang).
// A build whose own flags include AVX2 defines MINIGPT_SIMD_INT8 and calls the kernels
// directly; a baseline x86-64 build (no -march) calls them after int8_avx2_supported() has
// checked the CPU, and otherwise runs the kernels' scalar loops. (xsimd cannot serve: a
// translation unit compiled without AVX2 has no 256-bit integer batches.)
// With AVX-512 BW + VNNI in the build's flags, MINIGPT_SIMD_INT8_512 adds 512-bit forms
// that take two 32-element blocks per register, halving the instruction count of the
// Q8_0 / Q4_0 row kernels.
//
// vpmaddubsw saturates its int16 pair sums, so the AVX2 fallback is exact only when
// a0*b0 + a1*b1 fits in int16; the preconditions below guarantee that (unsigned
// operands <= 127, signed activations in -127..127), and VNNI is exact regardless.
#pragma once

#include <cstdint>

#include <xsimd/xsimd.hpp>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define MINIGPT_SIMD_INT8_AVX2 1
#define MINIGPT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define MINIGPT_SIMD_INT8 1
#endif
#endif

namespace minigpt::simd {

#if defined(MINIGPT_SIMD_INT8_AVX2)

// True when the kernels may run the AVX2 forms: always in a build targeting AVX2, otherwise
// when the CPU has AVX2, FMA and F16C (Intel Haswell, AMD Zen and later). Checked once.
inline bool int8_avx2_supported() {
#if defined(MINIGPT_SIMD_INT8)
    return true;
#else
    static const bool yes = [] {
        __builtin_cpu_init();
        // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }();
    return yes;
#endif
}

// Names for what a register holds; all are raw 256-bit registers.
using u8x32 = __m256i;
using i8x32 = __m256i;
using i16x16 = __m256i;
using i32x8 = __m256i;
using f32x8 = __m256;

#define MINIGPT_INT8_OP MINIGPT_TARGET_AVX2 __attribute__((always_inline)) inline

MINIGPT_INT8_OP u8x32 load_u8x32(const std::uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
MINIGPT_INT8_OP i8x32 load_i8x32(const std::int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
MINIGPT_INT8_OP u8x32 splat_u8(std::uint8_t v) { return _mm256_set1_epi8(static_cast<char>(v)); }
MINIGPT_INT8_OP i16x16 splat_i16(std::int16_t v) { return _mm256_set1_epi16(v); }
MINIGPT_INT8_OP u8x32 bits_and(u8x32 a, u8x32 b) { return _mm256_and_si256(a, b); }
MINIGPT_INT8_OP u8x32 bits_or(u8x32 a, u8x32 b) { return _mm256_or_si256(a, b); }
MINIGPT_INT8_OP f32x8 zero_f32x8() { return _mm256_setzero_ps(); }

// One fp16 value as f32 (exact), in one instruction.
MINIGPT_INT8_OP float f16_scale(std::uint16_t h) { return _cvtsh_ss(h); }

// 16 packed bytes -> 32 bytes: the 16 low nibbles, then the 16 high nibbles (Q4_0's order).
MINIGPT_INT8_OP u8x32 unpack_nibbles_16(const std::uint8_t* p) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

MINIGPT_INT8_OP u8x32 low_nibbles(u8x32 v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0f)); }
MINIGPT_INT8_OP u8x32 high_nibbles(u8x32 v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f)); }

// Per-byte shifts (x86 has none): 16-bit shift, then drop the bits that crossed a byte.
template <int n> MINIGPT_INT8_OP u8x32 shift_left_u8(u8x32 v) {
    return _mm256_and_si256(_mm256_slli_epi16(v, n), _mm256_set1_epi8(static_cast<char>((0xff << n) & 0xff)));
}
template <int n> MINIGPT_INT8_OP u8x32 shift_right_u8(u8x32 v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, n), _mm256_set1_epi8(static_cast<char>(0xff >> n)));
}

// acc[i] + sum_{k<4} a[4i+k] * b[4i+k], a unsigned, b signed. Requires a <= 127 (exact on
// every target then); Q4/Q6 values (<= 63) satisfy it.
MINIGPT_INT8_OP i32x8 dot_u8i8(i32x8 acc, u8x32 a, i8x32 b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, a, b);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
#endif
}

// Pieces of dot_i8i8 for kernels that share |a| among several b (dot_i8i8(0, a, b) ==
// dot_abs_signed(abs_i8(a), sign_like(b, a)), the same int32 lanes).
MINIGPT_INT8_OP u8x32 abs_i8(i8x32 a) { return _mm256_abs_epi8(a); }
MINIGPT_INT8_OP i8x32 sign_like(i8x32 b, i8x32 a) { return _mm256_sign_epi8(b, a); }
MINIGPT_INT8_OP i32x8 dot_abs_signed(u8x32 abs_a, i8x32 signed_b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), abs_a, signed_b);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), abs_a, signed_b);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(abs_a, signed_b), _mm256_set1_epi16(1));
#endif
}
MINIGPT_INT8_OP f32x8 splat_f32(float v) { return _mm256_set1_ps(v); }
MINIGPT_INT8_OP f32x8 broadcast_f32(const float* p) { return _mm256_broadcast_ss(p); }
MINIGPT_INT8_OP f32x8 mul(f32x8 a, f32x8 b) { return _mm256_mul_ps(a, b); }
// acc + float(v) * s.
MINIGPT_INT8_OP f32x8 fma_i32(f32x8 acc, i32x8 v, f32x8 s) { return _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), s, acc); }

// As dot_u8i8 with both operands signed. Moves a's sign onto b (|a| <= 128 fits the unsigned
// side); requires b in -127..127 so that negating b cannot overflow.
MINIGPT_INT8_OP i32x8 dot_i8i8(i32x8 acc, i8x32 a, i8x32 b) {
    const __m256i abs_a = _mm256_abs_epi8(a);
    const __m256i signed_b = _mm256_sign_epi8(b, a);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, abs_a, signed_b);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(acc, abs_a, signed_b);
#else
    // |a| * |b| <= 128 * 127: a pair sum fits int16 exactly.
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(abs_a, signed_b), _mm256_set1_epi16(1)));
#endif
}

// acc[i] + scales[2i] * (a[4i]b[4i] + a[4i+1]b[4i+1]) + scales[2i+1] * (a[4i+2]b[4i+2] + a[4i+3]b[4i+3]):
// byte products summed in pairs, then weighted by one int16 scale per pair. Requires a <= 127
// (pair sums then fit int16 without saturation).
MINIGPT_INT8_OP i32x8 dot_u8i8_scaled(i32x8 acc, u8x32 a, i8x32 b, i16x16 scales) {
    const __m256i pairs = _mm256_maddubs_epi16(a, b);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, pairs, scales);
#elif defined(__AVXVNNI__)
    return _mm256_dpwssd_avx_epi32(acc, pairs, scales);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales));
#endif
}

// int16 scale vector whose low 8 lanes (bytes 0..15 of a dot_u8i8_scaled operand) are lo and
// high 8 lanes (bytes 16..31) are hi.
MINIGPT_INT8_OP i16x16 scales_lo_hi(std::int16_t lo, std::int16_t hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(lo)), _mm_set1_epi16(hi), 1);
}

// An int32 vector holding v in lane 0 and zeros elsewhere: seeds an accumulator with a
// per-block offset correction at the cost of one move.
MINIGPT_INT8_OP i32x8 lane0(std::int32_t v) { return _mm256_zextsi128_si256(_mm_cvtsi32_si128(v)); }

// acc + float(v) * s.
MINIGPT_INT8_OP f32x8 fma_i32(f32x8 acc, i32x8 v, float s) { return _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(s), acc); }

// Sum of the 8 lanes (also the float kernels' 256-bit and 512-bit reductions, simd/avx512f.hpp).
MINIGPT_INT8_OP float reduce_add(f32x8 v) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
}

// Per byte: `value` where bit `bit` of v is set, else 0 (Q5's fifth bits, Q3_K's high bits; the
// bit index may vary at run time).
MINIGPT_INT8_OP u8x32 select_bit(u8x32 v, int bit, std::uint8_t value) {
    const __m256i m = _mm256_set1_epi8(static_cast<char>(1 << bit));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, m), m), _mm256_set1_epi8(static_cast<char>(value)));
}

// The 32 bits at p (little-endian) spread to 32 bytes: byte j = value if bit j is set, else 0.
MINIGPT_INT8_OP u8x32 spread_bits_32(const std::uint8_t* p, std::uint8_t value) {
    std::uint32_t bits;
    __builtin_memcpy(&bits, p, 4);
    // Byte j takes source byte j / 8; OR-ing every bit but bit j % 8 leaves 0xff exactly when it is set.
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                              _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i ones = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
    return _mm256_and_si256(ones, _mm256_set1_epi8(static_cast<char>(value)));
}

// Per byte: (v >> shift) & 3 for shift in 0, 2, 4, 6 (Q2_K / Q3_K's 2-bit fields).
MINIGPT_INT8_OP u8x32 two_bits(u8x32 v, int shift) {
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(3));
}

// Per byte: table[v & 15] for a 16-entry signed table (IQ4_NL's levels), v holding indices 0..15.
MINIGPT_INT8_OP i8x32 lookup_16(u8x32 v, const std::int8_t* table) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(table));
    return _mm256_shuffle_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1), v);
}

// As dot_u8i8_scaled with a signed: |a| goes on the unsigned side and a's sign onto b. Requires
// |a| <= 127 and b in -127..127, so that pair sums fit int16 (IQ4's levels and activations do).
MINIGPT_INT8_OP i32x8 dot_i8i8_scaled(i32x8 acc, i8x32 a, i8x32 b, i16x16 scales) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, pairs, scales);
#elif defined(__AVXVNNI__)
    return _mm256_dpwssd_avx_epi32(acc, pairs, scales);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales));
#endif
}

// Per byte: (v >> shift) & 3 with the shift an immediate (Q2_K / Q3_K's 2-bit fields, in the
// kernels that unroll over the four fields of a byte).
template <int shift> MINIGPT_INT8_OP u8x32 two_bits_at(u8x32 v) {
    if constexpr (shift == 0) return _mm256_and_si256(v, _mm256_set1_epi8(3));
    else return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(3));
}

// Per byte: 4 where bit `bit` of v is set, else 0 (Q3_K's high bits, worth 4 in q = low + 4 * hbit).
// A 16-bit shift moves the bit to position 2 of its own byte (bits shifted across a byte boundary
// land elsewhere and are masked off).
template <int bit> MINIGPT_INT8_OP u8x32 bit_as_4(u8x32 v) {
    if constexpr (bit > 2) return _mm256_and_si256(_mm256_srli_epi16(v, bit - 2), _mm256_set1_epi8(4));
    else if constexpr (bit < 2) return _mm256_and_si256(_mm256_slli_epi16(v, 2 - bit), _mm256_set1_epi8(4));
    else return _mm256_and_si256(v, _mm256_set1_epi8(4));
}

// 16 bytes widened to 16 int16 lanes: unsigned (Q2_K's 4-bit scales and mins) or signed (Q3_K's).
MINIGPT_INT8_OP i16x16 widen_u8_i16(__m128i v) { return _mm256_cvtepu8_epi16(v); }
MINIGPT_INT8_OP i16x16 widen_i8_i16(__m128i v) { return _mm256_cvtepi8_epi16(v); }
MINIGPT_INT8_OP i16x16 load_i16x16(const std::int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// acc[i] + a[2i] * b[2i] + a[2i+1] * b[2i+1] on int16 lanes (vpdpwssd where the build has it).
// Exact when each pair sum fits int32 (always for products of two int16 pairs not both -32768).
MINIGPT_INT8_OP i32x8 dot_i16(i32x8 acc, i16x16 a, i16x16 b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, a, b);
#elif defined(__AVXVNNI__)
    return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// From the 16 int16 group scales of a K-quant super-block (groups of 16 elements), the
// dot_u8i8_scaled operand of 32-byte chunk j (elements 32j..32j+31): group 2j's scale in the low 8
// lanes, group 2j+1's in the high 8. One lane permute and one byte shuffle, both on registers
// (what scales_lo_hi does from two scalars costs two GPR -> vector moves and an insert).
template <int j> MINIGPT_INT8_OP i16x16 scale_pair(i16x16 all) {
    static_assert(j >= 0 && j < 8);
    constexpr char k = static_cast<char>(4 * (j % 4));
    const __m256i half = _mm256_permute4x64_epi64(all, j < 4 ? 0x44 : 0xee);  // words 8(j/4)..+7 in both lanes
    const __m256i ctl = _mm256_setr_epi8(k, k + 1, k, k + 1, k, k + 1, k, k + 1, k, k + 1, k, k + 1, k, k + 1, k, k + 1,
                                         k + 2, k + 3, k + 2, k + 3, k + 2, k + 3, k + 2, k + 3, k + 2, k + 3, k + 2, k + 3,
                                         k + 2, k + 3, k + 2, k + 3);
    return _mm256_shuffle_epi8(half, ctl);
}

// Pins a vector in a register: GCC otherwise reloads a value that many instructions share.
MINIGPT_INT8_OP void keep_in_register(__m256i& v) { asm("" : "+x"(v)); }

#undef MINIGPT_INT8_OP

#endif  // MINIGPT_SIMD_INT8_AVX2

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define MINIGPT_SIMD_INT8_512 1

// Two 32-element blocks per register: lanes 0-7 (bytes 0-31) belong to the first block,
// lanes 8-15 (bytes 32-63) to the second. The masked / maskz intrinsic forms are used where
// the plain ones pass _mm512_undefined_*() through, on which GCC 12 warns falsely.
using u8x64 = xsimd::batch<std::uint8_t, xsimd::avx512bw>;
using i8x64 = xsimd::batch<std::int8_t, xsimd::avx512bw>;
using i32x16 = xsimd::batch<std::int32_t, xsimd::avx512bw>;
using f32x16 = xsimd::batch<float, xsimd::avx512bw>;

// 32 bytes at a then 32 bytes at b.
inline i8x64 load_2x32(const std::int8_t* a, const std::int8_t* b) {
    const __m512i lo = _mm512_maskz_loadu_epi64(0x0f, a);
    return _mm512_mask_broadcast_i64x4(lo, 0xf0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
}

// Two Q4_0 nibble arrays (16 bytes each) -> [low nibbles a, high nibbles a, low b, high b].
inline u8x64 unpack_nibbles_2x16(const std::uint8_t* a, const std::uint8_t* b) {
    const __m512i aa = _mm512_maskz_broadcast_i32x4(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
    const __m512i aabb = _mm512_mask_broadcast_i32x4(aa, 0xff00, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    // Shift the 16-bit words of 128-bit lanes 1 and 3 (words 8-15 and 24-31: the "high
    // nibble" copies) right by 4.
    const __m512i shifted = _mm512_mask_srli_epi16(aabb, 0xff00ff00u, aabb, 4);
    return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0f));
}

// Flips the sign bit of each byte: w -> w + 128 as an unsigned byte (0..255), so a signed
// weight can take the unsigned side of vpdpbusd; the caller subtracts 128 * sum(x).
inline u8x64 flip_sign_bits(i8x64 v) { return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80))); }

// acc + sum of 4 adjacent u8*i8 products per int32 lane (exact, no saturation).
inline i32x16 dot_u8i8(i32x16 acc, u8x64 a, i8x64 b) { return _mm512_dpbusd_epi32(__m512i(acc), __m512i(a), __m512i(b)); }

// int32 vector with lo in lane 0, hi in lane 8, zeros elsewhere (per-block offset seeds).
inline i32x16 lane0_lane8(std::int32_t lo, std::int32_t hi) {
    return _mm512_maskz_set1_epi32(0x0001, lo) | i32x16(_mm512_maskz_set1_epi32(0x0100, hi));
}

// f32 vector with lo in lanes 0-7 and hi in lanes 8-15.
inline f32x16 halves(float lo, float hi) { return _mm512_mask_mov_ps(_mm512_set1_ps(lo), 0xff00, _mm512_set1_ps(hi)); }

// As halves() from two fp16 values, converted in one instruction.
inline f32x16 halves_f16(std::uint16_t lo, std::uint16_t hi) {
    const __m256i h = _mm256_mask_set1_epi16(_mm256_set1_epi16(static_cast<short>(lo)), 0xff00, static_cast<short>(hi));
    return _mm512_maskz_cvtph_ps(0xffff, h);
}

// acc + float(v) * s.
inline f32x16 fma_i32(f32x16 acc, i32x16 v, f32x16 s) { return xsimd::fma(f32x16(_mm512_maskz_cvtepi32_ps(0xffff, v)), s, acc); }

#endif  // MINIGPT_SIMD_INT8_512

}  // namespace minigpt::simd

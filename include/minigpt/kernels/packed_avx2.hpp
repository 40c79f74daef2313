// The packed (16-row interleaved) Q4_0 / Q8_0 kernel for CPUs with AVX2 but no AVX-512 VNNI.
//
// Same layout and same sums as the VNNI kernel of matmul_packed.hpp: per 32-element block and
// weight row an exact int32 dot product, then acc += float(isum) * (scale_w * scale_x) in block
// order. The interleaving is what makes AVX2 fast here: a 32-byte load holds 4 consecutive
// weights of 8 rows, so one vpmaddubsw against 4 activation bytes broadcast to every lane serves
// 8 rows at once, and the int32 sums of a block stay in lanes (one per row) until the block is
// done. The per-row kernels instead pay a conversion, a scale product and an FMA per block, row
// and token, which is what bounds several tokens once the weights are in cache; here those are
// paid once per 8 rows.
//
// vpmaddubsw needs one unsigned operand and saturates its int16 pair sums:
// - Q4_0 nibbles (q + 8, 0..15) go on the unsigned side as stored. A pair sum is at most
//   2 * 15 * 128 = 3840, so the 8 products of a block add up in int16 exactly (<= 30720) and
//   are widened once per block; the seed -8 * sum(x) removes the offset.
// - Q8_0 bytes (q + 128) are turned back into q, whose magnitude goes on the unsigned side and
//   whose sign onto the activation (|q| <= 127 for every quantiser, activations in -127..127),
//   so pair sums fit int16; they are widened per 4 columns. No seed: the sum is of q itself,
//   the same integer as seed + sum((q + 128) x).
// A tile is 8 rows (half a group) by up to 4 tokens, which keeps the int32 / int16 block sums
// and the f32 accumulators in the 16 registers; packed_tile_avx2 covers a group's 16 rows and up
// to 8 tokens with such tiles, re-reading the group's bytes from L1 (or, for one or two tokens,
// both halves in one tile).
#pragma once

#include <cstddef>
#include <cstdint>

#include "minigpt/core/dtype.hpp"
#include "minigpt/quant/blocks.hpp"
#include "minigpt/quant/repack.hpp"
#include "minigpt/simd/int8.hpp"
#include "minigpt/simd/prefetch.hpp"

namespace minigpt::kernels::detail {

// With many tokens a packed tile (VNNI in matmul_packed.hpp, or AVX2 below) is compute-bound, and
// the hardware prefetchers alone left the weight stream well below what the cores can read: a tile
// of more than 4 tokens asks for the bytes k_packed_prefetch_bytes ahead of each block, into L2
// (prefetcht1; the AVX2 tile on its first pass over a chunk, the later passes read it from L1).
// 8 KiB (~15 Q8_0 or ~28 Q4_0 blocks) into L2 measured best of the distances and levels tried
// (docs/benchmarks.md, bench gpt2_step_products). One or two tokens are bound by memory, where the
// extra requests made the products slower, so they are left to the hardware.
inline constexpr std::int64_t k_packed_prefetch_bytes = 8192;

template <dtype T>
inline void prefetch_packed_ahead(const std::byte* block_quants) {
    const char* p = reinterpret_cast<const char*>(block_quants) + k_packed_prefetch_bytes;
    constexpr int bytes = (T == dtype::q4_0 ? 256 : 512) + 2 * quant::k_pack_rows;  // a block's quants and scales
    for (int i = 0; i < bytes; i += 64) simd::prefetch_l2(p + i);
}

}  // namespace minigpt::kernels::detail

#if defined(MINIGPT_SIMD_INT8_AVX2)
namespace minigpt::kernels::detail {

inline constexpr std::int64_t k_packed_avx2_chunk = 16;  // blocks per pass of the tiles (512 columns)

// The 4 bytes at p in every 32-bit lane. vbroadcastss from memory is a load alone, where
// vpbroadcastd also takes a vector pipe on AMD Zen.
MINIGPT_TARGET_AVX2 __attribute__((always_inline)) inline __m256i bytes4(const std::int8_t* p) {
    return _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(p)));
}

// sums[h0 + i][t0 + t][r] += blocks [b0, b1) of row 8(h0 + i) + r of group g times token t0 + t
// (activations at a + (t0 + t) * a_stride), for i < NH halves and t < NT tokens, in block order.
// ask_ahead: request each block's bytes k_packed_prefetch_bytes ahead (the first pass of a chunk).
template <dtype T, int NT, int NH>
MINIGPT_TARGET_AVX2 inline void packed_half_avx2(const quant::packed_layout& L, const std::byte* data, std::int64_t g, int h0, int t0,
                                                 const quant::act_q8_32_seeded* a, std::int64_t a_stride, std::int64_t b0,
                                                 std::int64_t b1, float (&sums)[2][8][8], bool ask_ahead = false) {
    static_assert(NT >= 1 && NH >= 1 && NH <= 2 && NT * NH <= 4);
    const __m256i ones = _mm256_set1_epi16(1);
    a += t0 * a_stride;
    __m256 acc[NH][NT];
    for (int i = 0; i < NH; ++i)
        for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_load_ps(sums[h0 + i][t0 + t]);
    for (std::int64_t b = b0; b < b1; ++b) {
        const std::byte* block = data + L.quants_of(g, b);
        if (ask_ahead) prefetch_packed_ahead<T>(block);
        const std::byte* qb = block + 32 * h0;  // column group c of half h0 + i at qb + 64c + 32i
        __m256i isum[NH][NT];
        if constexpr (T == dtype::q4_0) {
            __m256i pairs[NH][NT];
            for (auto& row : pairs)
                for (auto& v : row) v = _mm256_setzero_si256();
            const __m256i mask = _mm256_set1_epi8(0x0f);
            for (int c = 0; c < 4; ++c) {
                for (int i = 0; i < NH; ++i) {
                    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qb + 64 * c + 32 * i));
                    const __m256i lo = _mm256_and_si256(q, mask), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
                    for (int t = 0; t < NT; ++t) {
                        const std::int8_t* x = a[t * a_stride + b].qs;
                        const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bytes4(x + 4 * c)), _mm256_maddubs_epi16(hi, bytes4(x + 16 + 4 * c)));
                        pairs[i][t] = _mm256_add_epi16(pairs[i][t], p);
                    }
                }
            }
            for (int i = 0; i < NH; ++i)
                for (int t = 0; t < NT; ++t)
                    isum[i][t] = _mm256_add_epi32(_mm256_madd_epi16(pairs[i][t], ones), _mm256_set1_epi32(a[t * a_stride + b].seed));
        } else {
            for (auto& row : isum)
                for (auto& v : row) v = _mm256_setzero_si256();
            const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
            for (int c = 0; c < 8; ++c) {
                for (int i = 0; i < NH; ++i) {
                    const __m256i q = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qb + 64 * c + 32 * i)), flip);
                    const __m256i abs_q = _mm256_abs_epi8(q);
                    for (int t = 0; t < NT; ++t) {
                        const __m256i x = bytes4(a[t * a_stride + b].qs + 4 * c);
                        isum[i][t] = _mm256_add_epi32(isum[i][t], _mm256_madd_epi16(_mm256_maddubs_epi16(abs_q, _mm256_sign_epi8(x, q)), ones));
                    }
                }
            }
        }
        for (int i = 0; i < NH; ++i) {
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + L.scales_of(g, b) + 16 * (h0 + i))));
            for (int t = 0; t < NT; ++t)
                acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][t]), _mm256_mul_ps(dw, _mm256_broadcast_ss(&a[t * a_stride + b].d)), acc[i][t]);
        }
    }
    for (int i = 0; i < NH; ++i)
        for (int t = 0; t < NT; ++t) _mm256_store_ps(sums[h0 + i][t0 + t], acc[i][t]);
}

// y[t * ldy + r] = row 16g + r times token t, for t < mt (<= 8) and r < n_rows (<= 16).
template <dtype T>
MINIGPT_TARGET_AVX2 inline void packed_tile_avx2(int mt, const quant::packed_layout& L, const std::byte* data, std::int64_t g,
                                                 const quant::act_q8_32_seeded* a, std::int64_t a_stride, float* y,
                                                 std::int64_t ldy, int n_rows) {
    // sums[h][t][r]: row 8h + r, token t. One or two tokens take both halves of the group in one pass
    // over all its blocks (decode reads each weight byte once from memory). More take 4 tokens of
    // one half at a time, k_packed_avx2_chunk blocks at a time, so that the group's bytes for those
    // blocks (~9 KiB of Q8_0) and the tokens' activations stay in L1 while every tile passes.
    alignas(32) float sums[2][8][8] = {};
    const bool one_pass = mt <= 2 && n_rows > 8;
    const std::int64_t chunk = one_pass ? L.n_blocks : k_packed_avx2_chunk;
    for (std::int64_t b0 = 0; b0 < L.n_blocks; b0 += chunk) {
        const std::int64_t b1 = b0 + chunk < L.n_blocks ? b0 + chunk : L.n_blocks;
        if (one_pass) {
            if (mt == 2) packed_half_avx2<T, 2, 2>(L, data, g, 0, 0, a, a_stride, b0, b1, sums);
            else packed_half_avx2<T, 1, 2>(L, data, g, 0, 0, a, a_stride, b0, b1, sums);
            continue;
        }
        for (int h = 0; h < 2 && 8 * h < n_rows; ++h) {
            for (int t = 0; t < mt;) {
                const int nt = mt - t >= 4 ? 4 : mt - t;
                switch (nt) {
                    case 4: packed_half_avx2<T, 4, 1>(L, data, g, h, t, a, a_stride, b0, b1, sums, mt > 4 && h == 0 && t == 0); break;
                    case 3: packed_half_avx2<T, 3, 1>(L, data, g, h, t, a, a_stride, b0, b1, sums); break;
                    case 2: packed_half_avx2<T, 2, 1>(L, data, g, h, t, a, a_stride, b0, b1, sums); break;
                    default: packed_half_avx2<T, 1, 1>(L, data, g, h, t, a, a_stride, b0, b1, sums); break;
                }
                t += nt;
            }
        }
    }
    for (int t = 0; t < mt; ++t)
        for (int r = 0; r < n_rows; ++r) y[t * ldy + r] = sums[r / 8][t][r % 8];
}

}  // namespace minigpt::kernels::detail
#endif

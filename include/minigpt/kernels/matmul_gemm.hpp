// Blocked f32 GEMM behind kernels::matmul for many tokens (prefill): Y += X · Wᵀ.
//
// X (n_tokens, n_in) and W (n_out, n_in) are both contiguous along n_in, so the
// micro-kernel works in dot-product form: a tile of MT tokens by NR weight rows keeps
// MT*NR vector accumulators, loads MT + NR vectors per step and issues MT*NR FMAs,
// then folds the accumulators with a shared transposing horizontal add —
// no packing of X is needed. The loops are blocked so that a tile of W (NR rows by
// k_block floats) sits in L1 while it meets a block of k_token_block tokens held in L2.
// Weights are decoded (or for f32 copied) one such tile at a time into a small buffer
// (the cost is shared by k_token_block tokens), so every dtype reuses this kernel and W
// is read from memory only n_tokens / k_token_block times.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "minigpt/core/tensor.hpp"
#include "minigpt/kernels/float_kernels.hpp"
#include "minigpt/quant/quant.hpp"
#include "minigpt/simd/convert.hpp"
#include "minigpt/simd/reduce.hpp"

namespace minigpt::kernels::detail {

inline constexpr int k_gemm_mt = 4;                  // tokens per micro-tile
inline constexpr int k_gemm_nr = 4;                  // weight rows per micro-tile
// n_in per cache block (a multiple of every block size). One block covers the whole row of the
// 768- and 960-wide models, so their accumulators are reduced once per tile instead of twice:
// 8-13% faster than 512 on 3072 x 768 (measured, 1 thread); a 4 x 1024 f32 tile is 16 KiB of L1.
inline constexpr std::int64_t k_block = 1024;
inline constexpr std::int64_t k_token_block = 192;   // tokens per cache block: 192 x 1024 floats = 768 KiB of L2
inline constexpr std::int64_t k_gemm_chunk_rows = 64; // rows per piece of parallel_for_balanced (a multiple of k_gemm_nr)

// Y[:, r0:r1) = X · W[r0:r1)ᵀ for one thread's range of weight rows. Y is (n_tokens, n_out).
inline void gemm_rows(const tensor& w, const float* x, float* y, std::int64_t n_tokens, std::int64_t r0, std::int64_t r1) {
    const std::int64_t n_in = w.dim(1), n_out = w.dim(0);
    const dtype type = w.type();
    const std::int64_t stride = w.stride_bytes(0);
    const std::int64_t bs = block_size(type), bb = block_bytes(type);
    alignas(64) float tile[k_gemm_nr * k_block];  // (k_gemm_nr, k_block) decoded weights, 16 KiB
    [[maybe_unused]] const bool use_avx512 = float_kernels_use_avx512();

    for (std::int64_t t = 0; t < n_tokens; ++t) std::fill(y + t * n_out + r0, y + t * n_out + r1, 0.0f);
    for (std::int64_t t0 = 0; t0 < n_tokens; t0 += k_token_block) {
        const std::int64_t t1 = std::min(n_tokens, t0 + k_token_block);
        for (std::int64_t k0 = 0; k0 < n_in; k0 += k_block) {
            const std::int64_t kl = std::min(k_block, n_in - k0);
            for (std::int64_t r = r0; r < r1; r += k_gemm_nr) {
                const int nr = static_cast<int>(std::min<std::int64_t>(k_gemm_nr, r1 - r));
                const std::byte* row = w.raw() + r * stride;
                // Every dtype, f32 included, is copied into the contiguous tile: rows of W (and X)
                // n_in floats apart alias to the same L1 sets when n_in is a multiple of 1024, and
                // the conflict misses cost more than the copy.
                for (int i = 0; i < nr; ++i)
                    quant::dequantize_row_unchecked(type, row + i * stride + k0 / bs * bb, tile + i * k_block, kl);
                const float* wt = tile;
                const std::int64_t ldw = k_block;
                for (std::int64_t t = t0; t < t1; t += k_gemm_mt) {
                    const int mt = static_cast<int>(std::min<std::int64_t>(k_gemm_mt, t1 - t));
#if defined(MINIGPT_AVX512F_DISPATCH)
                    if (use_avx512) {
                        avx512::gemm_micro_any(mt, nr, x + t * n_in + k0, n_in, wt, ldw, kl, y + t * n_out + r, n_out);
                        continue;
                    }
#endif
                    native::gemm_micro_any(mt, nr, x + t * n_in + k0, n_in, wt, ldw, kl, y + t * n_out + r, n_out);
                }
            }
        }
    }
}

}  // namespace minigpt::kernels::detail

// Row-interleaved ("packed") copies of Q4_0 and Q8_0 weight matrices for the integer
// matmul kernels (kernels/matmul_packed.hpp).
//
// In a GGUF row each 32-element block is contiguous, so a kernel that holds one row per
// vector must reduce every block horizontally and scale it on its own: most of its
// instructions are per-block float work. Here 16 rows are interleaved instead, so that one
// 64-byte load holds 4 consecutive elements of each of 16 rows (one 32-bit lane per row);
// vpdpbusd against 4 activation bytes broadcast to all lanes then yields 16 row sums at once,
// and the 16 block scales are converted, multiplied and accumulated as one vector. This is
// the idea of ggml's repacked CPU layouts; the byte order below is minigpt's own.
//
// Layout of a packed matrix of n_rows x n_cols (nb = n_cols / 32 blocks per row, rows
// grouped by 16: n_groups = ceil(n_rows / 16); the rows missing from the last group are
// zero, scales included, so they contribute 0). Group g takes group_bytes at g * group_bytes
// and holds its blocks in pairs (b, b + 1), b even, each pair laid out as
//   64 bytes of scales: the fp16 block scales d of the 16 rows for block b, then for b + 1;
//   quant_bytes (256 for Q4_0, 512 for Q8_0) of block b, then of block b + 1,
// so that a thread working through consecutive groups reads one sequential stream with every
// 64-byte load aligned, and meets each block's scales just before its quants. (Quants and
// scales in two separate regions are two streams; scales at the end of each group are read
// ahead of the quants: both ran decode slower, the latter at ~70% of the former, measured.)
// An odd last block leaves its partner's scales and quants zero. Quant block b is a run of
// 64-byte chunks; chunk c, 32-bit lane r holds bytes 4c..4c+3 of row 16g + r's block b:
//   Q4_0: the original qs bytes, i.e. low nibbles = elements 4c..4c+3, high nibbles
//         = elements 16+4c..16+4c+3 (chunks c = 0..3);
//   Q8_0: the original qs bytes XOR 0x80, i.e. q + 128 as unsigned bytes, elements
//         4c..4c+3 (chunks c = 0..7), so that the weights take vpdpbusd's unsigned side;
//         the kernels subtract 128 * sum(x) per block.
// The conversion is exact (dequantize_packed_row gives the original row's bits).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/quant/blocks.hpp"
#include "minigpt/quant/reference.hpp"

namespace minigpt::quant {

inline constexpr int k_pack_rows = 16;

// True for the types with a packed layout.
inline bool has_packed_layout(dtype t) { return t == dtype::q4_0 || t == dtype::q8_0; }

// Sizes of a packed matrix; all offsets in bytes from the start of the packed buffer.
struct packed_layout {
    dtype type = dtype::q4_0;
    std::int64_t n_rows = 0, n_cols = 0;
    std::int64_t n_blocks = 0;        // per row
    std::int64_t n_groups = 0;        // of k_pack_rows rows
    std::int64_t quant_bytes = 0;     // per (group, block): 256 (Q4_0) or 512 (Q8_0)
    std::int64_t group_bytes = 0;     // quants, scales and padding of one group
    std::int64_t n_bytes = 0;         // whole buffer

    packed_layout() = default;
    packed_layout(dtype t, std::int64_t rows, std::int64_t cols) : type(t), n_rows(rows), n_cols(cols) {
        if (!has_packed_layout(t))
            throw error("packed_layout: no packed layout for element type " + std::string(dtype_name(t)));
        if (rows < 0 || cols < 0 || cols % k_qk != 0)
            throw shape_error("packed_layout: bad shape (" + std::to_string(rows) + ", " + std::to_string(cols) +
                              "): columns must be a non-negative multiple of 32");
        n_blocks = cols / k_qk;
        n_groups = (rows + k_pack_rows - 1) / k_pack_rows;
        quant_bytes = t == dtype::q4_0 ? 256 : 512;
        group_bytes = static_cast<std::int64_t>(checked_mul(static_cast<std::uint64_t>((n_blocks + 1) / 2),
                                                            static_cast<std::uint64_t>(pair_bytes()), "packed bytes"));
        n_bytes = static_cast<std::int64_t>(checked_mul(static_cast<std::uint64_t>(n_groups), static_cast<std::uint64_t>(group_bytes), "packed bytes"));
    }

    std::int64_t pair_bytes() const { return 4 * k_pack_rows + 2 * quant_bytes; }
    std::int64_t quants_of(std::int64_t group, std::int64_t block) const {
        return group * group_bytes + block / 2 * pair_bytes() + 4 * k_pack_rows + block % 2 * quant_bytes;
    }
    std::int64_t scales_of(std::int64_t group, std::int64_t block) const {
        return group * group_bytes + block / 2 * pair_bytes() + block % 2 * 2 * k_pack_rows;
    }
};

// Writes groups [g0, g1) of the packed form of the (n_rows, n_cols) matrix whose row r starts at
// src + r * row_stride: every byte of those groups in dst (a layout.n_bytes buffer), padding
// included, so the buffer needs no clearing and disjoint group ranges can be packed in parallel.
inline void pack_groups(const packed_layout& layout, const std::byte* src, std::int64_t row_stride, std::byte* dst,
                        std::int64_t g0, std::int64_t g1) {
    const std::int64_t nb = layout.n_blocks;
    for (std::int64_t g = g0; g < g1; ++g) {
        // The group (<= 17 KiB for 1024-wide rows) is zeroed in cache, then each row scattered into
        // its lanes: the missing rows of a last group and an odd block's partner stay zero.
        std::memset(dst + g * layout.group_bytes, 0, static_cast<std::size_t>(layout.group_bytes));
        const std::int64_t r1 = std::min(layout.n_rows, (g + 1) * k_pack_rows);
        for (std::int64_t r = g * k_pack_rows; r < r1; ++r) {
            const std::int64_t lane = r % k_pack_rows;
            const std::byte* row = src + r * row_stride;
            for (std::int64_t b = 0; b < nb; ++b) {
                std::byte* q = dst + layout.quants_of(g, b) + 4 * lane;
                std::uint16_t d;
                if (layout.type == dtype::q4_0) {
                    const auto* blk = reinterpret_cast<const block_q4_0*>(row) + b;
                    d = blk->d;
                    for (int c = 0; c < 4; ++c) std::memcpy(q + 64 * c, blk->qs + 4 * c, 4);
                } else {
                    const auto* blk = reinterpret_cast<const block_q8_0*>(row) + b;
                    d = blk->d;
                    for (int c = 0; c < 8; ++c) {
                        std::uint32_t word;
                        std::memcpy(&word, blk->qs + 4 * c, 4);
                        word ^= 0x80808080u;
                        std::memcpy(q + 64 * c, &word, 4);
                    }
                }
                std::memcpy(dst + layout.scales_of(g, b) + 2 * lane, &d, 2);
            }
        }
    }
}

// Row r of a packed matrix decoded to floats (the same bits as dequantize_row of the original).
inline void dequantize_packed_row(const packed_layout& layout, const std::byte* packed, std::int64_t r, float* y) {
    if (r < 0 || r >= layout.n_rows)
        throw shape_error("dequantize_packed_row: row " + std::to_string(r) + " out of range (" + std::to_string(layout.n_rows) + " rows)");
    const std::int64_t g = r / k_pack_rows, lane = r % k_pack_rows;
    for (std::int64_t b = 0; b < layout.n_blocks; ++b) {
        const auto* q = reinterpret_cast<const std::uint8_t*>(packed + layout.quants_of(g, b)) + 4 * lane;
        std::uint16_t d;
        std::memcpy(&d, packed + layout.scales_of(g, b) + 2 * lane, 2);
        if (layout.type == dtype::q4_0) {
            block_q4_0 blk;
            blk.d = d;
            for (int c = 0; c < 4; ++c) std::memcpy(blk.qs + 4 * c, q + 64 * c, 4);
            ref::dequantize_q4_0(&blk, y + b * k_qk, k_qk);
        } else {
            block_q8_0 blk;
            blk.d = d;
            for (int c = 0; c < 8; ++c)
                for (int k = 0; k < 4; ++k) blk.qs[4 * c + k] = static_cast<std::int8_t>(q[64 * c + k] ^ 0x80u);
            ref::dequantize_q8_0(&blk, y + b * k_qk, k_qk);
        }
    }
}

}  // namespace minigpt::quant

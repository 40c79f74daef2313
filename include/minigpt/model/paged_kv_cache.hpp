// paged_kv_cache: the keys and values of many sequences in one pool of fixed-size blocks.
//
// The pool holds n_blocks blocks of block_size positions for every layer: K and V are each
// (n_layer, n_blocks*block_size, kv_dim), F32 or F16 (rounded to nearest even, as kv_cache).
// A sequence is a block table (block ids, in position order) and a length: its position p sits
// in pool row table[p / block_size] * block_size + p % block_size, so sequences grow and shrink
// one block at a time, independently, and attention reads them through the table
// (kernels/attention_paged.hpp).
//
// Blocks are reference-counted. seq_cp (fork) gives the copy the same blocks instead of copies,
// so a prompt shared by N sequences is stored once; before a sequence writes into a block that
// another sequence also holds (the partly filled last block of a forked prompt, or a block kept
// by a truncation), that block is copied for it (copy-on-write). seq_rm drops whole blocks past
// the new end; a block returns to the free list when no sequence holds it.
//
// Positions of a sequence are contiguous from 0 (no holes): new positions are appended at the
// sequence's length, and seq_rm can cut a sequence's tail (or all of it) but not its middle,
// for which it returns false as llama.cpp's llama_memory_seq_rm does for a partial removal it
// cannot do. A cache holds at most n_seq_max sequences (ids 0..n_seq_max-1).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

// What the cache holds now.
struct kv_memory_usage {
    std::int64_t blocks_used = 0, blocks_total = 0;
    std::int64_t blocks_shared = 0;                // held by more than one sequence (copy-on-write)
    std::int64_t block_size = 0;
    std::int64_t bytes_used = 0, bytes_total = 0;  // K and V of every layer
    std::int64_t bytes_shared = 0;                 // of the shared blocks, stored once
    std::int64_t positions = 0;                    // summed over sequences (a shared block counts once per sequence)
};

class paged_kv_cache {
public:
    paged_kv_cache() = default;
    // n_blocks blocks of block_size positions for n_seq_max sequences.
    paged_kv_cache(std::int64_t n_layer, std::int64_t kv_dim, dtype type, std::int64_t n_blocks, std::int64_t block_size,
                   std::int64_t n_seq_max)
        : type_(type), n_layer_(n_layer), kv_dim_(kv_dim), n_blocks_(n_blocks), block_size_(block_size) {
        if (type != dtype::f32 && type != dtype::f16)
            throw error("paged KV cache: type must be f32 or f16, got " + std::string(dtype_name(type)));
        if (n_layer <= 0 || kv_dim <= 0 || n_blocks <= 0 || block_size <= 0 || n_seq_max <= 0)
            throw error("paged KV cache: n_layer, kv_dim, n_blocks, block_size and n_seq_max must be positive");
        if (n_blocks > std::numeric_limits<std::int32_t>::max() || n_seq_max > (1 << 20))
            throw error("paged KV cache: too many blocks or sequences");
        const auto rows = checked_mul(static_cast<std::uint64_t>(n_blocks), static_cast<std::uint64_t>(block_size), "paged KV cache size");
        checked_mul(checked_mul(rows, static_cast<std::uint64_t>(n_layer), "paged KV cache size"), static_cast<std::uint64_t>(kv_dim) * 8,
                    "paged KV cache size");
        const auto n_rows = static_cast<std::int64_t>(rows);
        k_ = tensor::empty(type, {n_layer, n_rows, kv_dim});  // (n_layer, n_blocks*block_size, kv_dim)
        v_ = tensor::empty(type, {n_layer, n_rows, kv_dim});  // (n_layer, n_blocks*block_size, kv_dim)
        // Written once now, as llama.cpp clears its cache buffer at creation: the pool's pages are
        // mapped lazily, and otherwise the first decodes into fresh blocks take the page faults
        // (and the kernel's zeroing of each huge page) in the middle of generation.
        std::memset(k_.raw(), 0, static_cast<std::size_t>(k_.n_bytes()));
        std::memset(v_.raw(), 0, static_cast<std::size_t>(v_.n_bytes()));
        refs_.assign(static_cast<std::size_t>(n_blocks), 0);
        free_.reserve(static_cast<std::size_t>(n_blocks));
        for (std::int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<std::int32_t>(b));  // block 0 is taken first
        seqs_.resize(static_cast<std::size_t>(n_seq_max));
    }

    dtype type() const noexcept { return type_; }
    std::int64_t n_layer() const noexcept { return n_layer_; }
    std::int64_t kv_dim() const noexcept { return kv_dim_; }
    std::int64_t n_blocks() const noexcept { return n_blocks_; }
    std::int64_t block_size() const noexcept { return block_size_; }
    std::int64_t n_seq_max() const noexcept { return static_cast<std::int64_t>(seqs_.size()); }
    std::int64_t n_free_blocks() const noexcept { return static_cast<std::int64_t>(free_.size()); }
    // Bytes of one block: its K and V rows in every layer.
    std::int64_t block_bytes() const { return 2 * n_layer_ * block_size_ * k_.row_bytes(); }

    kv_memory_usage usage() const {
        kv_memory_usage u;
        u.block_size = block_size_;
        u.blocks_total = n_blocks_;
        u.blocks_used = n_blocks_ - n_free_blocks();
        u.bytes_used = u.blocks_used * block_bytes();
        for (const auto r : refs_) u.blocks_shared += r > 1 ? 1 : 0;
        u.bytes_shared = u.blocks_shared * block_bytes();
        u.bytes_total = k_.n_bytes() + v_.n_bytes();
        for (const auto& s : seqs_) u.positions += s.n_pos;
        return u;
    }

    // Positions held by sequence `seq` (its next position).
    std::int64_t n_pos(std::int32_t seq) const { return at(seq, "n_pos").n_pos; }
    std::span<const std::int32_t> table(std::int32_t seq) const { return at(seq, "table").blocks; }
    // How many sequences hold block b (0: free).
    std::int32_t refs(std::int32_t block) const {
        if (block < 0 || block >= n_blocks_) throw error("paged KV cache: block " + std::to_string(block) + " out of range");
        return refs_[static_cast<std::size_t>(block)];
    }

    // The pool of one layer: (n_blocks*block_size, kv_dim).
    const void* k(std::int64_t layer) const { return k_.row_ptr(layer * pool_rows()); }
    const void* v(std::int64_t layer) const { return v_.row_ptr(layer * pool_rows()); }

    // The pool row of position `pos` of `seq` (pos < n_pos(seq)).
    std::int64_t row_of(std::int32_t seq, std::int64_t pos) const {
        const auto& s = at(seq, "row_of");
        if (pos < 0 || pos >= s.n_pos)
            throw error("paged KV cache: position " + std::to_string(pos) + " of sequence " + std::to_string(seq) + " is not held");
        return static_cast<std::int64_t>(s.blocks[static_cast<std::size_t>(pos / block_size_)]) * block_size_ + pos % block_size_;
    }

    // Writes one position's k and v (kv_dim f32 each) of one layer into pool row `row`.
    void store_row(std::int64_t layer, std::int64_t row, const float* k, const float* v) {
        quant::quantize_row(type_, k, k_.row_ptr(layer * pool_rows() + row), kv_dim_);
        quant::quantize_row(type_, v, v_.row_ptr(layer * pool_rows() + row), kv_dim_);
    }

    // Blocks `grow` would take from the free list for these (sequence, new positions) pairs.
    std::int64_t blocks_needed(std::span<const std::pair<std::int32_t, std::int64_t>> plan) const {
        std::int64_t need = 0;
        std::unordered_map<std::int32_t, std::int32_t> released;  // block -> holders that copy away from it first
        for (const auto& [seq, n] : plan) {
            const auto& s = at(seq, "grow");
            if (n <= 0) continue;
            const std::int64_t have = static_cast<std::int64_t>(s.blocks.size());
            const std::int64_t want = (s.n_pos + n + block_size_ - 1) / block_size_;
            need += want - have;
            if (s.n_pos % block_size_ != 0) {  // the first write lands in the last held block
                const std::int32_t b = s.blocks.back();
                if (refs_[static_cast<std::size_t>(b)] - released[b] > 1) {
                    ++need;
                    ++released[b];
                }
            }
        }
        return need;
    }

    // Appends n new positions to each listed sequence, making every block they fall in its own
    // (copying a shared one first); the rows are then written with store_row(row_of(...)). Throws
    // before changing anything when the free blocks do not suffice.
    void grow(std::span<const std::pair<std::int32_t, std::int64_t>> grow_by) {
        const std::int64_t need = blocks_needed(grow_by);
        if (need > n_free_blocks())
            throw error("paged KV cache full: the batch needs " + std::to_string(need) + " more blocks of " +
                        std::to_string(block_size_) + " positions, " + std::to_string(n_free_blocks()) + " of " +
                        std::to_string(n_blocks_) + " are free (raise -c or lower the number of sequences)");
        for (const auto& [seq, n] : grow_by) {
            if (n <= 0) continue;
            auto& s = seqs_[static_cast<std::size_t>(seq)];
            if (s.n_pos % block_size_ != 0) {
                std::int32_t& last = s.blocks.back();
                if (refs_[static_cast<std::size_t>(last)] > 1) {
                    const std::int32_t copy = take_block();
                    copy_block(last, copy);
                    --refs_[static_cast<std::size_t>(last)];
                    last = copy;
                }
            }
            const std::int64_t want = (s.n_pos + n + block_size_ - 1) / block_size_;
            while (static_cast<std::int64_t>(s.blocks.size()) < want) s.blocks.push_back(take_block());
            s.n_pos += n;
        }
    }

    // Removes positions [p0, p1) of `seq` (p0 < 0: 0; p1 < 0: the end; seq < 0: every sequence).
    // Returns false, changing nothing, when p1 falls inside the sequence (a hole, or a head whose
    // removal would renumber the rest); removing a tail or a whole sequence always succeeds.
    bool seq_rm(std::int32_t seq, std::int64_t p0, std::int64_t p1) {
        if (seq < 0) {
            bool ok = true;
            for (std::int32_t s = 0; s < n_seq_max(); ++s) ok = seq_rm(s, p0, p1) && ok;
            return ok;
        }
        auto& s = at(seq, "seq_rm");
        p0 = std::max<std::int64_t>(p0, 0);
        if (p1 < 0) p1 = std::numeric_limits<std::int64_t>::max();
        if (p0 >= p1 || p0 >= s.n_pos) return true;
        if (p1 < s.n_pos) return false;  // a hole, or a head (whose removal would renumber positions)
        truncate(s, p0);
        return true;
    }

    // Makes `dst` hold positions [0, min(p1, n_pos(src))) of `src` by sharing its blocks (p1 < 0:
    // all); dst's previous contents are dropped first. p0 must be <= 0 (sequences start at 0).
    void seq_cp(std::int32_t src, std::int32_t dst, std::int64_t p0 = -1, std::int64_t p1 = -1) {
        const auto& from = at(src, "seq_cp");
        auto& to = at(dst, "seq_cp");
        if (p0 > 0) throw error("paged KV cache: seq_cp from position " + std::to_string(p0) + ": copies must start at position 0");
        if (src == dst) return;
        const std::int64_t n = p1 < 0 ? from.n_pos : std::min(p1, from.n_pos);
        truncate(to, 0);
        const auto n_blocks = static_cast<std::size_t>((n + block_size_ - 1) / block_size_);
        to.blocks.assign(from.blocks.begin(), from.blocks.begin() + static_cast<std::ptrdiff_t>(n_blocks));
        for (auto b : to.blocks) ++refs_[static_cast<std::size_t>(b)];
        to.n_pos = n;
    }

    // Raw copies of positions [0, n) of `seq` (already held) from or to one layer's contiguous rows
    // (n, kv_dim) of the same element type: the one-sequence kv_cache's layout.
    void copy_in(std::int32_t seq, std::int64_t layer, const void* k_rows, const void* v_rows, std::int64_t n) {
        for_each_run(seq, n, [&](std::int64_t pos, std::int64_t row, std::int64_t count) {
            const auto off = static_cast<std::size_t>(pos * k_.row_bytes()), bytes = static_cast<std::size_t>(count * k_.row_bytes());
            std::memcpy(k_.row_ptr(layer * pool_rows() + row), static_cast<const std::byte*>(k_rows) + off, bytes);
            std::memcpy(v_.row_ptr(layer * pool_rows() + row), static_cast<const std::byte*>(v_rows) + off, bytes);
        });
    }
    void copy_out(std::int32_t seq, std::int64_t layer, void* k_rows, void* v_rows, std::int64_t n) const {
        for_each_run(seq, n, [&](std::int64_t pos, std::int64_t row, std::int64_t count) {
            const auto off = static_cast<std::size_t>(pos * k_.row_bytes()), bytes = static_cast<std::size_t>(count * k_.row_bytes());
            std::memcpy(static_cast<std::byte*>(k_rows) + off, k_.row_ptr(layer * pool_rows() + row), bytes);
            std::memcpy(static_cast<std::byte*>(v_rows) + off, v_.row_ptr(layer * pool_rows() + row), bytes);
        });
    }
    std::int64_t row_bytes() const { return k_.row_bytes(); }

    // Forgets every sequence.
    void clear() {
        for (auto& s : seqs_) truncate(s, 0);
    }

private:
    struct sequence {
        std::vector<std::int32_t> blocks;  // (ceil(n_pos / block_size)) block ids in position order
        std::int64_t n_pos = 0;
    };

    std::int64_t pool_rows() const noexcept { return n_blocks_ * block_size_; }

    const sequence& at(std::int32_t seq, const char* fn) const {
        if (seq < 0 || seq >= n_seq_max())
            throw error(std::string("paged KV cache: ") + fn + ": sequence id " + std::to_string(seq) + " outside [0, " +
                        std::to_string(n_seq_max()) + ")");
        return seqs_[static_cast<std::size_t>(seq)];
    }
    sequence& at(std::int32_t seq, const char* fn) { return const_cast<sequence&>(std::as_const(*this).at(seq, fn)); }

    // fn(first position, its pool row, positions) for each run of [0, n) of `seq` that lies in one block.
    template <class Fn>
    void for_each_run(std::int32_t seq, std::int64_t n, Fn&& fn) const {
        const auto& s = at(seq, "copy");
        if (n < 0 || n > s.n_pos)
            throw error("paged KV cache: copy of " + std::to_string(n) + " positions of sequence " + std::to_string(seq) + ", which holds " +
                        std::to_string(s.n_pos));
        for (std::int64_t pos = 0; pos < n; pos += block_size_)
            fn(pos, static_cast<std::int64_t>(s.blocks[static_cast<std::size_t>(pos / block_size_)]) * block_size_,
               std::min(block_size_, n - pos));
    }

    std::int32_t take_block() {
        const std::int32_t b = free_.back();  // callers checked blocks_needed first
        free_.pop_back();
        refs_[static_cast<std::size_t>(b)] = 1;
        return b;
    }

    void release_block(std::int32_t b) {
        if (--refs_[static_cast<std::size_t>(b)] == 0) free_.push_back(b);
    }

    void copy_block(std::int32_t from, std::int32_t to) {
        const auto bytes = static_cast<std::size_t>(block_size_ * k_.row_bytes());
        for (std::int64_t l = 0; l < n_layer_; ++l) {
            std::memcpy(k_.row_ptr(l * pool_rows() + to * block_size_), k_.row_ptr(l * pool_rows() + from * block_size_), bytes);
            std::memcpy(v_.row_ptr(l * pool_rows() + to * block_size_), v_.row_ptr(l * pool_rows() + from * block_size_), bytes);
        }
    }

    void truncate(sequence& s, std::int64_t n) {
        const auto keep = static_cast<std::size_t>((n + block_size_ - 1) / block_size_);
        while (s.blocks.size() > keep) {
            release_block(s.blocks.back());
            s.blocks.pop_back();
        }
        s.n_pos = std::min(s.n_pos, n);
    }

    dtype type_ = dtype::f32;
    std::int64_t n_layer_ = 0, kv_dim_ = 0, n_blocks_ = 0, block_size_ = 0;
    tensor k_, v_;
    std::vector<std::int32_t> refs_;   // (n_blocks) holders of each block
    std::vector<std::int32_t> free_;   // ids of free blocks, the next one taken last
    std::vector<sequence> seqs_;       // (n_seq_max)
};

}  // namespace minigpt

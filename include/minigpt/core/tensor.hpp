// minigpt::tensor: an n-dimensional array (rank 1..4) of any GGUF element type.
//
// Shapes are written outermost first, like numpy and the shape comments in model
// code: a weight matrix used as y = W x has shape (n_out, n_in). (GGUF files list
// dimensions innermost first; the GGUF reader reverses them.) Rows, the innermost
// dimension, are always contiguous, so a quantised row is a run of whole blocks;
// the outer dimensions have byte strides, which lets a tensor be a view of part of
// another one. Storage is either owned (64-byte aligned, zero-filled, core/memory.hpp) or borrowed
// (e.g. a memory-mapped file) with an optional keep-alive handle. Eigen views of f32 tensors are in
// the opt-in core/eigen.hpp, so programs that do not use Eigen do not parse it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/memory.hpp"

namespace minigpt {

class tensor {
public:
    static constexpr int max_rank = 4;
    using shape_t = std::array<std::int64_t, max_rank>;

    tensor() = default;

    // A new zero-filled tensor owning its storage.
    static tensor empty(dtype type, std::initializer_list<std::int64_t> shape) {
        return empty(type, std::span<const std::int64_t>(shape.begin(), shape.size()));
    }
    static tensor empty(dtype type, std::span<const std::int64_t> shape) {
        tensor t = describe(type, shape);
        auto buf = heap_buffer(static_cast<std::size_t>(t.n_bytes()));
        t.data_ = buf.get();
        t.owner_ = std::move(buf);
        return t;
    }

    // A contiguous view of memory owned elsewhere; `keep_alive` (if given) is held as long as the view.
    static tensor view(dtype type, std::span<const std::int64_t> shape, const void* data,
                       std::shared_ptr<const void> keep_alive = {}) {
        if (!data) throw error("tensor::view: null data pointer");
        tensor t = describe(type, shape);
        t.data_ = static_cast<std::byte*>(const_cast<void*>(data));
        t.owner_ = std::move(keep_alive);
        return t;
    }
    static tensor view(dtype type, std::initializer_list<std::int64_t> shape, const void* data,
                       std::shared_ptr<const void> keep_alive = {}) {
        return view(type, std::span<const std::int64_t>(shape.begin(), shape.size()), data, std::move(keep_alive));
    }

    bool empty() const noexcept { return data_ == nullptr; }
    dtype type() const noexcept { return type_; }
    int rank() const noexcept { return rank_; }
    std::int64_t dim(int i) const {
        if (i < 0 || i >= rank_) throw shape_error("tensor::dim: axis " + std::to_string(i) + " out of range for rank " + std::to_string(rank_));
        return shape_[static_cast<std::size_t>(i)];
    }
    std::span<const std::int64_t> shape() const noexcept { return {shape_.data(), static_cast<std::size_t>(rank_)}; }
    // Byte stride of axis i (the last axis is contiguous; its stride is 0 for block types).
    std::int64_t stride_bytes(int i) const { dim(i); return strides_[static_cast<std::size_t>(i)]; }

    std::int64_t n_elements() const noexcept {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= shape_[static_cast<std::size_t>(i)];
        return rank_ == 0 ? 0 : n;
    }
    std::int64_t n_cols() const noexcept { return rank_ == 0 ? 0 : shape_[static_cast<std::size_t>(rank_ - 1)]; }
    std::int64_t n_rows() const noexcept { return n_cols() == 0 ? 0 : n_elements() / n_cols(); }
    std::int64_t row_bytes() const { return static_cast<std::int64_t>(minigpt::row_bytes(type_, static_cast<std::uint64_t>(n_cols()))); }
    // Bytes spanned when contiguous.
    std::int64_t n_bytes() const { return n_rows() * row_bytes(); }

    bool is_contiguous() const {
        std::int64_t expect = row_bytes();
        for (int i = rank_ - 2; i >= 0; --i) {
            if (strides_[static_cast<std::size_t>(i)] != expect) return false;
            expect *= shape_[static_cast<std::size_t>(i)];
        }
        return true;
    }

    std::byte* raw() const noexcept { return data_; }
    template <class T> T* data() const { return reinterpret_cast<T*>(data_); }

    // Pointer to row r, counting rows over all outer axes in order.
    std::byte* row_ptr(std::int64_t r) const {
        if (r < 0 || r >= n_rows()) throw shape_error("tensor row " + std::to_string(r) + " out of range (" + std::to_string(n_rows()) + " rows)");
        std::byte* p = data_;
        for (int i = rank_ - 2; i >= 0; --i) {
            const auto n = shape_[static_cast<std::size_t>(i)];
            p += (r % n) * strides_[static_cast<std::size_t>(i)];
            r /= n;
        }
        return p;
    }
    template <class T> T* row(std::int64_t r) const { return reinterpret_cast<T*>(row_ptr(r)); }

    // Sub-tensor at index i of the outermost axis (rank drops by one; rank-1 gives a 1-element row).
    tensor operator[](std::int64_t i) const {
        if (rank_ < 2) throw shape_error("tensor::operator[] needs rank >= 2");
        if (i < 0 || i >= shape_[0]) throw shape_error("index " + std::to_string(i) + " out of range for axis 0 of size " + std::to_string(shape_[0]));
        tensor t = *this;
        t.data_ = data_ + i * strides_[0];
        for (int k = 1; k < rank_; ++k) {
            t.shape_[static_cast<std::size_t>(k - 1)] = shape_[static_cast<std::size_t>(k)];
            t.strides_[static_cast<std::size_t>(k - 1)] = strides_[static_cast<std::size_t>(k)];
        }
        t.shape_[static_cast<std::size_t>(rank_ - 1)] = 1;
        t.strides_[static_cast<std::size_t>(rank_ - 1)] = 0;
        --t.rank_;
        return t;
    }

    // Rows [begin, end) of the outermost axis.
    tensor rows(std::int64_t begin, std::int64_t end) const {
        if (rank_ < 1 || begin < 0 || end < begin || end > shape_[0]) throw shape_error("tensor::rows: bad range");
        tensor t = *this;
        t.data_ = data_ + (rank_ == 1 ? 0 : begin * strides_[0]);
        t.shape_[0] = end - begin;
        if (rank_ == 1) {
            if (is_quantized(type_)) throw shape_error("tensor::rows: cannot split a block row");
            t.data_ = data_ + begin * static_cast<std::int64_t>(block_bytes(type_));
        }
        return t;
    }

    // Same data, new shape; requires a contiguous tensor and the same element count.
    tensor reshape(std::initializer_list<std::int64_t> shape) const {
        if (!is_contiguous()) throw shape_error("tensor::reshape of a non-contiguous tensor");
        tensor t = describe(type_, std::span<const std::int64_t>(shape.begin(), shape.size()));
        if (t.n_elements() != n_elements()) throw shape_error("tensor::reshape: element count changes");
        t.data_ = data_;
        t.owner_ = owner_;
        return t;
    }

    std::string shape_string() const {
        std::string s = "(";
        for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(shape_[static_cast<std::size_t>(i)]);
        return s + ")";
    }

private:
    static tensor describe(dtype type, std::span<const std::int64_t> shape) {
        traits(type);  // throws on unsupported type
        if (shape.empty() || shape.size() > max_rank)
            throw shape_error("tensor rank must be 1.." + std::to_string(max_rank) + ", got " + std::to_string(shape.size()));
        tensor t;
        t.type_ = type;
        t.rank_ = static_cast<int>(shape.size());
        std::uint64_t n = 1;
        for (std::size_t i = 0; i < shape.size(); ++i) {
            if (shape[i] < 0) throw shape_error("negative tensor dimension");
            t.shape_[i] = shape[i];
            n = checked_mul(n, static_cast<std::uint64_t>(shape[i]), "tensor element count");
        }
        if (n > (std::uint64_t(1) << 48)) throw shape_error("tensor too large");
        std::int64_t stride = t.row_bytes();
        t.strides_[shape.size() - 1] = is_quantized(type) ? 0 : static_cast<std::int64_t>(block_bytes(type));
        for (int i = t.rank_ - 2; i >= 0; --i) {
            t.strides_[static_cast<std::size_t>(i)] = stride;
            stride *= t.shape_[static_cast<std::size_t>(i)];
        }
        return t;
    }

    dtype type_ = dtype::f32;
    int rank_ = 0;
    shape_t shape_{1, 1, 1, 1};
    shape_t strides_{0, 0, 0, 0};
    std::byte* data_ = nullptr;
    std::shared_ptr<const void> owner_;
};

}  // namespace minigpt

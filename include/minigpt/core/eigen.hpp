// Eigen interop (opt-in): a row-major Eigen view of an f32 tensor, no copy.
//
// Kept out of core/tensor.hpp because nothing in the library uses Eigen, and parsing <Eigen/Core>
// (~30k lines) cost every program that includes minigpt a noticeable part of its compile time.
// Include this header, and have Eigen 3.4 on the include path (the minigpt::minigpt target brings it).
#pragma once

#include <string>

#include <Eigen/Core>

#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"

namespace minigpt {

using eigen_matrix_map = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// An f32, contiguous tensor as an (n_rows, n_cols) row-major matrix; its storage, not a copy.
inline eigen_matrix_map eigen_view(const tensor& t) {
    if (t.type() != dtype::f32) throw shape_error("eigen_view needs an f32 tensor, got " + std::string(dtype_name(t.type())));
    if (!t.is_contiguous()) throw shape_error("eigen_view needs a contiguous tensor");
    return eigen_matrix_map(t.data<float>(), static_cast<Eigen::Index>(t.n_rows()), static_cast<Eigen::Index>(t.n_cols()));
}

}  // namespace minigpt

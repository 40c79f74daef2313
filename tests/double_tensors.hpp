// A GGUF file's tensors as rows of doubles (dequantised once, then cached) and the matrix-vector
// product in double: the storage side of the scalar references of architectures_test and
// inspection_test, which recompute forward passes without the library's kernels.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "minigpt/io/gguf.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt::test {

struct double_tensors {
    const io::gguf_file& f;
    mutable std::map<std::string, std::vector<std::vector<double>>> cache;

    bool has(const std::string& n) const { return f.find_tensor(n) != nullptr; }
    // (rows, cols) as doubles.
    const std::vector<std::vector<double>>& matrix(const std::string& n) const {
        if (auto it = cache.find(n); it != cache.end()) return it->second;
        const tensor t = f.get_tensor(n);
        const std::int64_t rows = t.shape().size() == 2 ? t.dim(0) : 1, cols = t.shape().back();
        std::vector<std::vector<double>> out(static_cast<std::size_t>(rows));
        std::vector<float> row(static_cast<std::size_t>(cols));
        for (std::int64_t i = 0; i < rows; ++i) {
            quant::dequantize_row(t.type(), t.row_ptr(i), row.data(), cols);
            out[static_cast<std::size_t>(i)].assign(row.begin(), row.end());
        }
        return cache[n] = std::move(out);
    }
    const std::vector<double>& vector(const std::string& n) const { return matrix(n)[0]; }
    static std::vector<double> mv(const std::vector<std::vector<double>>& w, const std::vector<double>& x) {
        std::vector<double> y(w.size(), 0.0);
        for (std::size_t i = 0; i < w.size(); ++i)
            for (std::size_t j = 0; j < x.size(); ++j) y[i] += w[i][j] * x[j];
        return y;
    }
};

}  // namespace minigpt::test

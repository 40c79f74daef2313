// PCA reduction of kNN-LM keys (as in He et al. 2021, "Efficient Nearest Neighbor Language
// Models", section 4): the keys are projected on the top principal directions of their
// covariance, so the store shrinks and every distance costs out_dim instead of in_dim
// multiply-adds, at some loss of recall.
//
// fit_pca estimates the mean and covariance in long double from (up to max_samples evenly spaced)
// keys and takes the eigenvectors of the largest eigenvalues from Eigen's
// SelfAdjointEigenSolver. write_projected_store writes a version 2 store (datastore.hpp) whose
// keys are components * (key - mean) and which records the projection, validated on load.
// projected_index wraps any index over such a store so that it takes model states as queries
// (dim() is the state dimension) and projects them before searching; open_for_states() does
// the wrapping when the store carries a projection.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "minigpt/core/error.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/simd/convert.hpp"

namespace minigpt::knn {

namespace detail {
// Key i of a store as float32 (keys may be f16).
inline void key_as_f32(const datastore& s, std::int64_t i, float* out) {
    if (s.key_type() == dtype::f32) {
        const auto* k = static_cast<const float*>(s.key_row(i));
        std::copy(k, k + s.dim(), out);
    } else {
        simd::f16_to_f32_row(static_cast<const std::uint16_t*>(s.key_row(i)), out, s.dim());
    }
}
}  // namespace detail

struct pca_fit {
    key_projection projection;
    std::vector<double> eigenvalues;   // (in_dim) all of them, largest first
    double explained() const {         // fraction of the variance the kept directions carry
        double all = 0, kept = 0;
        for (std::size_t i = 0; i < eigenvalues.size(); ++i) {
            all += std::max(0.0, eigenvalues[i]);
            if (static_cast<std::int64_t>(i) < projection.out_dim) kept += std::max(0.0, eigenvalues[i]);
        }
        return all > 0 ? kept / all : 0.0;
    }
};

inline pca_fit fit_pca(const datastore& s, std::int64_t out_dim, std::int64_t max_samples = 100000) {
    const std::int64_t d = s.dim(), n = s.n_keys();
    if (!s.projection().empty()) throw error(s.path() + ": the store's keys are already projected");
    if (out_dim <= 0 || out_dim > d)
        throw error("fit_pca: output dimension " + std::to_string(out_dim) + " must be in [1, " + std::to_string(d) + "]");
    if (n < 2) throw error("fit_pca: need at least two keys, the store has " + std::to_string(n));
    const std::int64_t m = std::min(n, std::max<std::int64_t>(max_samples, 2));
    // long double: Eigen does not vectorise it, which keeps its AVX-512 double kernels (and GCC
    // 12's false -Wmaybe-uninitialized inside them, bug 105593) out of the build; the solver
    // runs once per store on a (d, d) matrix, so the speed does not matter.
    using real = long double;
    using vector_t = Eigen::Matrix<real, Eigen::Dynamic, 1>;
    using matrix_t = Eigen::Matrix<real, Eigen::Dynamic, Eigen::Dynamic>;
    vector_t mean = vector_t::Zero(d);
    matrix_t cov = matrix_t::Zero(d, d);  // (d, d)
    std::vector<float> row(static_cast<std::size_t>(d));  // (d)
    vector_t x(d);
    // Two passes (mean, then centred outer products) keep the covariance accurate when the
    // mean is large next to the spread.
    auto sample_index = [&](std::int64_t j) { return j * n / m; };
    for (std::int64_t j = 0; j < m; ++j) {
        detail::key_as_f32(s, sample_index(j), row.data());
        for (std::int64_t i = 0; i < d; ++i) mean[i] += row[static_cast<std::size_t>(i)];
    }
    mean /= static_cast<real>(m);
    for (std::int64_t j = 0; j < m; ++j) {
        detail::key_as_f32(s, sample_index(j), row.data());
        for (std::int64_t i = 0; i < d; ++i) x[i] = row[static_cast<std::size_t>(i)] - mean[i];
        cov.selfadjointView<Eigen::Lower>().rankUpdate(x);
    }
    cov = cov.selfadjointView<Eigen::Lower>();
    cov /= static_cast<real>(m - 1);
    Eigen::SelfAdjointEigenSolver<matrix_t> eig(cov);
    if (eig.info() != Eigen::Success) throw error("fit_pca: the eigen decomposition did not converge");
    pca_fit f;
    f.projection.in_dim = d;
    f.projection.out_dim = out_dim;
    f.projection.mean.resize(static_cast<std::size_t>(d));
    for (std::int64_t i = 0; i < d; ++i) f.projection.mean[static_cast<std::size_t>(i)] = static_cast<float>(mean[i]);
    f.projection.components.resize(static_cast<std::size_t>(out_dim * d));
    // Eigen returns eigenvalues in increasing order.
    for (std::int64_t r = 0; r < out_dim; ++r) {
        const auto col = eig.eigenvectors().col(d - 1 - r);
        for (std::int64_t i = 0; i < d; ++i) f.projection.components[static_cast<std::size_t>(r * d + i)] = static_cast<float>(col[i]);
    }
    for (std::int64_t i = d - 1; i >= 0; --i) f.eigenvalues.push_back(static_cast<double>(eig.eigenvalues()[i]));
    return f;
}

// Writes `s` with every key projected; values and fingerprint are kept.
inline void write_projected_store(const datastore& s, const key_projection& p, const std::string& path, dtype key_type) {
    if (p.in_dim != s.dim()) throw error("write_projected_store: projection takes " + std::to_string(p.in_dim) + " values, keys have " +
                                         std::to_string(s.dim()));
    datastore_writer w(path, p.out_dim, key_type, s.fingerprint(), s.n_keys(), p);
    constexpr std::int64_t batch = 1024;
    std::vector<float> in(static_cast<std::size_t>(s.dim())), out(static_cast<std::size_t>(batch * p.out_dim));  // (dim), (batch, out_dim)
    for (std::int64_t b = 0; b < s.n_keys(); b += batch) {
        const std::int64_t e = std::min(s.n_keys(), b + batch);
        for (std::int64_t i = b; i < e; ++i) {
            detail::key_as_f32(s, i, in.data());
            p.apply(in.data(), out.data() + (i - b) * p.out_dim);
        }
        w.append(out.data(), s.values().data() + b, e - b);
    }
    w.finish();
}

// An index over projected keys that takes model states as queries.
class projected_index : public knn_index {
public:
    projected_index(std::shared_ptr<const knn_index> inner, key_projection p) : inner_(std::move(inner)), p_(std::move(p)) {
        if (!inner_) throw error("projected_index: null index");
        p_.validate("projected_index");
        if (inner_->dim() != p_.out_dim)
            throw error("projected_index: the index has dimension " + std::to_string(inner_->dim()) + ", the projection gives " +
                        std::to_string(p_.out_dim));
    }
    void search(const float* query, std::int32_t k, std::vector<neighbour>& out) const override {
        check_queries(query, 1, p_.in_dim);
        std::vector<float> q(static_cast<std::size_t>(p_.out_dim));  // (out_dim)
        p_.apply(query, q.data());
        inner_->search(q.data(), k, out);
    }
    void search_batch(const float* queries, std::int64_t n_queries, std::int32_t k, std::vector<std::vector<neighbour>>& out,
                      int n_threads = 0) const override {
        check_k(k);
        check_queries(queries, n_queries, p_.in_dim);
        std::vector<float> q(static_cast<std::size_t>(n_queries * p_.out_dim));  // (n_queries, out_dim)
        for (std::int64_t i = 0; i < n_queries; ++i) p_.apply(queries + i * p_.in_dim, q.data() + i * p_.out_dim);
        inner_->search_batch(q.data(), n_queries, k, out, n_threads);
    }
    std::int64_t dim() const noexcept override { return p_.in_dim; }
    std::int64_t n_keys() const noexcept override { return inner_->n_keys(); }
    const knn_index& inner() const noexcept { return *inner_; }

private:
    std::shared_ptr<const knn_index> inner_;
    key_projection p_;
};

// `index` as it must be used with model states: wrapped when its store projects keys.
inline std::shared_ptr<const knn_index> for_states(std::shared_ptr<const knn_index> index, const datastore& s) {
    if (s.projection().empty()) return index;
    return std::make_shared<projected_index>(std::move(index), s.projection());
}

}  // namespace minigpt::knn

// A FAISS-backed knn_index (IndexIVFFlat or IndexHNSWFlat), compiled only when the build
// found libfaiss (MINIGPT_HAVE_FAISS, set by the minigpt::faiss target, cmake/minigptBackends.cmake); without it this
// header declares nothing and the built-in exact and IVF indexes are the only ones.
//
// FAISS keeps its own float32 copy of the vectors, so a float16 store costs twice its
// size in memory here. Vectors are converted and added in chunks to bound the scratch.
// FAISS runs its own OpenMP loops; n_threads is not forwarded (its thread count is global).
#pragma once

#if defined(MINIGPT_HAVE_FAISS)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>

#include "minigpt/core/error.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/kernels/distance.hpp"
#include "minigpt/knn/exact.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/knn/kmeans.hpp"

namespace minigpt::knn {

enum class faiss_kind { ivf_flat, hnsw_flat };

struct faiss_params {
    faiss_kind kind = faiss_kind::ivf_flat;
    std::int64_t n_lists = 0;        // IVF cells; 0: about sqrt(n_keys)
    std::int64_t train_size = 0;     // IVF training keys; 0: min(n_keys, 32 * n_lists)
    std::int32_t nprobe = 16;        // IVF cells scanned per query
    int hnsw_m = 32;                 // HNSW links per node
    int ef_construction = 80;
    int ef_search = 64;
    std::uint64_t seed = 0x1f5eedull;
};

class faiss_index : public knn_index {
public:
    faiss_index(std::shared_ptr<const datastore> store, const faiss_params& p = {}) : store_(std::move(store)), params_(p) {
        if (!store_) throw error("faiss_index: null datastore");
        const std::int64_t n = store_->n_keys(), d = store_->dim();
        if (n == 0) throw error("faiss_index: the datastore " + store_->path() + " has no keys");
        if (d > INT32_MAX) throw error("faiss_index: dimension too large for FAISS");
        if (p.kind == faiss_kind::ivf_flat) {
            std::int64_t n_lists = p.n_lists > 0 ? p.n_lists : std::max<std::int64_t>(1, std::llround(std::sqrt(static_cast<double>(n))));
            n_lists = std::min(n_lists, n);
            quantizer_ = std::make_unique<faiss::IndexFlatL2>(d);
            auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer_.get(), d, static_cast<std::size_t>(n_lists), faiss::METRIC_L2);
            const std::int64_t train = std::clamp<std::int64_t>(p.train_size > 0 ? p.train_size : 32 * n_lists, n_lists, n);
            const auto rows = sample_indices(n, train, p.seed);
            std::vector<float> sample(static_cast<std::size_t>(train * d));  // (train, dim)
            for (std::int64_t i = 0; i < train; ++i) row_f32(rows[static_cast<std::size_t>(i)], sample.data() + i * d);
            ivf->train(train, sample.data());
            ivf->nprobe = static_cast<std::size_t>(std::max<std::int32_t>(1, p.nprobe));
            index_ = std::move(ivf);
        } else {
            auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(static_cast<int>(d), p.hnsw_m);
            hnsw->hnsw.efConstruction = p.ef_construction;
            hnsw->hnsw.efSearch = p.ef_search;
            index_ = std::move(hnsw);
        }
        constexpr std::int64_t chunk = 65536;
        std::vector<float> buf;  // (chunk, dim)
        for (std::int64_t b = 0; b < n; b += chunk) {
            const std::int64_t m = std::min(chunk, n - b);
            buf.resize(static_cast<std::size_t>(m * d));
            for (std::int64_t i = 0; i < m; ++i) row_f32(b + i, buf.data() + i * d);
            index_->add(m, buf.data());
        }
    }

    std::int64_t dim() const noexcept override { return store_->dim(); }
    std::int64_t n_keys() const noexcept override { return store_->n_keys(); }
    void set_nprobe(std::int32_t nprobe) {
        if (nprobe <= 0) throw error("faiss_index: nprobe must be positive");
        if (auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(index_.get())) ivf->nprobe = static_cast<std::size_t>(nprobe);
    }
    void set_ef_search(int ef) {
        if (ef <= 0) throw error("faiss_index: efSearch must be positive");
        if (auto* h = dynamic_cast<faiss::IndexHNSWFlat*>(index_.get())) h->hnsw.efSearch = ef;
    }

    void search(const float* query, std::int32_t k, std::vector<neighbour>& out) const override {
        std::vector<std::vector<neighbour>> all;
        search_batch(query, 1, k, all);
        out = std::move(all[0]);
    }

    void search_batch(const float* queries, std::int64_t n_queries, std::int32_t k, std::vector<std::vector<neighbour>>& out,
                      int /*n_threads*/ = 0) const override {
        check_k(k);
        check_queries(queries, n_queries, dim());
        out.resize(static_cast<std::size_t>(n_queries));
        if (n_queries == 0) return;
        const std::int64_t kk = std::min<std::int64_t>(k, n_keys());
        std::vector<float> dist(static_cast<std::size_t>(n_queries * kk));                 // (n_queries, kk)
        std::vector<faiss::Index::idx_t> labels(static_cast<std::size_t>(n_queries * kk));  // (n_queries, kk)
        index_->search(n_queries, queries, kk, dist.data(), labels.data());
        for (std::int64_t q = 0; q < n_queries; ++q) {
            auto& o = out[static_cast<std::size_t>(q)];
            o.clear();
            for (std::int64_t j = 0; j < kk; ++j) {
                const auto id = labels[static_cast<std::size_t>(q * kk + j)];
                if (id >= 0 && id < n_keys()) o.push_back({0.0f, 0, id});  // -1: fewer than k reachable
            }
            // Same distances and tie order as the other indexes.
            finalize_neighbours(*store_, queries + q * dim(), o);
        }
    }

private:
    void row_f32(std::int64_t i, float* dst) const {
        const void* src = store_->key_row(i);
        if (store_->key_type() == dtype::f16) widen_f16(static_cast<const std::uint16_t*>(src), dst, store_->dim());
        else std::memcpy(dst, src, static_cast<std::size_t>(store_->dim()) * 4);
    }

    std::shared_ptr<const datastore> store_;
    faiss_params params_;
    std::unique_ptr<faiss::IndexFlatL2> quantizer_;  // must outlive index_ (IVF keeps a raw pointer)
    std::unique_ptr<faiss::Index> index_;
};

}  // namespace minigpt::knn

#endif  // MINIGPT_HAVE_FAISS

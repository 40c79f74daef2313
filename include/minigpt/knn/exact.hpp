// Exact (brute-force) nearest-neighbour search over every key of a datastore.
//
// One query: each thread scans a contiguous range of keys with the SIMD distance kernel
// and keeps its own top-k; the per-thread lists are merged at the end. This is bound
// by memory bandwidth (every key is read once per query).
//
// A batch of queries: ||q - k||^2 = ||q||^2 - 2 q.k + ||k||^2, so the work becomes a
// matrix product (query block x key block), run by the register-tiled dot_products
// kernel (compute-bound, near the FMA peak), and each key block is read once for all
// queries. (Not Eigen: its AVX-512 GEMM trips GCC 12's false -Wmaybe-uninitialized.)
// The expanded form cancels badly when a distance is small next to the norms, so the
// k survivors are re-measured with the direct kernel before they are returned; only
// candidates within that rounding of the k-th distance can be chosen differently.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/kernels/distance.hpp"
#include "minigpt/knn/index.hpp"

namespace minigpt::knn {

// Distance from a float32 query to key row i of a store, whatever the key type.
inline float key_distance(const datastore& s, const float* query, std::int64_t i) {
    if (s.key_type() == dtype::f16) return l2_sq_f16(query, static_cast<const std::uint16_t*>(s.key_row(i)), s.dim());
    return l2_sq(query, static_cast<const float*>(s.key_row(i)), s.dim());
}

// Re-measures `out`'s distances directly, fills in values and sorts.
inline void finalize_neighbours(const datastore& s, const float* query, std::vector<neighbour>& out) {
    const auto values = s.values();
    for (auto& n : out) {
        n.distance = key_distance(s, query, n.key_index);
        n.value = values[static_cast<std::size_t>(n.key_index)];
    }
    std::sort(out.begin(), out.end(), nearer);
}

class exact_index : public knn_index {
public:
    // Keys per block (a float32 block of 128 x 768 is 384 KiB: stays in L2) and queries per
    // product, so the (query block, key block) scratch is 64 KiB.
    static constexpr std::int64_t k_key_block = 128;
    static constexpr std::int64_t k_query_block = 128;

    explicit exact_index(std::shared_ptr<const datastore> store, int n_threads = 0)
        : store_(std::move(store)), n_threads_(n_threads) {
        if (!store_) throw error("exact_index: null datastore");
        if (store_->n_keys() == 0) throw error("exact_index: the datastore " + store_->path() + " has no keys");
    }

    std::int64_t dim() const noexcept override { return store_->dim(); }
    std::int64_t n_keys() const noexcept override { return store_->n_keys(); }
    const datastore& store() const noexcept { return *store_; }
    void set_threads(int n_threads) noexcept { n_threads_ = n_threads; }

    void search(const float* query, std::int32_t k, std::vector<neighbour>& out) const override {
        check_k(k);
        check_queries(query, 1, dim());
        topk best(k);
        std::mutex lock;
        parallel_ranges(n_keys(), n_threads_, [&](std::int64_t b, std::int64_t e) {
            topk mine(k);
            for (std::int64_t i = b; i < e; ++i) {
                const float d = key_distance(*store_, query, i);
                if (d <= mine.bound()) mine.push(d, i);
            }
            std::lock_guard<std::mutex> g(lock);
            best.merge(mine);
        }, 4096);
        best.sorted(out);
        const auto values = store_->values();
        for (auto& n : out) n.value = values[static_cast<std::size_t>(n.key_index)];
    }

    void search_batch(const float* queries, std::int64_t n_queries, std::int32_t k,
                      std::vector<std::vector<neighbour>>& out, int n_threads = 0) const override {
        check_k(k);
        check_queries(queries, n_queries, dim());
        out.resize(static_cast<std::size_t>(n_queries));
        if (n_queries == 0) return;
        if (n_queries == 1) {  // nothing to share between queries: the streaming kernel is faster
            search(queries, k, out[0]);
            return;
        }
        const std::int64_t d = dim();
        const auto& norms = key_norms();
        std::vector<float> qnorm(static_cast<std::size_t>(n_queries));  // (n_queries)
        for (std::int64_t j = 0; j < n_queries; ++j) qnorm[static_cast<std::size_t>(j)] = sq_norm(queries + j * d, d);

        std::vector<topk> best(static_cast<std::size_t>(n_queries), topk(k));
        std::mutex lock;
        const int nt = n_threads > 0 ? n_threads : n_threads_;
        parallel_ranges(n_keys(), nt, [&](std::int64_t b, std::int64_t e) {
            std::vector<topk> mine(static_cast<std::size_t>(n_queries), topk(k));
            std::vector<float> widened;  // (k_key_block, dim) f16 keys as float32
            std::vector<float> dots(static_cast<std::size_t>(k_query_block * k_key_block));  // (query block, key block)
            for (std::int64_t kb = b; kb < e; kb += k_key_block) {
                const std::int64_t nk = std::min(k_key_block, e - kb);
                const float* kp;
                if (store_->key_type() == dtype::f16) {
                    widened.resize(static_cast<std::size_t>(nk * d));
                    widen_f16(static_cast<const std::uint16_t*>(store_->key_row(kb)), widened.data(), nk * d);
                    kp = widened.data();
                } else {
                    kp = static_cast<const float*>(store_->key_row(kb));
                }
                for (std::int64_t qb = 0; qb < n_queries; qb += k_query_block) {
                    const std::int64_t nq = std::min(k_query_block, n_queries - qb);
                    dot_products(queries + qb * d, nq, kp, nk, d, dots.data(), k_key_block);
                    for (std::int64_t j = 0; j < nq; ++j) {
                        auto& heap = mine[static_cast<std::size_t>(qb + j)];
                        const float qn = qnorm[static_cast<std::size_t>(qb + j)];
                        const float* row = dots.data() + j * k_key_block;
                        for (std::int64_t i = 0; i < nk; ++i) {
                            const float dist = std::max(0.0f, qn + norms[static_cast<std::size_t>(kb + i)] - 2.0f * row[i]);
                            if (dist <= heap.bound()) heap.push(dist, kb + i);
                        }
                    }
                }
            }
            std::lock_guard<std::mutex> g(lock);
            for (std::int64_t j = 0; j < n_queries; ++j) best[static_cast<std::size_t>(j)].merge(mine[static_cast<std::size_t>(j)]);
        }, k_key_block);
        for (std::int64_t j = 0; j < n_queries; ++j) {
            auto& o = out[static_cast<std::size_t>(j)];
            best[static_cast<std::size_t>(j)].sorted(o);
            finalize_neighbours(*store_, queries + j * d, o);
        }
    }

private:
    // ||k||^2 for every key, computed on first batch search (single queries never need it).
    const std::vector<float>& key_norms() const {
        std::call_once(norms_once_, [&] {
            const std::int64_t d = dim();
            norms_.resize(static_cast<std::size_t>(n_keys()));  // (n_keys)
            parallel_ranges(n_keys(), n_threads_, [&](std::int64_t b, std::int64_t e) {
                std::vector<float> row(static_cast<std::size_t>(d));
                for (std::int64_t i = b; i < e; ++i) {
                    const float* kp;
                    if (store_->key_type() == dtype::f16) {
                        widen_f16(static_cast<const std::uint16_t*>(store_->key_row(i)), row.data(), d);
                        kp = row.data();
                    } else {
                        kp = static_cast<const float*>(store_->key_row(i));
                    }
                    norms_[static_cast<std::size_t>(i)] = sq_norm(kp, d);
                }
            }, 4096);
        });
        return norms_;
    }

    std::shared_ptr<const datastore> store_;
    int n_threads_;
    mutable std::once_flag norms_once_;
    mutable std::vector<float> norms_;  // (n_keys)
};

}  // namespace minigpt::knn

// The nearest-neighbour search interface of the kNN-LM, and the bounded top-k selection
// every index shares.
//
// Neighbours are ordered by (squared L2 distance, key index): ties between equally
// distant keys go to the key written first, so every index (and the brute-force test
// reference) agrees on one answer. search() returns at most k neighbours, fewer when the
// store has fewer keys. Queries are float32 vectors of the store's dimension; a null or
// non-finite query is rejected before any parallel work starts.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/threads.hpp"

namespace minigpt::knn {

struct neighbour {
    float distance;            // squared L2 between the query and the key
    std::int32_t value;        // the token that followed the key's context
    std::int64_t key_index;    // row of the key in the datastore
};

// Strict order used for selection and output: nearer first, then lower key index.
inline bool nearer(const neighbour& a, const neighbour& b) noexcept {
    return a.distance < b.distance || (a.distance == b.distance && a.key_index < b.key_index);
}

// Keeps the k nearest of the candidates pushed so far (a max-heap on `nearer`: the root is
// the current k-th best, so most candidates are rejected with one comparison).
class topk {
public:
    explicit topk(std::int32_t k = 1) : k_(static_cast<std::size_t>(std::max<std::int32_t>(k, 1))) { heap_.reserve(k_); }

    void reset(std::int32_t k) {
        k_ = static_cast<std::size_t>(std::max<std::int32_t>(k, 1));
        heap_.clear();
        heap_.reserve(k_);
    }
    // The distance a candidate must beat (or tie with a lower index) to get in.
    float bound() const noexcept { return heap_.size() < k_ ? std::numeric_limits<float>::infinity() : heap_.front().distance; }

    void push(float distance, std::int64_t key_index) noexcept {
        // A NaN (from a corrupted key) would break the heap order: treat it as infinitely far.
        if (!(distance <= std::numeric_limits<float>::max())) distance = std::numeric_limits<float>::infinity();
        const neighbour c{distance, 0, key_index};
        if (heap_.size() < k_) {
            heap_.push_back(c);
            std::push_heap(heap_.begin(), heap_.end(), nearer);
        } else if (nearer(c, heap_.front())) {
            std::pop_heap(heap_.begin(), heap_.end(), nearer);
            heap_.back() = c;
            std::push_heap(heap_.begin(), heap_.end(), nearer);
        }
    }
    void merge(const topk& other) noexcept {
        for (const auto& n : other.heap_) push(n.distance, n.key_index);
    }
    std::size_t size() const noexcept { return heap_.size(); }
    // The kept candidates, nearest first (values are filled in by the caller).
    void sorted(std::vector<neighbour>& out) const {
        out.assign(heap_.begin(), heap_.end());
        std::sort(out.begin(), out.end(), nearer);
    }

private:
    std::size_t k_;
    std::vector<neighbour> heap_;
};

class knn_index {
public:
    virtual ~knn_index() = default;

    // The (at most) k nearest keys to `query` (dim() floats), nearest first.
    virtual void search(const float* query, std::int32_t k, std::vector<neighbour>& out) const = 0;

    // queries (n_queries, dim); out[i] gets query i's neighbours. The default runs the
    // queries in parallel, each one single-threaded.
    virtual void search_batch(const float* queries, std::int64_t n_queries, std::int32_t k,
                              std::vector<std::vector<neighbour>>& out, int n_threads = 0) const;

    virtual std::int64_t dim() const noexcept = 0;
    virtual std::int64_t n_keys() const noexcept = 0;
};

// Validation shared by all indexes; throws before any parallel region is entered.
inline void check_k(std::int32_t k) {
    if (k <= 0) throw error("knn search: k must be positive, got " + std::to_string(k));
}
inline void check_queries(const float* queries, std::int64_t n_queries, std::int64_t dim) {
    if (n_queries < 0) throw error("knn search: negative query count");
    if (n_queries > 0 && !queries) throw error("knn search: null query pointer");
    const std::int64_t n = n_queries * dim;
    for (std::int64_t i = 0; i < n; ++i)
        if (!std::isfinite(queries[i]))
            throw error("knn search: query " + std::to_string(i / dim) + " has a non-finite element at " + std::to_string(i % dim));
}

// parallel_for whose chunks may throw (e.g. bad_alloc for per-thread scratch): the first
// exception is caught inside the region and rethrown on the calling thread once every
// chunk has finished, so nothing escapes an OpenMP region.
template <class Fn>
void parallel_ranges(std::int64_t n, int n_threads, Fn&& fn, std::int64_t grain = 1) {
    std::exception_ptr failure;
    std::mutex lock;
    parallel_for(n, n_threads, [&](std::int64_t b, std::int64_t e) {
        try {
            fn(b, e);
        } catch (...) {
            std::lock_guard<std::mutex> g(lock);
            if (!failure) failure = std::current_exception();
        }
    }, grain);
    if (failure) std::rethrow_exception(failure);
}

// Runs body(i) for i in [0, n) on n_threads, with parallel_ranges' exception handling.
template <class Body>
void parallel_each(std::int64_t n, int n_threads, Body&& body) {
    parallel_ranges(n, n_threads, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) body(i);
    });
}

inline void knn_index::search_batch(const float* queries, std::int64_t n_queries, std::int32_t k,
                                    std::vector<std::vector<neighbour>>& out, int n_threads) const {
    check_k(k);
    check_queries(queries, n_queries, dim());
    out.resize(static_cast<std::size_t>(n_queries));
    parallel_each(n_queries, n_threads, [&](std::int64_t i) { search(queries + i * dim(), k, out[static_cast<std::size_t>(i)]); });
}

}  // namespace minigpt::knn

// The in-memory kNN store the IVF seeds were built for (knn_fuzz.cpp loads fuzzed index files
// against it; make_seeds.cpp writes the seed index from it). Deterministic, so the seed's digest
// matches the store in every run.
#pragma once

#include <memory>
#include <vector>

#include "minigpt/core/tensor.hpp"
#include "minigpt/knn/datastore.hpp"

namespace minigpt::fuzz {

inline constexpr std::int64_t k_store_keys = 64, k_store_dim = 8;

inline std::shared_ptr<const knn::datastore> fixed_store() {
    static const auto store = [] {
        auto keys = tensor::empty(dtype::f32, {k_store_keys, k_store_dim});  // (n_keys, dim)
        std::uint32_t s = 12345;
        for (std::int64_t i = 0; i < k_store_keys * k_store_dim; ++i) {
            s = s * 1664525u + 1013904223u;
            keys.data<float>()[i] = static_cast<float>(s >> 8) / 16777216.0f;
        }
        std::vector<std::int32_t> values(static_cast<std::size_t>(k_store_keys));  // (n_keys)
        for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::int32_t>(i % 17);
        return knn::datastore::from_memory(std::move(keys), std::move(values), "fuzz");
    }();
    return store;
}

}  // namespace minigpt::fuzz

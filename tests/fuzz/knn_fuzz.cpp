// libFuzzer harness: kNN files. Byte 0 picks the reader, the rest is the file:
//   even: a datastore file (knn/datastore.hpp) -> exact search for the 4 nearest keys;
//   odd:  an IVF index file (knn/ivf.hpp) loaded against a fixed in-memory store -> search.
// Seeds: corpus/knn (a store and an index written by make_seeds.cpp).
#include "fuzz_common.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/knn/exact.hpp"
#include "minigpt/knn/ivf.hpp"
#include "knn_fixture.hpp"

using namespace minigpt;

MINIGPT_FUZZ_TARGET(knn) {
    if (size < 1) return 0;
    if ((data[0] & 1) == 0) {
        const std::string& path = fuzz::write_scratch(data + 1, size - 1, ".knnstore");
        fuzz::guarded("knn store", [&] {
            const auto store = knn::datastore::open(path);
            if (store->dim() > 4096) return;  // a valid header; the query below would be the allocation
            const std::vector<float> query(static_cast<std::size_t>(store->dim()), 0.5f);  // (dim)
            knn::exact_index index(store, 1);
            std::vector<knn::neighbour> out;
            index.search(query.data(), 4, out);
        });
        return 0;
    }
    const std::string& path = fuzz::write_scratch(data + 1, size - 1, ".ivf");
    fuzz::guarded("knn ivf", [&] {
        knn::ivf_params p;
        p.n_threads = 1;
        const auto index = knn::ivf_index::load(path, fuzz::fixed_store(), p);
        const std::vector<float> query(fuzz::k_store_dim, 0.25f);  // (dim)
        std::vector<knn::neighbour> out;
        index->search(query.data(), 4, out);
    });
    return 0;
}

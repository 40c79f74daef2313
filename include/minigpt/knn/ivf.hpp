// IVF (inverted file) approximate search: a k-means coarse quantiser splits the keys
// into n_lists cells; a query measures its distance to every centroid, then scans only
// the keys of the `nprobe` nearest cells. nprobe is the recall-versus-speed knob.
//
// The inverted lists are one contiguous array of key indices, grouped by cell (CSR:
// list c is ids[offsets[c] .. offsets[c+1])), ascending inside a cell so a scan walks
// the mapped store forwards. Keys are not copied: scanning reads them from the store.
// The index is saved next to the store (STORE.ivf) and bound to it by a digest of the
// store (sizes, fingerprint, every value and a sample of keys), so a stale index for a
// rebuilt store is rejected instead of silently returning wrong neighbours.
//
// .ivf layout (little-endian): char[8] "MGKNNIVF", u32 version (1), u32 reserved,
// u64 n_lists, u64 dim, u64 n_keys, u64 store digest, u64 reserved x2; then centroids
// (n_lists, dim) f32, offsets (n_lists + 1) u64, ids (n_keys) u64.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/kernels/distance.hpp"
#include "minigpt/knn/exact.hpp"
#include "minigpt/knn/index.hpp"
#include "minigpt/knn/kmeans.hpp"
#include "minigpt/core/progress.hpp"

namespace minigpt::knn {

struct ivf_params {
    std::int64_t n_lists = 0;      // cells; 0: about sqrt(n_keys)
    std::int64_t train_size = 0;   // keys k-means trains on; 0: min(n_keys, 32 * n_lists)
    int n_iterations = 10;         // Lloyd iterations
    std::int32_t nprobe = 16;      // cells scanned per query
    std::uint64_t seed = 0x1f5eedull;
    int n_threads = 0;
};

// FNV-1a over the store's identity: sizes, fingerprint, all values, and every 4099th key row.
inline std::uint64_t store_digest(const datastore& s) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&](const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    };
    const std::int64_t sizes[3] = {s.n_keys(), s.dim(), static_cast<std::int64_t>(s.key_type())};
    mix(sizes, sizeof sizes);
    mix(s.fingerprint().data(), s.fingerprint().size());
    mix(s.values().data(), s.values().size_bytes());
    const std::size_t row_bytes = static_cast<std::size_t>(s.dim()) * detail::key_size(s.key_type());
    for (std::int64_t i = 0; i < s.n_keys(); i += 4099) mix(s.key_row(i), row_bytes);
    if (s.n_keys() > 0) mix(s.key_row(s.n_keys() - 1), row_bytes);
    return h;
}

class ivf_index : public knn_index {
public:
    static std::string default_path(const datastore& s) { return s.path() + ".ivf"; }

    // Trains the quantiser on a sample of the keys and files every key into its cell.
    static std::shared_ptr<ivf_index> build(std::shared_ptr<const datastore> store, const ivf_params& p = {}) {
        if (!store) throw error("ivf_index: null datastore");
        const std::int64_t n = store->n_keys(), dim = store->dim();
        if (n == 0) throw error("ivf_index: the datastore " + store->path() + " has no keys");
        std::int64_t n_lists = p.n_lists > 0 ? p.n_lists : std::max<std::int64_t>(1, std::llround(std::sqrt(static_cast<double>(n))));
        n_lists = std::min(n_lists, n);
        const std::int64_t train = std::clamp<std::int64_t>(p.train_size > 0 ? p.train_size : 32 * n_lists, n_lists, n);

        auto idx = std::shared_ptr<ivf_index>(new ivf_index(store, p));
        const auto rows = sample_indices(n, train, p.seed);
        std::vector<float> sample(static_cast<std::size_t>(checked_mul(static_cast<std::uint64_t>(train), static_cast<std::uint64_t>(dim), "training sample")));  // (train, dim)
        for (std::int64_t i = 0; i < train; ++i) {
            const void* src = store->key_row(rows[static_cast<std::size_t>(i)]);
            float* dst = sample.data() + i * dim;
            if (store->key_type() == dtype::f16) widen_f16(static_cast<const std::uint16_t*>(src), dst, dim);
            else std::memcpy(dst, src, static_cast<std::size_t>(dim) * 4);
        }
        kmeans_params kp;
        kp.n_centroids = n_lists;
        kp.n_iterations = p.n_iterations;
        kp.seed = p.seed ^ 0x9e3779b97f4a7c15ull;
        kp.n_threads = p.n_threads;
        idx->centroids_ = kmeans(sample.data(), train, dim, kp, "IVF k-means (" + std::to_string(n_lists) + " cells)");
        sample = {};
        idx->finish_centroids();

        std::vector<std::int32_t> cell(static_cast<std::size_t>(n));  // (n_keys)
        {
            progress bar("IVF assigning keys", n, ::isatty(2) != 0 && n >= 100000);
            assign_nearest(store->keys().raw(), store->key_type(), n, dim, idx->centroids_.data(), idx->centroid_norms_.data(),
                           n_lists, cell.data(), p.n_threads, &bar);
        }
        idx->offsets_.assign(static_cast<std::size_t>(n_lists + 1), 0);
        for (auto c : cell) ++idx->offsets_[static_cast<std::size_t>(c) + 1];
        for (std::int64_t c = 0; c < n_lists; ++c) idx->offsets_[static_cast<std::size_t>(c + 1)] += idx->offsets_[static_cast<std::size_t>(c)];
        idx->ids_.resize(static_cast<std::size_t>(n));
        std::vector<std::uint64_t> fill(idx->offsets_.begin(), idx->offsets_.end() - 1);
        for (std::int64_t i = 0; i < n; ++i) idx->ids_[static_cast<std::size_t>(fill[static_cast<std::size_t>(cell[static_cast<std::size_t>(i)])]++)] = static_cast<std::uint64_t>(i);
        idx->digest_ = store_digest(*store);
        return idx;
    }

    // Loads an index saved by save(); throws if it does not belong to `store`.
    static std::shared_ptr<ivf_index> load(const std::string& path, std::shared_ptr<const datastore> store, const ivf_params& p = {}) {
        if (!store) throw error("ivf_index: null datastore");
        std::ifstream f(path, std::ios::binary);
        if (!f) throw io_error(path + ": cannot open IVF index");
        f.seekg(0, std::ios::end);
        const auto size = static_cast<std::uint64_t>(f.tellg());
        f.seekg(0);
        auto fail = [&](std::uint64_t off, const std::string& what) { return format_error(path, off, "IVF index: " + what); };
        unsigned char h[64];
        if (size < sizeof h || !f.read(reinterpret_cast<char*>(h), sizeof h)) throw fail(size, "file too short for the header");
        if (std::memcmp(h, "MGKNNIVF", 8) != 0) throw fail(0, "bad magic: not a minigpt IVF index");
        if (detail::get<std::uint32_t>(h + 8) != 1) throw fail(8, "unsupported version " + std::to_string(detail::get<std::uint32_t>(h + 8)));
        const auto n_lists = detail::get<std::uint64_t>(h + 16), dim = detail::get<std::uint64_t>(h + 24);
        const auto n_keys = detail::get<std::uint64_t>(h + 32), digest = detail::get<std::uint64_t>(h + 40);
        if (dim != static_cast<std::uint64_t>(store->dim()) || n_keys != static_cast<std::uint64_t>(store->n_keys()))
            throw fail(24, "index is for " + std::to_string(n_keys) + " keys of dimension " + std::to_string(dim) + ", the store " +
                               store->path() + " has " + std::to_string(store->n_keys()) + " of dimension " + std::to_string(store->dim()));
        if (n_lists == 0 || n_lists > n_keys) throw fail(16, "list count " + std::to_string(n_lists) + " out of range");
        if (digest != store_digest(*store)) throw fail(40, "index was built for another version of the store " + store->path() + " (digest differs)");
        const std::uint64_t want = checked_add(checked_add(64, checked_mul(checked_mul(n_lists, dim, "centroids"), 4, "centroids"), "size"),
                                               checked_add(checked_mul(n_lists + 1, 8, "offsets"), checked_mul(n_keys, 8, "ids"), "size"), "size");
        if (size != want) throw fail(std::min(size, want), "file is " + std::to_string(size) + " bytes, expected " + std::to_string(want));
        auto idx = std::shared_ptr<ivf_index>(new ivf_index(std::move(store), p));
        idx->centroids_.resize(static_cast<std::size_t>(n_lists * dim));
        idx->offsets_.resize(static_cast<std::size_t>(n_lists + 1));
        idx->ids_.resize(static_cast<std::size_t>(n_keys));
        f.read(reinterpret_cast<char*>(idx->centroids_.data()), static_cast<std::streamsize>(idx->centroids_.size() * 4));
        f.read(reinterpret_cast<char*>(idx->offsets_.data()), static_cast<std::streamsize>(idx->offsets_.size() * 8));
        f.read(reinterpret_cast<char*>(idx->ids_.data()), static_cast<std::streamsize>(idx->ids_.size() * 8));
        if (!f) throw fail(64, "read failed");
        const std::uint64_t off_pos = 64 + n_lists * dim * 4;
        if (idx->offsets_.front() != 0 || idx->offsets_.back() != n_keys) throw fail(off_pos, "list offsets do not span the keys");
        for (std::uint64_t c = 0; c < n_lists; ++c)
            if (idx->offsets_[c] > idx->offsets_[c + 1]) throw fail(off_pos + 8 * c, "list offsets decrease at list " + std::to_string(c));
        std::vector<bool> seen(static_cast<std::size_t>(n_keys), false);
        for (std::uint64_t i = 0; i < n_keys; ++i) {
            const auto id = idx->ids_[i];
            if (id >= n_keys || seen[id]) throw fail(off_pos + 8 * (n_lists + 1 + i), "key id " + std::to_string(id) + " out of range or repeated");
            seen[id] = true;
        }
        for (float v : idx->centroids_)
            if (!std::isfinite(v)) throw fail(64, "non-finite centroid");
        idx->digest_ = digest;
        idx->finish_centroids();
        return idx;
    }

    void save(const std::string& path) const {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        if (!f) throw io_error(path + ": cannot create IVF index");
        unsigned char h[64] = {};
        std::memcpy(h, "MGKNNIVF", 8);
        detail::put<std::uint32_t>(h + 8, 1);
        detail::put<std::uint64_t>(h + 16, static_cast<std::uint64_t>(n_lists()));
        detail::put<std::uint64_t>(h + 24, static_cast<std::uint64_t>(dim()));
        detail::put<std::uint64_t>(h + 32, static_cast<std::uint64_t>(n_keys()));
        detail::put<std::uint64_t>(h + 40, digest_);
        f.write(reinterpret_cast<const char*>(h), sizeof h);
        f.write(reinterpret_cast<const char*>(centroids_.data()), static_cast<std::streamsize>(centroids_.size() * 4));
        f.write(reinterpret_cast<const char*>(offsets_.data()), static_cast<std::streamsize>(offsets_.size() * 8));
        f.write(reinterpret_cast<const char*>(ids_.data()), static_cast<std::streamsize>(ids_.size() * 8));
        f.close();
        if (!f) throw io_error(path + ": writing the IVF index failed");
    }

    // Loads STORE.ivf when it exists and matches the store; otherwise builds and saves it.
    static std::shared_ptr<ivf_index> open_or_build(std::shared_ptr<const datastore> store, const ivf_params& p = {}) {
        if (!store) throw error("ivf_index: null datastore");
        const std::string path = default_path(*store);
        if (std::ifstream(path).good()) {
            try {
                auto idx = load(path, store, p);
                if (p.n_lists <= 0 || idx->n_lists() == p.n_lists) return idx;
            } catch (const format_error&) {
                // stale or damaged: rebuilt below
            }
        }
        auto idx = build(store, p);
        idx->save(path);
        return idx;
    }

    std::int64_t dim() const noexcept override { return store_->dim(); }
    std::int64_t n_keys() const noexcept override { return store_->n_keys(); }
    std::int64_t n_lists() const noexcept { return static_cast<std::int64_t>(centroids_.size()) / store_->dim(); }
    std::int32_t nprobe() const noexcept { return nprobe_; }
    void set_nprobe(std::int32_t nprobe) {
        if (nprobe <= 0) throw error("ivf_index: nprobe must be positive, got " + std::to_string(nprobe));
        nprobe_ = nprobe;
    }
    void set_threads(int n_threads) noexcept { n_threads_ = n_threads; }
    const datastore& store() const noexcept { return *store_; }
    // (n_lists, dim) and the CSR lists, for inspection and tests.
    const std::vector<float>& centroids() const noexcept { return centroids_; }
    const std::vector<std::uint64_t>& list_offsets() const noexcept { return offsets_; }
    const std::vector<std::uint64_t>& list_ids() const noexcept { return ids_; }

    void search(const float* query, std::int32_t k, std::vector<neighbour>& out) const override {
        check_k(k);
        check_queries(query, 1, dim());
        const std::int64_t d = dim();
        topk cells(std::min<std::int32_t>(nprobe_, static_cast<std::int32_t>(std::min<std::int64_t>(n_lists(), INT32_MAX))));
        for (std::int64_t c = 0; c < n_lists(); ++c) {
            // ||q - c||^2 from the precomputed norm costs one dot product instead of a difference.
            const float dist = centroid_norms_[static_cast<std::size_t>(c)] - 2.0f * dot(query, centroids_.data() + c * d, d);
            if (dist <= cells.bound()) cells.push(dist, c);
        }
        std::vector<neighbour> probe;
        cells.sorted(probe);
        // Threads pay off only for long scans: waking a team costs tens of microseconds, more
        // than scanning a few thousand keys.
        std::uint64_t to_scan = 0;
        for (const auto& c : probe) to_scan += offsets_[static_cast<std::size_t>(c.key_index) + 1] - offsets_[static_cast<std::size_t>(c.key_index)];
        const int nt = to_scan * static_cast<std::uint64_t>(d) >= (std::uint64_t{1} << 24) ? n_threads_ : 1;
        topk best(k);
        std::mutex lock;
        parallel_ranges(static_cast<std::int64_t>(probe.size()), nt, [&](std::int64_t b, std::int64_t e) {
            topk mine(k);
            for (std::int64_t p = b; p < e; ++p) {
                const auto c = static_cast<std::size_t>(probe[static_cast<std::size_t>(p)].key_index);
                for (std::uint64_t pos = offsets_[c]; pos < offsets_[c + 1]; ++pos) {
                    const auto id = static_cast<std::int64_t>(ids_[pos]);
                    const float dist = key_distance(*store_, query, id);
                    if (dist <= mine.bound()) mine.push(dist, id);
                }
            }
            std::lock_guard<std::mutex> g(lock);
            best.merge(mine);
        });
        best.sorted(out);
        const auto values = store_->values();
        for (auto& n : out) n.value = values[static_cast<std::size_t>(n.key_index)];
    }

private:
    ivf_index(std::shared_ptr<const datastore> store, const ivf_params& p) : store_(std::move(store)), n_threads_(p.n_threads) {
        set_nprobe(p.nprobe);
    }
    void finish_centroids() {
        const std::int64_t d = dim();
        centroid_norms_.resize(static_cast<std::size_t>(n_lists()));
        for (std::int64_t c = 0; c < n_lists(); ++c) centroid_norms_[static_cast<std::size_t>(c)] = sq_norm(centroids_.data() + c * d, d);
    }

    std::shared_ptr<const datastore> store_;
    int n_threads_ = 0;
    std::int32_t nprobe_ = 16;
    std::uint64_t digest_ = 0;
    std::vector<float> centroids_;          // (n_lists, dim)
    std::vector<float> centroid_norms_;     // (n_lists)
    std::vector<std::uint64_t> offsets_;    // (n_lists + 1)
    std::vector<std::uint64_t> ids_;        // (n_keys) grouped by list
};

}  // namespace minigpt::knn

// The kNN-LM datastore: (key = hidden state of a context, value = the token that followed)
// pairs, written incrementally to one file and memory-mapped for search.
//
// File layout (all integers little-endian; full description in docs/knn-lm.md):
//   0   char[8] magic "MGKNNDS\0"
//   8   u32 version (1)
//   12  u32 key type, as a ggml type id: 0 = f32, 1 = f16
//   16  u64 n_keys; all ones while the writer runs, so a crashed or unfinished file is detected
//   24  u64 dim
//   32  u64 keys_offset   = align_up(64 + fingerprint_bytes [+ projection], 4096), so keys are page-aligned for mmap
//   40  u64 values_offset = align_up(keys_offset + n_keys*dim*key_size, 64); 0 while writing
//   48  u32 fingerprint_bytes
//   52  u32 reserved (0); 56 u64 projection_bytes (version 2; reserved 0 in version 1)
//   64  fingerprint: identity of the model (and tap) the keys came from, given by the caller
//   version 2 only, at align_up(64 + fingerprint_bytes, 8): the key projection (PCA) that
//       turned the model's states into the keys: u64 in_dim, u64 out_dim (= dim), f32 mean
//       (in_dim), f32 components (out_dim, in_dim), u64 FNV-1a of the bytes before it
//   keys_offset:   keys   (n_keys, dim) row-major
//   values_offset: values (n_keys) int32 token ids; the file ends right after them.
// Values are kept in memory while writing (4 bytes per key, against dim*2..4 bytes for the
// key itself) and written after the keys by finish(), which then patches the header.
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/half.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/io/mapped_file.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/simd/convert.hpp"

namespace minigpt::knn {

static_assert(std::endian::native == std::endian::little, "the datastore format is little-endian");

inline constexpr char k_store_magic[8] = {'M', 'G', 'K', 'N', 'N', 'D', 'S', '\0'};
inline constexpr std::uint32_t k_store_version = 1;             // stores without a projection
inline constexpr std::uint32_t k_store_version_projected = 2;   // stores whose keys are projected (PCA)
inline constexpr std::uint64_t k_store_header_bytes = 64;
inline constexpr std::uint64_t k_store_incomplete = ~std::uint64_t{0};
inline constexpr std::uint64_t k_store_max_dim = 1u << 20;
inline constexpr std::uint32_t k_store_max_fingerprint = 1u << 20;

namespace detail {

inline std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return checked_add(x, a - 1, "alignment") / a * a; }

inline std::uint64_t key_size(dtype t) { return t == dtype::f16 ? 2 : 4; }

template <class T> void put(unsigned char* p, T v) { std::memcpy(p, &v, sizeof v); }
template <class T> T get(const unsigned char* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline std::uint64_t fnv1a(const unsigned char* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

}  // namespace detail

// A linear map applied to the model's hidden states before they are stored or searched:
// key = components * (state - mean) (PCA, knn/pca.hpp). Empty: keys are the states themselves.
struct key_projection {
    std::int64_t in_dim = 0, out_dim = 0;
    std::vector<float> mean;        // (in_dim)
    std::vector<float> components;  // (out_dim, in_dim), one principal direction per row

    bool empty() const noexcept { return out_dim == 0; }
    // x (in_dim) -> out (out_dim)
    void apply(const float* x, float* out) const {
        for (std::int64_t r = 0; r < out_dim; ++r) {
            const float* c = components.data() + r * in_dim;
            double s = 0.0;
            for (std::int64_t i = 0; i < in_dim; ++i) s += static_cast<double>(c[i]) * (x[i] - mean[static_cast<std::size_t>(i)]);
            out[r] = static_cast<float>(s);
        }
    }
    std::uint64_t n_bytes() const { return 16 + 4 * static_cast<std::uint64_t>(in_dim) * (1 + static_cast<std::uint64_t>(out_dim)) + 8; }

    std::vector<unsigned char> serialize() const {
        std::vector<unsigned char> b(static_cast<std::size_t>(n_bytes()));
        detail::put<std::uint64_t>(b.data(), static_cast<std::uint64_t>(in_dim));
        detail::put<std::uint64_t>(b.data() + 8, static_cast<std::uint64_t>(out_dim));
        std::memcpy(b.data() + 16, mean.data(), mean.size() * 4);
        std::memcpy(b.data() + 16 + mean.size() * 4, components.data(), components.size() * 4);
        const std::size_t body = b.size() - 8;
        detail::put<std::uint64_t>(b.data() + body, detail::fnv1a(b.data(), body));
        return b;
    }

    void validate(const std::string& where) const {
        if (in_dim <= 0 || static_cast<std::uint64_t>(in_dim) > k_store_max_dim || out_dim <= 0 || out_dim > in_dim)
            throw error(where + ": key projection " + std::to_string(in_dim) + " -> " + std::to_string(out_dim) + " out of range");
        if (mean.size() != static_cast<std::size_t>(in_dim) || components.size() != static_cast<std::size_t>(in_dim * out_dim))
            throw shape_error(where + ": key projection arrays do not match its dimensions");
        for (float v : mean)
            if (!std::isfinite(v)) throw error(where + ": key projection has a non-finite mean");
        for (float v : components)
            if (!std::isfinite(v)) throw error(where + ": key projection has a non-finite component");
    }
};

// A read-only set of (key, value) pairs, backed by a mapped store file or by memory.
class datastore {
public:
    // Maps and validates a store file. A non-empty `expected_fingerprint` must equal the one
    // the store was written with; otherwise the store belongs to another model (or tap) and
    // its keys would be meaningless for this one.
    static std::shared_ptr<const datastore> open(const std::string& path, std::string_view expected_fingerprint = {}) {
        auto map = io::mapped_file::open(path);
        const auto* p = reinterpret_cast<const unsigned char*>(map->data());
        const std::uint64_t size = map->size();
        auto fail = [&](std::uint64_t offset, const std::string& what) -> format_error {
            return format_error(path, offset, "kNN datastore: " + what);
        };
        if (size < k_store_header_bytes) throw fail(size, "file too short for the 64-byte header (" + std::to_string(size) + " bytes)");
        if (std::memcmp(p, k_store_magic, 8) != 0) throw fail(0, "bad magic: not a minigpt kNN datastore");
        const auto version = detail::get<std::uint32_t>(p + 8);
        if (version != k_store_version && version != k_store_version_projected)
            throw fail(8, "unsupported version " + std::to_string(version) + " (this build reads versions 1 and 2)");
        const auto type_id = detail::get<std::uint32_t>(p + 12);
        if (type_id != static_cast<std::uint32_t>(dtype::f32) && type_id != static_cast<std::uint32_t>(dtype::f16))
            throw fail(12, "key type id " + std::to_string(type_id) + " is not f32 (0) or f16 (1)");
        const auto type = static_cast<dtype>(type_id);
        const auto n_keys = detail::get<std::uint64_t>(p + 16);
        if (n_keys == k_store_incomplete)
            throw fail(16, "incomplete store: the writer did not finish (crashed, killed or still running)");
        const auto dim = detail::get<std::uint64_t>(p + 24);
        if (dim == 0 || dim > k_store_max_dim) throw fail(24, "key dimension " + std::to_string(dim) + " out of range [1, 2^20]");
        const auto fp_bytes = detail::get<std::uint32_t>(p + 48);
        if (fp_bytes > k_store_max_fingerprint) throw fail(48, "fingerprint length " + std::to_string(fp_bytes) + " too large");
        key_projection proj;
        std::uint64_t head_end = k_store_header_bytes + fp_bytes;
        if (version == k_store_version_projected) {
            const auto proj_bytes = detail::get<std::uint64_t>(p + 56);
            const std::uint64_t at = detail::align_up(head_end, 8);
            if (proj_bytes < 24 || proj_bytes > size || at + proj_bytes > size)
                throw fail(56, "version 2 store: projection size " + std::to_string(proj_bytes) + " does not fit the file");
            proj.in_dim = static_cast<std::int64_t>(detail::get<std::uint64_t>(p + at));
            proj.out_dim = static_cast<std::int64_t>(detail::get<std::uint64_t>(p + at + 8));
            if (proj.in_dim <= 0 || static_cast<std::uint64_t>(proj.in_dim) > k_store_max_dim || static_cast<std::uint64_t>(proj.out_dim) != dim ||
                proj.out_dim > proj.in_dim)
                throw fail(at, "projection " + std::to_string(proj.in_dim) + " -> " + std::to_string(proj.out_dim) +
                                   " does not match the key dimension " + std::to_string(dim));
            if (proj.n_bytes() != proj_bytes)
                throw fail(56, "projection size " + std::to_string(proj_bytes) + " should be " + std::to_string(proj.n_bytes()));
            const std::size_t body = static_cast<std::size_t>(proj_bytes - 8);
            if (detail::fnv1a(p + at, body) != detail::get<std::uint64_t>(p + at + body))
                throw fail(at + body, "projection checksum mismatch (corrupted projection)");
            proj.mean.resize(static_cast<std::size_t>(proj.in_dim));
            proj.components.resize(static_cast<std::size_t>(proj.in_dim * proj.out_dim));
            std::memcpy(proj.mean.data(), p + at + 16, proj.mean.size() * 4);
            std::memcpy(proj.components.data(), p + at + 16 + proj.mean.size() * 4, proj.components.size() * 4);
            proj.validate(path);
            head_end = at + proj_bytes;
        }
        const auto keys_offset = detail::get<std::uint64_t>(p + 32);
        const std::uint64_t want_keys_offset = detail::align_up(head_end, 4096);
        if (keys_offset != want_keys_offset)
            throw fail(32, "keys offset " + std::to_string(keys_offset) + " should be " + std::to_string(want_keys_offset));
        const std::uint64_t key_bytes = checked_mul(checked_mul(n_keys, dim, "datastore keys"), detail::key_size(type), "datastore key bytes");
        const auto values_offset = detail::get<std::uint64_t>(p + 40);
        const std::uint64_t want_values_offset = detail::align_up(checked_add(keys_offset, key_bytes, "datastore size"), 64);
        if (values_offset != want_values_offset)
            throw fail(40, "values offset " + std::to_string(values_offset) + " should be " + std::to_string(want_values_offset) +
                               " for " + std::to_string(n_keys) + " keys of dimension " + std::to_string(dim));
        const std::uint64_t want_size = checked_add(values_offset, checked_mul(n_keys, 4, "datastore values"), "datastore size");
        if (size != want_size)
            throw fail(std::min(size, want_size), "file is " + std::to_string(size) + " bytes but the header describes " +
                                                       std::to_string(want_size) + " (truncated or trailing data)");
        if (n_keys > (std::uint64_t{1} << 40)) throw fail(16, "absurd key count " + std::to_string(n_keys));

        auto s = std::shared_ptr<datastore>(new datastore());
        s->path_ = path;
        s->fingerprint_.assign(reinterpret_cast<const char*>(p + k_store_header_bytes), fp_bytes);
        if (!expected_fingerprint.empty() && expected_fingerprint != s->fingerprint_)
            throw error(path + ": the kNN datastore was built with another model: its fingerprint is '" + s->fingerprint_ +
                        "' but this model's is '" + std::string(expected_fingerprint) + "'");
        const auto* values = reinterpret_cast<const std::int32_t*>(p + values_offset);
        for (std::uint64_t i = 0; i < n_keys; ++i)
            if (values[i] < 0)
                throw fail(values_offset + 4 * i, "value " + std::to_string(i) + " is a negative token id " + std::to_string(values[i]));
        if (n_keys > 0) {
            const std::int64_t shape[2] = {static_cast<std::int64_t>(n_keys), static_cast<std::int64_t>(dim)};
            s->keys_ = tensor::view(type, shape, p + keys_offset, map);
            s->values_ = std::span<const std::int32_t>(values, static_cast<std::size_t>(n_keys));
        }
        s->dim_ = static_cast<std::int64_t>(dim);
        s->type_ = type;
        s->owner_ = map;
        s->projection_ = std::move(proj);
        return s;
    }

    // A store held in memory: keys (n_keys, dim) f32 or f16, values (n_keys) token ids >= 0.
    static std::shared_ptr<const datastore> from_memory(tensor keys, std::vector<std::int32_t> values, std::string fingerprint = {}) {
        if (keys.empty() || keys.rank() != 2) throw shape_error("datastore::from_memory: keys must be a (n_keys, dim) tensor");
        if (keys.type() != dtype::f32 && keys.type() != dtype::f16)
            throw shape_error("datastore::from_memory: keys must be f32 or f16, not " + std::string(dtype_name(keys.type())));
        if (!keys.is_contiguous()) throw shape_error("datastore::from_memory: keys must be contiguous");
        if (static_cast<std::int64_t>(values.size()) != keys.dim(0))
            throw shape_error("datastore::from_memory: " + std::to_string(values.size()) + " values for " + std::to_string(keys.dim(0)) + " keys");
        for (std::size_t i = 0; i < values.size(); ++i)
            if (values[i] < 0) throw error("datastore::from_memory: value " + std::to_string(i) + " is a negative token id");
        auto s = std::shared_ptr<datastore>(new datastore());
        auto held = std::make_shared<std::vector<std::int32_t>>(std::move(values));
        s->values_ = std::span<const std::int32_t>(*held);
        s->owner_ = held;
        s->dim_ = keys.dim(1);
        s->type_ = keys.type();
        s->keys_ = std::move(keys);
        s->fingerprint_ = std::move(fingerprint);
        s->path_ = "<memory>";
        return s;
    }

    std::int64_t n_keys() const noexcept { return static_cast<std::int64_t>(values_.size()); }
    std::int64_t dim() const noexcept { return dim_; }
    dtype key_type() const noexcept { return type_; }
    const std::string& fingerprint() const noexcept { return fingerprint_; }
    const std::string& path() const noexcept { return path_; }
    // (n_keys, dim); empty when the store has no keys.
    const tensor& keys() const noexcept { return keys_; }
    // (n_keys)
    std::span<const std::int32_t> values() const noexcept { return values_; }
    // The projection from model states to keys (version 2 stores); empty when keys are states.
    const key_projection& projection() const noexcept { return projection_; }
    // Dimension of the model states the store answers queries for.
    std::int64_t state_dim() const noexcept { return projection_.empty() ? dim_ : projection_.in_dim; }
    const void* key_row(std::int64_t i) const noexcept {
        return keys_.raw() + static_cast<std::size_t>(i) * static_cast<std::size_t>(dim_) * detail::key_size(type_);
    }

private:
    datastore() = default;
    std::string path_;
    std::string fingerprint_;
    std::int64_t dim_ = 0;
    dtype type_ = dtype::f32;
    tensor keys_;
    std::span<const std::int32_t> values_;
    std::shared_ptr<const void> owner_;
    key_projection projection_;
};

// Writes a store incrementally: append() batches, then finish(). Until finish() returns, the
// header says "incomplete", so a reader rejects a file whose writer died half way.
class datastore_writer {
public:
    // `expected_keys` (optional) only sizes the progress line drawn on a terminal.
    // A non-empty `projection` (out_dim == dim) makes a version 2 store that records it.
    datastore_writer(std::string path, std::int64_t dim, dtype key_type, std::string fingerprint, std::int64_t expected_keys = 0,
                     const key_projection& projection = {})
        : path_(std::move(path)), dim_(dim), type_(key_type),
          progress_("writing kNN datastore " + path_, expected_keys, ::isatty(2) != 0 && (expected_keys <= 0 || expected_keys >= 100000)) {
        if (dim <= 0 || static_cast<std::uint64_t>(dim) > k_store_max_dim)
            throw error("datastore_writer: key dimension " + std::to_string(dim) + " out of range [1, 2^20]");
        if (key_type != dtype::f32 && key_type != dtype::f16)
            throw error("datastore_writer: key type must be f32 or f16, not " + std::string(dtype_name(key_type)));
        if (fingerprint.size() > k_store_max_fingerprint) throw error("datastore_writer: fingerprint longer than 1 MiB");
        std::vector<unsigned char> proj;
        std::uint64_t head_end = k_store_header_bytes + fingerprint.size();
        std::uint64_t proj_at = 0;
        if (!projection.empty()) {
            projection.validate(path_);
            if (projection.out_dim != dim)
                throw error("datastore_writer: projection gives " + std::to_string(projection.out_dim) + " values, keys have " +
                            std::to_string(dim));
            proj = projection.serialize();
            proj_at = detail::align_up(head_end, 8);
            head_end = proj_at + proj.size();
        }
        keys_offset_ = detail::align_up(head_end, 4096);
        std::vector<unsigned char> head(static_cast<std::size_t>(keys_offset_), 0);
        std::memcpy(head.data(), k_store_magic, 8);
        detail::put<std::uint32_t>(head.data() + 8, proj.empty() ? k_store_version : k_store_version_projected);
        detail::put<std::uint64_t>(head.data() + 56, proj.size());
        if (!proj.empty()) std::memcpy(head.data() + proj_at, proj.data(), proj.size());
        detail::put<std::uint32_t>(head.data() + 12, static_cast<std::uint32_t>(key_type));
        detail::put<std::uint64_t>(head.data() + 16, k_store_incomplete);
        detail::put<std::uint64_t>(head.data() + 24, static_cast<std::uint64_t>(dim));
        detail::put<std::uint64_t>(head.data() + 32, keys_offset_);
        detail::put<std::uint64_t>(head.data() + 40, 0);
        detail::put<std::uint32_t>(head.data() + 48, static_cast<std::uint32_t>(fingerprint.size()));
        std::memcpy(head.data() + k_store_header_bytes, fingerprint.data(), fingerprint.size());
        file_ = std::fopen(path_.c_str(), "wb");
        if (!file_) throw io_error(path_ + ": cannot create: " + std::strerror(errno));
        write(head.data(), head.size());
    }
    datastore_writer(const datastore_writer&) = delete;
    datastore_writer& operator=(const datastore_writer&) = delete;
    // An unfinished writer leaves its file marked incomplete (never a file that looks valid).
    ~datastore_writer() {
        if (file_) std::fclose(file_);
    }

    // keys (n, dim) float32, values (n) token ids >= 0.
    void append(const float* keys, const std::int32_t* values, std::int64_t n) {
        if (!file_) throw error(path_ + ": datastore_writer: append after finish");
        if (n < 0) throw error("datastore_writer: negative batch size");
        if (n == 0) return;
        if (!keys || !values) throw error("datastore_writer: null keys or values");
        const std::size_t n_elem = static_cast<std::size_t>(checked_mul(static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(dim_), "batch size"));
        for (std::size_t i = 0; i < n_elem; ++i)
            if (!std::isfinite(keys[i]))
                throw error("datastore_writer: key " + std::to_string(n_keys() + static_cast<std::int64_t>(i) / dim_) + " has a non-finite element");
        for (std::int64_t i = 0; i < n; ++i)
            if (values[i] < 0) throw error("datastore_writer: value of key " + std::to_string(n_keys() + i) + " is a negative token id");
        if (type_ == dtype::f32) {
            write(keys, n_elem * 4);
        } else {
            half_.resize(n_elem);
            simd::f32_to_f16_row(keys, half_.data(), static_cast<std::int64_t>(n_elem));  // rounds like fp32_to_fp16
            write(half_.data(), n_elem * 2);
        }
        values_.insert(values_.end(), values, values + n);
        progress_.update(n_keys());
    }

    // Writes the values, flushes everything to disk, then (and only then) patches the header.
    void finish() {
        if (!file_) throw error(path_ + ": datastore_writer: finish called twice");
        const std::uint64_t n = values_.size();
        const std::uint64_t end_keys = keys_offset_ + n * static_cast<std::uint64_t>(dim_) * detail::key_size(type_);
        const std::uint64_t values_offset = detail::align_up(end_keys, 64);
        const unsigned char zeros[64] = {};
        write(zeros, static_cast<std::size_t>(values_offset - end_keys));
        write(values_.data(), values_.size() * 4);
        sync();
        unsigned char patch[8];
        detail::put<std::uint64_t>(patch, n);
        seek_write(16, patch, 8);
        detail::put<std::uint64_t>(patch, values_offset);
        seek_write(40, patch, 8);
        sync();
        const int rc = std::fclose(file_);
        file_ = nullptr;
        if (rc != 0) throw io_error(path_ + ": close failed: " + std::strerror(errno));
        progress_.done();
    }

    std::int64_t n_keys() const noexcept { return static_cast<std::int64_t>(values_.size()); }
    std::int64_t dim() const noexcept { return dim_; }
    const std::string& path() const noexcept { return path_; }

private:
    void write(const void* p, std::size_t n) {
        if (n != 0 && std::fwrite(p, 1, n, file_) != n) throw io_error(path_ + ": write failed: " + std::strerror(errno));
    }
    void seek_write(long offset, const void* p, std::size_t n) {
        if (std::fseek(file_, offset, SEEK_SET) != 0) throw io_error(path_ + ": seek failed: " + std::strerror(errno));
        write(p, n);
    }
    void sync() {
        if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) throw io_error(path_ + ": flush failed: " + std::strerror(errno));
    }

    std::string path_;
    std::int64_t dim_;
    dtype type_;
    progress progress_;
    std::FILE* file_ = nullptr;
    std::uint64_t keys_offset_ = 0;
    std::vector<std::int32_t> values_;   // (n_keys) held until finish()
    std::vector<std::uint16_t> half_;    // (batch, dim) scratch for f16 conversion
};

}  // namespace minigpt::knn

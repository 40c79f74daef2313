// minigpt::io::gguf_file: a validating, zero-copy reader of GGUF v2/v3 files (llama.cpp's format).
//
// Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv key/value pairs
// (string key, u32 type, value); n_tensors tensor infos (string name, u32 n_dims, n_dims x i64
// ne innermost first, u32 ggml type, u64 offset); padding to general.alignment (default 32);
// the tensor data section, each tensor at its offset from the start of that section.
// Files are treated as hostile: every length is checked against the bytes that remain
// before anything is allocated or read, so a corrupt or truncated file throws
// format_error (path, byte offset, what) and never crashes. Tensors come back as
// minigpt::tensor views into the map (shape outermost first), which keep the map alive:
// opening a multi-GB model touches only its header pages. See docs/gguf.md.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/io/gguf_value.hpp"
#include "minigpt/io/mapped_file.hpp"

namespace minigpt::io {

inline constexpr std::uint32_t k_gguf_default_alignment = 32;
inline constexpr std::uint32_t k_gguf_max_dims = 4;
inline constexpr std::int64_t k_gguf_max_elements = std::int64_t(1) << 48;  // the limit minigpt::tensor accepts

// ggml's names for its type ids, so an unsupported tensor type can be named in the error.
inline std::string ggml_type_name(std::uint32_t id) {
    static constexpr std::string_view names[] = {
        "f32", "f16", "q4_0", "q4_1", "", "", "q5_0", "q5_1", "q8_0", "q8_1", "q2_K", "q3_K", "q4_K", "q5_K",
        "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8",
        "i16", "i32", "i64", "f64", "iq1_m", "bf16", "", "", "", "tq1_0", "tq2_0", "", "", "", "mxfp4"};
    if (id < std::size(names) && !names[id].empty()) return std::string(names[id]);
    return "unknown";
}

// Elements and bytes per block of every ggml type id, including those minigpt cannot compute
// with, so that a file can be listed (`minigpt info`) whatever its types. nullopt: unknown id.
inline std::optional<std::pair<std::uint32_t, std::uint32_t>> ggml_block_geometry(std::uint32_t id) {
    static constexpr std::pair<std::uint32_t, std::uint32_t> table[] = {
        {1, 4}, {1, 2}, {32, 18}, {32, 20}, {0, 0}, {0, 0}, {32, 22}, {32, 24}, {32, 34}, {32, 36},  // f32 .. q8_1
        {256, 84}, {256, 110}, {256, 144}, {256, 176}, {256, 210}, {256, 292},                      // q2_K .. q8_K
        {256, 66}, {256, 74}, {256, 98}, {256, 50}, {32, 18}, {256, 110}, {256, 82}, {256, 136},   // iq2_xxs .. iq4_xs
        {1, 1}, {1, 2}, {1, 4}, {1, 8}, {1, 8}, {256, 56}, {1, 2}, {0, 0}, {0, 0}, {0, 0},          // i8 .. bf16
        {256, 54}, {256, 66}, {0, 0}, {0, 0}, {0, 0}, {32, 17}};                                    // tq1_0, tq2_0, mxfp4
    if (id >= std::size(table) || table[id].first == 0) return std::nullopt;
    return table[id];
}

struct gguf_tensor_info {
    std::string name;
    dtype type;                        // meaningless when !supported
    bool supported = true;             // false: a type minigpt cannot read (listed only, see gguf_file::open_listing)
    std::uint32_t ggml_type = 0;       // the type id as stored
    std::vector<std::int64_t> shape;   // outermost first (the file stores ne[] innermost first)
    std::uint64_t offset;              // from the start of the tensor data section
    std::uint64_t n_bytes;
    std::int64_t n_elements() const {
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

class gguf_file {
public:
    static gguf_file open(const std::string& path, access_hint hint = access_hint::normal) {
        auto map = mapped_file::open(path, hint);
        const std::byte* base = map->data();
        const std::uint64_t size = map->size();
        return gguf_file(std::move(map), base, size, path);
    }

    // Like open(), but tensors of element types minigpt cannot compute with are kept (listed with
    // supported == false) instead of failing the parse: for listing a file (`minigpt info`).
    // get_tensor() still refuses them.
    static gguf_file open_listing(const std::string& path) {
        auto map = mapped_file::open(path, access_hint::normal);
        const std::byte* base = map->data();
        const std::uint64_t size = map->size();
        return gguf_file(std::move(map), base, size, path, true);
    }

    // Parses an in-memory image; `name` stands in for the path in error messages.
    static gguf_file from_memory(std::shared_ptr<const std::vector<std::byte>> bytes, std::string name) {
        if (!bytes) throw error("gguf_file::from_memory: null buffer");
        const std::byte* base = bytes->data();
        const std::uint64_t size = bytes->size();
        return gguf_file(std::move(bytes), base, size, std::move(name));
    }

    std::uint32_t version() const noexcept { return version_; }
    const std::string& path() const noexcept { return path_; }
    std::uint32_t alignment() const noexcept { return alignment_; }
    std::uint64_t file_size() const noexcept { return size_; }
    // Byte offset of the tensor data section (tensor offsets count from here).
    std::uint64_t data_offset() const noexcept { return data_offset_; }

    bool has(std::string_view key) const { return index_.find(key) != index_.end(); }
    gguf_type type_of(std::string_view key) const { return value(key).type(); }
    const gguf_value& value(std::string_view key) const {
        auto it = index_.find(key);
        if (it == index_.end()) throw lookup_error(path_ + ": missing key '" + std::string(key) + "'");
        return kv_[it->second].second;
    }

    // T: bool, integers (range-checked), float/double, std::string, std::string_view (into the map),
    // std::vector of those, nested vectors for nested arrays.
    template <class T> T get(std::string_view key) const {
        const auto& v = value(key);
        try {
            return v.template as<T>(key);
        } catch (const lookup_error& e) {
            throw lookup_error(path_ + ": " + e.what());
        }
    }
    template <class T> std::optional<T> find(std::string_view key) const {
        if (!has(key)) return std::nullopt;
        return get<T>(key);
    }
    template <class T> T get_or(std::string_view key, T fallback) const {
        if (!has(key)) return fallback;
        return get<T>(key);
    }
    // An array of strings as views into the file: no copies (tokenizer vocabularies).
    std::vector<std::string_view> get_string_views(std::string_view key) const { return get<std::vector<std::string_view>>(key); }

    std::vector<std::string> keys() const {
        std::vector<std::string> k;
        k.reserve(kv_.size());
        for (const auto& e : kv_) k.push_back(e.first);
        return k;
    }
    std::size_t n_keys() const noexcept { return kv_.size(); }
    std::string value_string(std::string_view key, std::size_t max_array_items = 8) const {
        return value(key).to_string(max_array_items);
    }

    const std::vector<gguf_tensor_info>& tensors() const noexcept { return tensors_; }
    const gguf_tensor_info* find_tensor(std::string_view name) const {
        auto it = tensor_index_.find(name);
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }
    tensor get_tensor(std::string_view name) const {
        const auto* info = find_tensor(name);
        if (!info) throw lookup_error(path_ + ": missing tensor '" + std::string(name) + "'");
        if (!info->supported)
            throw error(path_ + ": tensor '" + info->name + "' has ggml type " + std::to_string(info->ggml_type) + " (" +
                        ggml_type_name(info->ggml_type) + "), which minigpt does not support");
        return tensor::view(info->type, info->shape, tensor_data(*info), keep_alive_);
    }
    // First byte of a tensor's data in the map.
    const std::byte* tensor_data(const gguf_tensor_info& info) const noexcept { return base_ + data_offset_ + info.offset; }

    // Holds the file's bytes (the map or the in-memory image) alive.
    std::shared_ptr<const void> keep_alive() const noexcept { return keep_alive_; }

private:
    gguf_file(std::shared_ptr<const void> keep, const std::byte* base, std::uint64_t size, std::string path, bool listing = false)
        : keep_alive_(std::move(keep)), base_(base), size_(size), path_(std::move(path)), listing_(listing) {
        parse();
    }

    void parse() {
        detail::gguf_cursor c(base_, size_, path_);
        c.need(4, "magic");
        if (std::memcmp(base_, "GGUF", 4) != 0) {
            std::string got;
            for (int i = 0; i < 4; ++i) got += detail::escape_string(std::string_view(reinterpret_cast<const char*>(base_) + i, 1), false);
            c.fail("not a GGUF file: magic is '" + got + "', expected 'GGUF'");
        }
        c.skip(4, "magic");
        version_ = c.read<std::uint32_t>("version");
        if (version_ == 1)
            c.fail_at(4, "GGUF version 1 is not supported (only versions 2 and 3); re-convert the model with a current llama.cpp");
        if (version_ != 2 && version_ != 3) {
            // A byte-swapped small version (big-endian file) has its low 16 bits zero.
            const bool swapped = (version_ & 0xffffu) == 0;
            c.fail_at(4, "unsupported GGUF version " + std::to_string(version_) + " (supported: 2 and 3)" +
                             (swapped ? "; the file looks big-endian, which minigpt does not read" : ""));
        }
        const std::uint64_t n_tensors = c.read<std::uint64_t>("tensor count");
        const std::uint64_t n_kv = c.read<std::uint64_t>("metadata key/value count");
        // Minimum bytes per entry (empty key + type + 1-byte value; empty-ish tensor info) bound the counts
        // by the file size, so a hostile count cannot make reserve() allocate gigabytes.
        if (n_kv > c.left() / 13)
            c.fail_at(16, "metadata key/value count " + std::to_string(n_kv) + " is impossible for a file of " + std::to_string(size_) + " bytes");
        if (n_tensors > c.left() / 32)
            c.fail_at(8, "tensor count " + std::to_string(n_tensors) + " is impossible for a file of " + std::to_string(size_) + " bytes");

        kv_.reserve(static_cast<std::size_t>(n_kv));
        for (std::uint64_t i = 0; i < n_kv; ++i) {
            const std::uint64_t key_at = c.pos();
            std::string key(c.read_string("key of metadata entry " + std::to_string(i)));
            if (index_.count(key)) c.fail_at(key_at, "duplicate metadata key '" + key + "'");
            const std::uint64_t type_at = c.pos();
            const auto t = c.read<std::uint32_t>("value type of key '" + key + "'");
            if (t >= k_gguf_type_count) c.fail_at(type_at, "key '" + key + "': unknown value type id " + std::to_string(t));
            gguf_value v = detail::gguf_value_parser::parse(c, static_cast<gguf_type>(t), key, 0);
            index_.emplace(key, kv_.size());
            kv_.emplace_back(std::move(key), std::move(v));
        }

        if (auto it = index_.find(std::string_view("general.alignment")); it != index_.end()) {
            const auto& v = kv_[it->second].second;
            if (v.type() != gguf_type::uint32)
                c.fail("general.alignment has type " + v.type_label() + ", expected u32");
            alignment_ = v.as<std::uint32_t>();
            if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
                c.fail("general.alignment is " + std::to_string(alignment_) + ", not a non-zero power of two");
        }

        if (n_tensors > c.left() / 32)
            c.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the " + std::to_string(c.left()) + " bytes left");
        tensors_.reserve(static_cast<std::size_t>(n_tensors));
        std::vector<std::uint64_t> info_at;
        info_at.reserve(static_cast<std::size_t>(n_tensors));
        for (std::uint64_t i = 0; i < n_tensors; ++i) {
            info_at.push_back(c.pos());
            tensors_.push_back(read_tensor_info(c, i));
            if (tensor_index_.count(tensors_.back().name))
                c.fail_at(info_at.back(), "duplicate tensor name '" + tensors_.back().name + "'");
            tensor_index_.emplace(tensors_.back().name, tensors_.size() - 1);
        }

        // The data section starts at the next multiple of the alignment; a file without tensors may end earlier.
        const std::uint64_t end_of_infos = c.pos();
        data_offset_ = c.add(end_of_infos, (alignment_ - end_of_infos % alignment_) % alignment_, "data section offset");
        if (!tensors_.empty() && data_offset_ > size_)
            c.fail("file truncated: the tensor data section would start at byte " + std::to_string(data_offset_) +
                   ", past the end of the file (" + std::to_string(size_) + " bytes)");
        if (tensors_.empty()) data_offset_ = std::min(data_offset_, size_);
        const std::uint64_t data_size = size_ - data_offset_;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const auto& t = tensors_[i];
            const std::uint64_t end = c.add(t.offset, t.n_bytes, "tensor data end");
            if (end > data_size)
                c.fail_at(info_at[i], "tensor '" + t.name + "': " + std::to_string(t.n_bytes) + " bytes at data offset " +
                                          std::to_string(t.offset) + " extend beyond the end of the file (the data section has " +
                                          std::to_string(data_size) + " bytes from byte " + std::to_string(data_offset_) + ")");
        }
        check_overlaps(c, info_at);
    }

    gguf_tensor_info read_tensor_info(detail::gguf_cursor& c, std::uint64_t i) {
        gguf_tensor_info info;
        info.name = std::string(c.read_string("name of tensor " + std::to_string(i)));
        if (info.name.empty()) c.fail("tensor " + std::to_string(i) + " has an empty name");
        const std::string who = "tensor '" + info.name + "'";
        const std::uint64_t dims_at = c.pos();
        const auto n_dims = c.read<std::uint32_t>("dimension count of " + who);
        if (n_dims == 0 || n_dims > k_gguf_max_dims)
            c.fail_at(dims_at, who + " has " + std::to_string(n_dims) + " dimensions (1.." + std::to_string(k_gguf_max_dims) + " allowed)");
        std::int64_t ne[k_gguf_max_dims];
        std::uint64_t n_elements = 1;
        for (std::uint32_t d = 0; d < n_dims; ++d) {
            const std::uint64_t at = c.pos();
            ne[d] = c.read<std::int64_t>("dimension of " + who);
            if (ne[d] <= 0) c.fail_at(at, who + ": dimension " + std::to_string(d) + " is " + std::to_string(ne[d]) + ", must be positive");
            n_elements = c.mul(n_elements, static_cast<std::uint64_t>(ne[d]), "tensor element count");
            if (n_elements > static_cast<std::uint64_t>(k_gguf_max_elements))
                c.fail_at(at, who + " has more than 2^48 elements");
        }
        const std::uint64_t type_at = c.pos();
        const auto type_id = c.read<std::uint32_t>("type of " + who);
        const auto tr = find_dtype(type_id);
        info.ggml_type = type_id;
        if (!tr && listing_) return listed_only(c, std::move(info), type_id, type_at, dims_at, ne, n_dims, n_elements);
        if (!tr)
            c.fail_at(type_at, who + " has ggml type " + std::to_string(type_id) + " (" + ggml_type_name(type_id) +
                                   "), which minigpt does not support (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs)");
        info.type = tr->type;
        if (static_cast<std::uint64_t>(ne[0]) % tr->block_size != 0)
            c.fail_at(dims_at, who + ": row of " + std::to_string(ne[0]) + " elements is not a whole number of " +
                                   std::string(tr->name) + " blocks of " + std::to_string(tr->block_size));
        info.n_bytes = c.mul(n_elements / tr->block_size, tr->block_bytes, "tensor bytes");
        const std::uint64_t offset_at = c.pos();
        info.offset = c.read<std::uint64_t>("data offset of " + who);
        if (info.offset % alignment_ != 0)
            c.fail_at(offset_at, who + ": data offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
                                     std::to_string(alignment_));
        info.shape.assign(std::make_reverse_iterator(ne + n_dims), std::make_reverse_iterator(ne));
        return info;
    }

    // A tensor of a type minigpt cannot compute with, in a listing parse: sized from ggml's block
    // geometry so offsets and overlaps are still checked.
    gguf_tensor_info listed_only(detail::gguf_cursor& c, gguf_tensor_info info, std::uint32_t type_id, std::uint64_t type_at,
                                 std::uint64_t dims_at, const std::int64_t* ne, std::uint32_t n_dims, std::uint64_t n_elements) {
        const auto geo = ggml_block_geometry(type_id);
        if (!geo) c.fail_at(type_at, "tensor '" + info.name + "' has unknown ggml type " + std::to_string(type_id));
        if (static_cast<std::uint64_t>(ne[0]) % geo->first != 0)
            c.fail_at(dims_at, "tensor '" + info.name + "': row of " + std::to_string(ne[0]) + " elements is not a whole number of " +
                                   ggml_type_name(type_id) + " blocks of " + std::to_string(geo->first));
        info.supported = false;
        info.type = dtype::f32;
        info.n_bytes = c.mul(n_elements / geo->first, geo->second, "tensor bytes");
        info.offset = c.read<std::uint64_t>("data offset of tensor '" + info.name + "'");
        if (info.offset % alignment_ != 0)
            c.fail_at(c.pos() - 8, "tensor '" + info.name + "': data offset " + std::to_string(info.offset) + " is not a multiple of the alignment");
        info.shape.assign(std::make_reverse_iterator(ne + n_dims), std::make_reverse_iterator(ne));
        return info;
    }

    // Overlapping tensors are never written by a correct writer; reject them as corruption.
    void check_overlaps(const detail::gguf_cursor& c, const std::vector<std::uint64_t>& info_at) const {
        std::vector<std::size_t> order(tensors_.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return tensors_[a].offset < tensors_[b].offset; });
        for (std::size_t k = 1; k < order.size(); ++k) {
            const auto& prev = tensors_[order[k - 1]];
            const auto& cur = tensors_[order[k]];
            if (prev.offset + prev.n_bytes > cur.offset)
                c.fail_at(info_at[order[k]], "tensor '" + cur.name + "' (offset " + std::to_string(cur.offset) +
                                                 ") overlaps the data of tensor '" + prev.name + "'");
        }
    }

    std::shared_ptr<const void> keep_alive_;
    const std::byte* base_ = nullptr;
    std::uint64_t size_ = 0;
    std::string path_;
    bool listing_ = false;
    std::uint32_t version_ = 0;
    std::uint32_t alignment_ = k_gguf_default_alignment;
    std::uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, gguf_value>> kv_;
    std::map<std::string, std::size_t, std::less<>> index_;
    std::vector<gguf_tensor_info> tensors_;
    std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace minigpt::io

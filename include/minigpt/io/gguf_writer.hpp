// minigpt::io::gguf_writer: writes GGUF v3 files that llama.cpp (and minigpt's reader) load.
//
// GGUF puts every tensor's offset in the header, before the data, while keys may still be
// set after tensors are added (synthesis adds tensors, then the caller adds tokenizer keys).
// So the writer keeps only metadata and tensor infos in memory and streams tensor data to
// a scratch file beside the output (unlinked at once, so it never lingers); finish() writes
// the header to `path.tmp`, appends the data with copy_file_range (an in-kernel copy, a
// reflink on filesystems that have them) and renames it over `path`, so a partial file is
// never visible under the final name. The in-memory variant (tests, small files) keeps the
// data in a vector instead. Layout rules are gguf.c's: header, key/values, tensor infos,
// zero padding to general.alignment (default 32), then each tensor at an aligned offset
// from the start of the data section, padded to the alignment after it.
#pragma once

#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/io/gguf.hpp"

namespace minigpt::io {

namespace detail {

template <class T> struct gguf_encodable_t : std::false_type {};
template <> struct gguf_encodable_t<bool> : std::true_type {};
template <> struct gguf_encodable_t<float> : std::true_type {};
template <> struct gguf_encodable_t<double> : std::true_type {};
template <> struct gguf_encodable_t<std::string> : std::true_type {};
template <> struct gguf_encodable_t<std::string_view> : std::true_type {};
template <class T>
    requires(std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char> && sizeof(T) <= 8)
struct gguf_encodable_t<T> : std::true_type {};
template <class E> struct gguf_encodable_t<std::vector<E>> : gguf_encodable_t<E> {};

template <class T> concept gguf_encodable = gguf_encodable_t<T>::value;

template <gguf_encodable T> constexpr gguf_type gguf_type_for() {
    if constexpr (std::is_same_v<T, bool>) return gguf_type::bool_;
    else if constexpr (std::is_same_v<T, float>) return gguf_type::float32;
    else if constexpr (std::is_same_v<T, double>) return gguf_type::float64;
    else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) return gguf_type::string;
    else if constexpr (is_std_vector<T>::value) return gguf_type::array;
    else if constexpr (sizeof(T) == 1) return std::is_signed_v<T> ? gguf_type::int8 : gguf_type::uint8;
    else if constexpr (sizeof(T) == 2) return std::is_signed_v<T> ? gguf_type::int16 : gguf_type::uint16;
    else if constexpr (sizeof(T) == 4) return std::is_signed_v<T> ? gguf_type::int32 : gguf_type::uint32;
    else return std::is_signed_v<T> ? gguf_type::int64 : gguf_type::uint64;
}

template <class T> void put(std::string& out, const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
inline void put_string(std::string& out, std::string_view s) {
    put<std::uint64_t>(out, s.size());
    out.append(s.data(), s.size());
}

// The value's bytes after its type id (for arrays: element type, count, elements).
template <gguf_encodable T> void encode_payload(std::string& out, const T& v) {
    if constexpr (std::is_same_v<T, bool>) put<std::uint8_t>(out, v ? 1 : 0);
    else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) put_string(out, v);
    else if constexpr (is_std_vector<T>::value) {
        using E = typename T::value_type;
        put<std::uint32_t>(out, static_cast<std::uint32_t>(gguf_type_for<E>()));
        put<std::uint64_t>(out, v.size());
        if constexpr (std::is_arithmetic_v<E> && !std::is_same_v<E, bool>) {
            out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(E));
        } else {
            for (const auto& e : v) encode_payload<E>(out, e);
        }
    } else put<T>(out, v);
}

inline std::string errno_text() { return std::strerror(errno); }

}  // namespace detail

class gguf_writer {
public:
    // In-memory writer: call finish_to_memory().
    gguf_writer() = default;

    // File writer: tensor data streams to an unlinked scratch file beside `path`; call finish().
    explicit gguf_writer(std::string path) : path_(std::move(path)) {
        const std::string scratch = path_ + ".minigpt-data.tmp";
        scratch_fd_ = ::open(scratch.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (scratch_fd_ < 0) throw io_error(scratch + ": cannot create scratch file: " + detail::errno_text());
        ::unlink(scratch.c_str());
        buffer_.reserve(k_buffer_bytes);
    }

    gguf_writer(const gguf_writer&) = delete;
    gguf_writer& operator=(const gguf_writer&) = delete;
    gguf_writer(gguf_writer&& o) noexcept { *this = std::move(o); }
    gguf_writer& operator=(gguf_writer&& o) noexcept {
        if (this != &o) {
            close_scratch();
            path_ = std::move(o.path_);
            scratch_fd_ = std::exchange(o.scratch_fd_, -1);
            buffer_ = std::move(o.buffer_);
            data_bytes_ = std::exchange(o.data_bytes_, 0);
            alignment_ = o.alignment_;
            finished_ = o.finished_;
            kv_ = std::move(o.kv_);
            kv_index_ = std::move(o.kv_index_);
            infos_ = std::move(o.infos_);
            tensor_index_ = std::move(o.tensor_index_);
        }
        return *this;
    }
    ~gguf_writer() { close_scratch(); }

    // Sets (or replaces, keeping its position) a key. T: bool, integers (u8..i64 by size and
    // signedness; not char), float, double, std::string, std::string_view, const char*, and
    // std::vector of any of these, nested vectors for nested arrays.
    template <class T>
        requires detail::gguf_encodable<T>
    void set(std::string_view key, const T& value) {
        std::string enc;
        detail::put<std::uint32_t>(enc, static_cast<std::uint32_t>(detail::gguf_type_for<T>()));
        detail::encode_payload<T>(enc, value);
        if (key == "general.alignment") {
            if constexpr (std::is_same_v<T, std::uint32_t>) apply_alignment(value);
            else throw error("gguf_writer: general.alignment must be a uint32 (llama.cpp reads it as u32)");
        }
        store(key, std::move(enc));
    }
    void set(std::string_view key, const char* value) { set(key, std::string_view(value)); }
    // Copies a value read from another file byte for byte.
    void set(std::string_view key, const gguf_value& value) {
        if (key == "general.alignment") {
            if (value.type() != gguf_type::uint32) throw error("gguf_writer: general.alignment must be a uint32");
            apply_alignment(value.as<std::uint32_t>());
        }
        std::string enc;
        detail::put<std::uint32_t>(enc, static_cast<std::uint32_t>(value.type()));
        enc.append(value.encoded());
        store(key, std::move(enc));
    }
    // Copies every key of `f` that starts with `prefix` (all keys for ""), in file order.
    void copy_metadata_from(const gguf_file& f, std::string_view prefix = "") {
        for (const auto& k : f.keys())
            if (std::string_view(k).substr(0, prefix.size()) == prefix) set(k, f.value(k));
    }
    bool has(std::string_view key) const { return kv_index_.find(key) != kv_index_.end(); }
    void remove(std::string_view key) {
        auto it = kv_index_.find(key);
        if (it == kv_index_.end()) return;
        if (key == "general.alignment") apply_alignment(k_gguf_default_alignment);
        const std::size_t i = it->second;
        kv_index_.erase(it);
        kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(i));
        for (auto& e : kv_index_)
            if (e.second > i) --e.second;
    }

    // Alignment of the data section and of every tensor offset; must precede add_tensor. Writes general.alignment.
    void set_alignment(std::uint32_t alignment) { set("general.alignment", alignment); }
    std::uint32_t alignment() const noexcept { return alignment_; }

    // Appends a tensor (any rank 1..4, shape outermost first; may be a strided view): its rows are
    // written now, so the caller's buffer can be freed right after.
    void add_tensor(std::string name, const tensor& t) {
        if (t.empty()) throw error("gguf_writer: tensor '" + name + "' is empty");
        const auto row_bytes = static_cast<std::size_t>(t.row_bytes());
        add_tensor(std::move(name), t.type(), t.shape(), [&](std::int64_t r, std::byte* dst) { std::memcpy(dst, t.row_ptr(r), row_bytes); });
    }
    // Appends a tensor produced row by row: fill_row(r, dst) writes row r (rows counted over all outer
    // axes) into dst, row_bytes(type, shape.back()) bytes. Nothing larger than one row is held.
    void add_tensor(std::string name, dtype type, std::span<const std::int64_t> shape,
                    const std::function<void(std::int64_t row, std::byte* dst)>& fill_row) {
        check_open();
        if (name.empty()) throw error("gguf_writer: empty tensor name");
        // ggml stores names in a 64-byte field with its NUL terminator.
        if (name.size() > 63) throw error("gguf_writer: tensor name '" + name + "' is longer than 63 bytes, which llama.cpp cannot load");
        if (tensor_index_.count(name)) throw error("gguf_writer: duplicate tensor name '" + name + "'");
        if (shape.empty() || shape.size() > k_gguf_max_dims)
            throw shape_error("gguf_writer: tensor '" + name + "' has rank " + std::to_string(shape.size()) + " (1..4 allowed)");
        std::uint64_t n_rows = 1;
        for (std::size_t i = 0; i < shape.size(); ++i) {
            if (shape[i] <= 0) throw shape_error("gguf_writer: tensor '" + name + "' has a non-positive dimension");
            if (i + 1 < shape.size()) n_rows = checked_mul(n_rows, static_cast<std::uint64_t>(shape[i]), "tensor rows");
        }
        const std::uint64_t row = row_bytes(type, static_cast<std::uint64_t>(shape.back()));
        info_t info{name, type, std::vector<std::int64_t>(shape.begin(), shape.end()), 0};
        pad_data();
        info.offset = data_bytes_;
        std::vector<std::byte> buf(static_cast<std::size_t>(row));
        for (std::uint64_t r = 0; r < n_rows; ++r) {
            fill_row(static_cast<std::int64_t>(r), buf.data());
            write_data(buf.data(), buf.size());
        }
        tensor_index_.emplace(info.name, infos_.size());
        infos_.push_back(std::move(info));
    }
    std::size_t n_tensors() const noexcept { return infos_.size(); }
    std::size_t n_keys() const noexcept { return kv_.size(); }

    // File writer: writes `path` (header, then the streamed data) and closes the writer.
    void finish() {
        check_open();
        if (path_.empty()) throw error("gguf_writer::finish: this is an in-memory writer; use finish_to_memory()");
        if (!infos_.empty()) pad_data();
        flush_buffer();
        const std::string header = build_header();
        const std::string tmp = path_ + ".tmp";
        const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0) throw io_error(tmp + ": cannot create: " + detail::errno_text());
        try {
            write_all(out, header.data(), header.size(), tmp);
            copy_scratch(out, tmp);
            if (::close(out) != 0) throw io_error(tmp + ": close failed: " + detail::errno_text());
        } catch (...) {
            ::close(out);
            ::unlink(tmp.c_str());
            throw;
        }
        if (::rename(tmp.c_str(), path_.c_str()) != 0) {
            const std::string e = detail::errno_text();
            ::unlink(tmp.c_str());
            throw io_error(path_ + ": cannot rename " + tmp + " into place: " + e);
        }
        finished_ = true;
        close_scratch();
    }

    // In-memory writer: the whole file image; closes the writer.
    std::vector<std::byte> finish_to_memory() {
        check_open();
        if (!path_.empty()) throw error("gguf_writer::finish_to_memory: this writer writes " + path_ + "; use finish()");
        if (!infos_.empty()) pad_data();
        const std::string header = build_header();
        std::vector<std::byte> out(header.size() + buffer_.size());
        std::memcpy(out.data(), header.data(), header.size());
        if (!buffer_.empty()) std::memcpy(out.data() + header.size(), buffer_.data(), buffer_.size());
        finished_ = true;
        buffer_.clear();
        return out;
    }

private:
    static constexpr std::size_t k_buffer_bytes = std::size_t(1) << 20;

    struct info_t {
        std::string name;
        dtype type;
        std::vector<std::int64_t> shape;  // outermost first
        std::uint64_t offset;
    };

    void check_open() const {
        if (finished_) throw error("gguf_writer: already finished");
    }
    void apply_alignment(std::uint32_t a) {
        if (a == 0 || (a & (a - 1)) != 0) throw error("gguf_writer: alignment " + std::to_string(a) + " is not a non-zero power of two");
        if (!infos_.empty() && a != alignment_) throw error("gguf_writer: set general.alignment before adding tensors");
        alignment_ = a;
    }
    void store(std::string_view key, std::string enc) {
        check_open();
        if (key.empty()) throw error("gguf_writer: empty key");
        auto it = kv_index_.find(key);
        if (it != kv_index_.end()) {
            kv_[it->second].second = std::move(enc);
            return;
        }
        kv_index_.emplace(std::string(key), kv_.size());
        kv_.emplace_back(std::string(key), std::move(enc));
    }

    std::string build_header() const {
        std::string h;
        h.append("GGUF", 4);
        detail::put<std::uint32_t>(h, 3);
        detail::put<std::uint64_t>(h, infos_.size());
        detail::put<std::uint64_t>(h, kv_.size());
        for (const auto& [key, enc] : kv_) {
            detail::put_string(h, key);
            h += enc;
        }
        for (const auto& t : infos_) {
            detail::put_string(h, t.name);
            detail::put<std::uint32_t>(h, static_cast<std::uint32_t>(t.shape.size()));
            for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) detail::put<std::int64_t>(h, *it);  // ne[], innermost first
            detail::put<std::uint32_t>(h, static_cast<std::uint32_t>(t.type));
            detail::put<std::uint64_t>(h, t.offset);
        }
        if (!infos_.empty()) h.append((alignment_ - h.size() % alignment_) % alignment_, '\0');
        return h;
    }

    void pad_data() {
        static constexpr std::byte zeros[256] = {};
        std::uint64_t pad = (alignment_ - data_bytes_ % alignment_) % alignment_;
        while (pad > 0) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(pad, sizeof zeros));
            write_data(zeros, n);
            pad -= n;
        }
    }
    void write_data(const std::byte* p, std::size_t n) {
        data_bytes_ = checked_add(data_bytes_, n, "GGUF data size");
        if (path_.empty()) {
            buffer_.insert(buffer_.end(), p, p + n);
            return;
        }
        if (buffer_.size() + n > k_buffer_bytes) flush_buffer();
        if (n >= k_buffer_bytes) write_all(scratch_fd_, p, n, path_ + " (scratch data)");
        else buffer_.insert(buffer_.end(), p, p + n);
    }
    void flush_buffer() {
        if (path_.empty() || buffer_.empty()) return;
        write_all(scratch_fd_, buffer_.data(), buffer_.size(), path_ + " (scratch data)");
        buffer_.clear();
    }
    static void write_all(int fd, const void* data, std::size_t n, const std::string& what) {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            const ssize_t w = ::write(fd, p, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                throw io_error(what + ": write failed: " + detail::errno_text());
            }
            p += w;
            n -= static_cast<std::size_t>(w);
        }
    }
    // Appends the scratch file to `out`; copy_file_range avoids a trip through user space.
    void copy_scratch(int out, const std::string& what) {
        loff_t in_off = 0;
        std::uint64_t left = data_bytes_;
        bool kernel_copy = true;
        std::vector<char> buf;
        while (left > 0) {
            const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(left, std::uint64_t(1) << 30));
            if (kernel_copy) {
                const ssize_t n = ::copy_file_range(scratch_fd_, &in_off, out, nullptr, chunk, 0);
                if (n > 0) { left -= static_cast<std::uint64_t>(n); continue; }
                if (n < 0 && errno == EINTR) continue;
                if (n == 0) throw io_error(what + ": scratch data ended early");
                kernel_copy = false;  // EXDEV, ENOSYS, EINVAL...: fall back to read/write
            }
            buf.resize(k_buffer_bytes);
            const ssize_t r = ::pread(scratch_fd_, buf.data(), std::min(buf.size(), chunk), in_off);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) throw io_error(what + ": cannot read scratch data: " + detail::errno_text());
            write_all(out, buf.data(), static_cast<std::size_t>(r), what);
            in_off += r;
            left -= static_cast<std::uint64_t>(r);
        }
    }
    void close_scratch() noexcept {
        if (scratch_fd_ >= 0) ::close(scratch_fd_);
        scratch_fd_ = -1;
    }

    std::string path_;                   // empty: in-memory writer
    int scratch_fd_ = -1;
    std::vector<std::byte> buffer_;      // in-memory: all data; file: write buffer for the scratch file
    std::uint64_t data_bytes_ = 0;       // data section bytes so far (padding included)
    std::uint32_t alignment_ = k_gguf_default_alignment;
    bool finished_ = false;
    std::vector<std::pair<std::string, std::string>> kv_;  // key, type id + payload
    std::map<std::string, std::size_t, std::less<>> kv_index_;
    std::vector<info_t> infos_;
    std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace minigpt::io

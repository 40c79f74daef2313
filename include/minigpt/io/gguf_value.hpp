// GGUF metadata values: the type enum, a bounds-checked cursor over file bytes, and
// gguf_value, a zero-copy handle on one value (scalar, string or array, arrays may nest).
//
// A gguf_value does not copy its payload: it points into the file's bytes (the mmap or
// the in-memory image), so a 150k-entry token list costs nothing until it is read.
// Parsing validates everything up front (lengths against the bytes left, type ids,
// bool bytes, nesting depth), so the accessors can walk the payload without checks.
// Conversions (as<T>) follow the rules of gguf_file::get: integers convert between
// widths when the stored value fits, floats between f32 and f64, nothing else mixes.
#pragma once

#include <bit>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt::io {

static_assert(std::endian::native == std::endian::little, "minigpt reads GGUF (little-endian) by memcpy");

enum class gguf_type : std::uint32_t {
    uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6,
    bool_ = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12
};

inline constexpr std::uint32_t k_gguf_type_count = 13;

// Short names as llama.cpp prints them ("u32", "str", "arr", ...).
inline std::string_view gguf_type_name(gguf_type t) {
    static constexpr std::string_view names[k_gguf_type_count] = {"u8",  "i8",  "u16", "i16", "u32", "i32", "f32",
                                                                  "bool", "str", "arr", "u64", "i64", "f64"};
    const auto i = static_cast<std::uint32_t>(t);
    return i < k_gguf_type_count ? names[i] : std::string_view("?");
}

// Bytes of one fixed-size value, 0 for string and array.
inline std::uint64_t gguf_scalar_bytes(gguf_type t) {
    switch (t) {
        case gguf_type::uint8: case gguf_type::int8: case gguf_type::bool_: return 1;
        case gguf_type::uint16: case gguf_type::int16: return 2;
        case gguf_type::uint32: case gguf_type::int32: case gguf_type::float32: return 4;
        case gguf_type::uint64: case gguf_type::int64: case gguf_type::float64: return 8;
        case gguf_type::string: case gguf_type::array: return 0;
    }
    return 0;
}

inline bool gguf_is_integer(gguf_type t) {
    return t == gguf_type::uint8 || t == gguf_type::int8 || t == gguf_type::uint16 || t == gguf_type::int16 ||
           t == gguf_type::uint32 || t == gguf_type::int32 || t == gguf_type::uint64 || t == gguf_type::int64;
}

namespace detail {

// Reads little-endian fields from [base, base+size) and throws format_error (path, offset)
// on any read past the end. Every size that comes from the file goes through need().
class gguf_cursor {
public:
    gguf_cursor(const std::byte* base, std::uint64_t size, const std::string& path) : base_(base), size_(size), path_(path) {}

    std::uint64_t pos() const noexcept { return pos_; }
    std::uint64_t left() const noexcept { return size_ - pos_; }
    const std::byte* here() const noexcept { return base_ + pos_; }
    const std::string& path() const noexcept { return path_; }

    [[noreturn]] void fail(const std::string& what) const { throw format_error(path_, pos_, what); }
    [[noreturn]] void fail_at(std::uint64_t at, const std::string& what) const { throw format_error(path_, at, what); }

    void need(std::uint64_t n, const std::string& what) const {
        if (n > left())
            fail("file truncated: " + what + " needs " + std::to_string(n) + " bytes, only " + std::to_string(left()) +
                 " left");
    }
    // Only after an explicit check against left().
    void advance(std::uint64_t n) noexcept { pos_ += n; }
    void skip(std::uint64_t n, const std::string& what) {
        need(n, what);
        pos_ += n;
    }
    template <class T> T read(const std::string& what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, base_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string_view read_string(const std::string& what) {
        const auto n = read<std::uint64_t>(what + " length");
        need(n, what + " of " + std::to_string(n) + " bytes");
        std::string_view s(reinterpret_cast<const char*>(base_ + pos_), static_cast<std::size_t>(n));
        pos_ += n;
        return s;
    }
    // checked_mul/checked_add, reported as a format error at the current offset.
    std::uint64_t mul(std::uint64_t a, std::uint64_t b, const char* what) const {
        try { return checked_mul(a, b, what); } catch (const format_error&) { throw; } catch (const error& e) { fail(e.what()); }
    }
    std::uint64_t add(std::uint64_t a, std::uint64_t b, const char* what) const {
        try { return checked_add(a, b, what); } catch (const format_error&) { throw; } catch (const error& e) { fail(e.what()); }
    }

private:
    const std::byte* base_;
    std::uint64_t size_;
    std::uint64_t pos_ = 0;
    const std::string& path_;
};

template <class T> struct is_std_vector : std::false_type {};
template <class E> struct is_std_vector<std::vector<E>> : std::true_type {};

// The name of a requested C++ type in GGUF terms, for error messages.
template <class T> std::string asked_type_name() {
    if constexpr (std::is_same_v<T, bool>) return "bool";
    else if constexpr (std::is_integral_v<T>) return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
    else if constexpr (std::is_same_v<T, float>) return "float32";
    else if constexpr (std::is_same_v<T, double>) return "float64";
    else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) return "string";
    else if constexpr (is_std_vector<T>::value) return "array of " + asked_type_name<typename T::value_type>();
    else static_assert(!sizeof(T), "gguf: unsupported value type");
}

inline std::string format_float(double v, bool is_f32) {
    char buf[64];
    auto r = is_f32 ? std::to_chars(buf, buf + sizeof buf, static_cast<float>(v)) : std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// Printable form of a string: control bytes and quotes escaped so one value stays on one line.
inline std::string escape_string(std::string_view s, bool quoted) {
    std::string out;
    out.reserve(s.size() + 2);
    if (quoted) out += '"';
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c == '\r') out += "\\r";
        else if (c == '\\') out += "\\\\";
        else if (c == '"' && quoted) out += "\\\"";
        else if (c < 0x20 || c == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else out += ch;
    }
    if (quoted) out += '"';
    return out;
}

struct gguf_value_parser;

}  // namespace detail

class gguf_value {
public:
    gguf_value() = default;

    gguf_type type() const noexcept { return type_; }
    bool is_array() const noexcept { return type_ == gguf_type::array; }
    // Element type of an array (the type itself for a scalar).
    gguf_type element_type() const noexcept { return is_array() ? element_type_ : type_; }
    // Elements of an array; 1 for a scalar or string.
    std::uint64_t size() const noexcept { return is_array() ? count_ : 1; }
    // The value as stored after its type id (for an array: element type, count, elements), for verbatim copies.
    std::string_view encoded() const noexcept { return {reinterpret_cast<const char*>(encoded_), static_cast<std::size_t>(encoded_bytes_)}; }

    // "u32", "str", "arr[str,50257]", "arr[arr,2]".
    std::string type_label() const {
        if (!is_array()) return std::string(gguf_type_name(type_));
        return "arr[" + std::string(gguf_type_name(element_type_)) + "," + std::to_string(count_) + "]";
    }

    // Element i of an array. O(1) except for arrays of strings, which are walked (use gguf_file::get_string_views in bulk).
    gguf_value element(std::uint64_t i) const {
        if (!is_array()) throw lookup_error("gguf_value::element: not an array");
        if (i >= count_) throw lookup_error("gguf array index " + std::to_string(i) + " out of range (" + std::to_string(count_) + " elements)");
        if (element_type_ == gguf_type::array) return children_[static_cast<std::size_t>(i)];
        gguf_value v;
        v.type_ = element_type_;
        if (element_type_ == gguf_type::string) {
            const std::byte* p = data_;
            for (std::uint64_t k = 0; k < i; ++k) p += 8 + load<std::uint64_t>(p);
            v.encoded_ = p;
            v.data_ = p + 8;
            v.data_bytes_ = load<std::uint64_t>(p);
            v.encoded_bytes_ = 8 + v.data_bytes_;
        } else {
            const auto n = gguf_scalar_bytes(element_type_);
            v.encoded_ = v.data_ = data_ + i * n;
            v.encoded_bytes_ = v.data_bytes_ = n;
        }
        return v;
    }

    // Conversion by the rules of gguf_file::get; `key` only names the value in error messages.
    template <class T> T as(std::string_view key = "value") const {
        if constexpr (detail::is_std_vector<T>::value) {
            using E = typename T::value_type;
            if (!is_array()) mismatch<T>(key);
            T out;
            out.reserve(static_cast<std::size_t>(count_));
            if constexpr (detail::is_std_vector<E>::value) {
                if (element_type_ != gguf_type::array) mismatch<T>(key);
                for (const auto& c : children_) out.push_back(c.template as<E>(key));
            } else if constexpr (std::is_same_v<E, std::string> || std::is_same_v<E, std::string_view>) {
                if (element_type_ != gguf_type::string) mismatch<T>(key);
                const std::byte* p = data_;
                for (std::uint64_t i = 0; i < count_; ++i) {
                    const auto n = load<std::uint64_t>(p);
                    out.emplace_back(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n));
                    p += 8 + n;
                }
            } else {
                if (!scalar_compatible<E>(element_type_)) mismatch<T>(key);
                const auto n = gguf_scalar_bytes(element_type_);
                if constexpr (!std::is_same_v<E, bool>) {
                    if (sizeof(E) == n && exact_match<E>(element_type_)) {  // the common case: one memcpy
                        out.resize(static_cast<std::size_t>(count_));
                        if (count_ > 0) std::memcpy(static_cast<void*>(out.data()), data_, static_cast<std::size_t>(count_ * n));
                        return out;
                    }
                }
                for (std::uint64_t i = 0; i < count_; ++i) out.push_back(scalar_as<E>(element_type_, data_ + i * n, key, i));
            }
            return out;
        } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
            if (type_ != gguf_type::string) mismatch<T>(key);
            return T(reinterpret_cast<const char*>(data_), static_cast<std::size_t>(data_bytes_));
        } else {
            if (!scalar_compatible<T>(type_)) mismatch<T>(key);
            return scalar_as<T>(type_, data_, key, UINT64_MAX);
        }
    }

    // Printable value: strings escaped (quoted inside arrays), arrays as [a, b, ...] cut after max_array_items.
    std::string to_string(std::size_t max_array_items = 8) const {
        if (type_ == gguf_type::string) return detail::escape_string(as<std::string_view>(), false);
        if (!is_array()) return scalar_string(type_, data_);
        std::string s = "[";
        const std::uint64_t shown = std::min<std::uint64_t>(count_, max_array_items);
        const std::byte* p = data_;
        for (std::uint64_t i = 0; i < shown; ++i) {
            if (i) s += ", ";
            if (element_type_ == gguf_type::array) {
                s += children_[static_cast<std::size_t>(i)].to_string(max_array_items);
            } else if (element_type_ == gguf_type::string) {
                const auto n = load<std::uint64_t>(p);
                s += detail::escape_string({reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n)}, true);
                p += 8 + n;
            } else {
                s += scalar_string(element_type_, data_ + i * gguf_scalar_bytes(element_type_));
            }
        }
        if (shown < count_) s += std::string(shown ? ", " : "") + "... (" + std::to_string(count_ - shown) + " more)";
        return s + "]";
    }

private:
    friend struct detail::gguf_value_parser;

    template <class T> static T load(const std::byte* p) {
        T v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }

    template <class T> static bool scalar_compatible(gguf_type t) {
        if constexpr (std::is_same_v<T, bool>) return t == gguf_type::bool_;
        else if constexpr (std::is_integral_v<T>) return gguf_is_integer(t);
        else if constexpr (std::is_floating_point_v<T>) return t == gguf_type::float32 || t == gguf_type::float64;
        else return false;
    }
    template <class T> static bool exact_match(gguf_type t) {
        if constexpr (std::is_same_v<T, float>) return t == gguf_type::float32;
        else if constexpr (std::is_same_v<T, double>) return t == gguf_type::float64;
        else if constexpr (std::is_integral_v<T>) {
            const bool stored_signed = t == gguf_type::int8 || t == gguf_type::int16 || t == gguf_type::int32 || t == gguf_type::int64;
            return gguf_is_integer(t) && stored_signed == std::is_signed_v<T>;
        } else return false;
    }

    // Reads one compatible scalar; integers must fit in T (index < UINT64_MAX names an array element).
    template <class T> static T scalar_as(gguf_type t, const std::byte* p, std::string_view key, std::uint64_t index) {
        if constexpr (std::is_same_v<T, bool>) {
            return load<std::uint8_t>(p) != 0;
        } else if constexpr (std::is_integral_v<T>) {
            auto check = [&](auto v) -> T {
                if (!std::in_range<T>(v))
                    throw lookup_error("key '" + std::string(key) + "'" +
                                       (index == UINT64_MAX ? std::string() : "[" + std::to_string(index) + "]") +
                                       ": stored " + std::string(gguf_type_name(t)) + " value " + std::to_string(v) +
                                       " does not fit in " + detail::asked_type_name<T>());
                return static_cast<T>(v);
            };
            switch (t) {
                case gguf_type::uint8: return check(load<std::uint8_t>(p));
                case gguf_type::int8: return check(load<std::int8_t>(p));
                case gguf_type::uint16: return check(load<std::uint16_t>(p));
                case gguf_type::int16: return check(load<std::int16_t>(p));
                case gguf_type::uint32: return check(load<std::uint32_t>(p));
                case gguf_type::int32: return check(load<std::int32_t>(p));
                case gguf_type::uint64: return check(load<std::uint64_t>(p));
                case gguf_type::int64: return check(load<std::int64_t>(p));
                default: break;
            }
            return T{};
        } else {
            return t == gguf_type::float32 ? static_cast<T>(load<float>(p)) : static_cast<T>(load<double>(p));
        }
    }

    static std::string scalar_string(gguf_type t, const std::byte* p) {
        switch (t) {
            case gguf_type::uint8: return std::to_string(load<std::uint8_t>(p));
            case gguf_type::int8: return std::to_string(load<std::int8_t>(p));
            case gguf_type::uint16: return std::to_string(load<std::uint16_t>(p));
            case gguf_type::int16: return std::to_string(load<std::int16_t>(p));
            case gguf_type::uint32: return std::to_string(load<std::uint32_t>(p));
            case gguf_type::int32: return std::to_string(load<std::int32_t>(p));
            case gguf_type::uint64: return std::to_string(load<std::uint64_t>(p));
            case gguf_type::int64: return std::to_string(load<std::int64_t>(p));
            case gguf_type::float32: return detail::format_float(load<float>(p), true);
            case gguf_type::float64: return detail::format_float(load<double>(p), false);
            case gguf_type::bool_: return load<std::uint8_t>(p) ? "true" : "false";
            default: return "?";
        }
    }

    template <class T> [[noreturn]] void mismatch(std::string_view key) const {
        std::string stored = is_array() ? "array of " + std::string(gguf_type_name(element_type_)) : std::string(gguf_type_name(type_));
        throw lookup_error("key '" + std::string(key) + "' has type " + stored + ", asked for " + detail::asked_type_name<T>());
    }

    gguf_type type_ = gguf_type::uint8;
    gguf_type element_type_ = gguf_type::uint8;
    std::uint64_t count_ = 0;
    const std::byte* encoded_ = nullptr;  // first byte after the value's type id
    std::uint64_t encoded_bytes_ = 0;
    const std::byte* data_ = nullptr;     // scalar bytes, string bytes, or first array element
    std::uint64_t data_bytes_ = 0;
    std::vector<gguf_value> children_;    // arrays of arrays only
};

namespace detail {

inline constexpr int k_gguf_max_array_depth = 16;

// Parses one value of type t at the cursor, validating every length before trusting it.
struct gguf_value_parser {
    static gguf_value parse(gguf_cursor& c, gguf_type t, const std::string& key, int depth) {
        gguf_value v;
        v.type_ = t;
        v.encoded_ = c.here();
        const std::uint64_t start = c.pos();
        if (t == gguf_type::string) {
            const std::string_view s = c.read_string("string value of key '" + key + "'");
            v.data_ = reinterpret_cast<const std::byte*>(s.data());
            v.data_bytes_ = s.size();
        } else if (t == gguf_type::array) {
            if (depth >= k_gguf_max_array_depth)
                c.fail("key '" + key + "': arrays nested deeper than " + std::to_string(k_gguf_max_array_depth) + " levels");
            const std::uint64_t type_at = c.pos();
            const auto et = c.read<std::uint32_t>("array element type of key '" + key + "'");
            if (et >= k_gguf_type_count)
                c.fail_at(type_at, "key '" + key + "': unknown array element type id " + std::to_string(et));
            v.element_type_ = static_cast<gguf_type>(et);
            v.count_ = c.read<std::uint64_t>("array length of key '" + key + "'");
            // Smallest encoding of one element: a fixed-size scalar, an 8-byte string length, or a 12-byte array header.
            const std::uint64_t min_bytes = v.element_type_ == gguf_type::string  ? 8
                                            : v.element_type_ == gguf_type::array ? 12
                                                                                   : gguf_scalar_bytes(v.element_type_);
            if (v.count_ > c.left() / min_bytes)
                c.fail("key '" + key + "': array of " + std::to_string(v.count_) + " " +
                       std::string(gguf_type_name(v.element_type_)) + " elements cannot fit in the " +
                       std::to_string(c.left()) + " bytes left");
            v.data_ = c.here();
            const std::uint64_t data_start = c.pos();
            if (v.element_type_ == gguf_type::string) {
                // Hot loop (150k-token vocabularies): messages are only built on failure.
                for (std::uint64_t i = 0; i < v.count_; ++i) {
                    if (c.left() < 8) c.fail("file truncated: length of string " + std::to_string(i) + " of key '" + key + "'");
                    std::uint64_t n;
                    std::memcpy(&n, c.here(), 8);
                    if (n > c.left() - 8)
                        c.fail("key '" + key + "': string " + std::to_string(i) + " of " + std::to_string(n) +
                               " bytes runs past the end of the file");
                    c.advance(8 + n);
                }
            } else if (v.element_type_ == gguf_type::array) {
                v.children_.reserve(static_cast<std::size_t>(v.count_));
                for (std::uint64_t i = 0; i < v.count_; ++i)
                    v.children_.push_back(parse(c, gguf_type::array, key, depth + 1));
            } else {
                const std::uint64_t n = c.mul(v.count_, min_bytes, "array bytes");
                if (v.element_type_ == gguf_type::bool_) check_bools(c, n, key);
                c.skip(n, "array of key '" + key + "'");
            }
            v.data_bytes_ = c.pos() - data_start;
        } else {
            const auto n = gguf_scalar_bytes(t);
            c.need(n, std::string(gguf_type_name(t)) + " value of key '" + key + "'");
            if (t == gguf_type::bool_) check_bools(c, 1, key);
            v.data_ = c.here();
            v.data_bytes_ = n;
            c.skip(n, "value");
        }
        v.encoded_bytes_ = c.pos() - start;
        return v;
    }

    // A bool is one byte, 0 or 1; anything else marks a corrupt or misparsed file.
    static void check_bools(const gguf_cursor& c, std::uint64_t n, const std::string& key) {
        c.need(n, "bool values of key '" + key + "'");
        for (std::uint64_t i = 0; i < n; ++i) {
            const auto b = static_cast<std::uint8_t>(c.here()[i]);
            if (b > 1) c.fail_at(c.pos() + i, "key '" + key + "': bool byte is " + std::to_string(b) + ", not 0 or 1");
        }
    }
};

}  // namespace detail
}  // namespace minigpt::io

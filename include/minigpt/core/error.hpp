// minigpt::error and its subclasses: the only way library code reports bad input.
//
// Library code never exits or aborts. Anything that comes from outside (files,
// shapes, token ids, text) is checked and reported by throwing one of these, with
// a message that names the file, byte offset, key or tensor at fault.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace minigpt {

// Base class of every exception minigpt throws on purpose.
class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error(what) {}
};

// A file (or in-memory image of one) is malformed: wrong magic, truncated, absurd
// counts, data beyond the end. Carries the path and the byte offset where reading failed.
class format_error : public error {
public:
    format_error(std::string path, std::uint64_t offset, const std::string& what)
        : error(path + ": at byte " + std::to_string(offset) + ": " + what),
          path_(std::move(path)), offset_(offset) {}
    const std::string& path() const noexcept { return path_; }
    std::uint64_t offset() const noexcept { return offset_; }

private:
    std::string path_;
    std::uint64_t offset_;
};

// Mismatched shapes or element types passed to a kernel or model function.
class shape_error : public error {
public:
    using error::error;
};

// A key, tensor or token that was asked for and is not there (or has another type).
class lookup_error : public error {
public:
    using error::error;
};

// I/O failure from the operating system (open, mmap, write).
class io_error : public error {
public:
    using error::error;
};

namespace detail {
[[noreturn]] inline void throw_shape(const std::string& what) { throw shape_error(what); }
}  // namespace detail

// Checked multiply/add for sizes that come from files: throw instead of wrapping.
inline std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what) {
    std::uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) throw error(std::string("size overflow computing ") + what);
    return r;
}
inline std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const char* what) {
    std::uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) throw error(std::string("size overflow computing ") + what);
    return r;
}

}  // namespace minigpt

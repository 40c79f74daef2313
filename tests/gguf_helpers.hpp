// Helpers shared by the GGUF tests: GGUF images assembled byte by byte (independently of
// gguf_writer), whole-file reads and the format_error expectation.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "minigpt/io/gguf.hpp"

namespace minigpt::test {

using namespace minigpt::io;

using bytes_ptr = std::shared_ptr<const std::vector<std::byte>>;

// Assembles little-endian GGUF bytes by hand, independently of gguf_writer.
struct image {
    std::vector<std::byte> b;
    template <class T> image& pod(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    image& u32(std::uint32_t v) { return pod(v); }
    image& u64(std::uint64_t v) { return pod(v); }
    image& i64(std::int64_t v) { return pod(v); }
    image& str(std::string_view s) {
        u64(s.size());
        for (char c : s) b.push_back(static_cast<std::byte>(c));
        return *this;
    }
    image& header(std::uint32_t version, std::uint64_t n_tensors, std::uint64_t n_kv) {
        b.insert(b.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
        return u32(version).u64(n_tensors).u64(n_kv);
    }
    image& key(std::string_view k, gguf_type t) { return str(k).u32(static_cast<std::uint32_t>(t)); }
    image& tensor_info(std::string_view name, std::vector<std::int64_t> ne, std::uint32_t type, std::uint64_t offset) {
        str(name).u32(static_cast<std::uint32_t>(ne.size()));
        for (auto d : ne) i64(d);
        return u32(type).u64(offset);
    }
    image& pad_to(std::size_t alignment) {
        while (b.size() % alignment) b.push_back(std::byte{0});
        return *this;
    }
    bytes_ptr ptr() const { return std::make_shared<const std::vector<std::byte>>(b); }
};

inline bytes_ptr read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto out = std::make_shared<std::vector<std::byte>>(c.size());
    std::memcpy(out->data(), c.data(), c.size());
    return out;
}

// Expects a format_error whose message contains `needle`.
inline void expect_format_error(const bytes_ptr& bytes, const std::string& needle) {
    try {
        gguf_file::from_memory(bytes, "hostile.gguf");
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const format_error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("hostile.gguf"), std::string::npos) << e.what();
    }
}

// The hand-built file used by several tests: 9 keys of varied types, alignment 64, an f32 (2, 3)
// tensor at data offset 0 and a q8_0 (32) tensor at 64. With trailing_pad=false the file ends
// exactly at the last tensor byte, so every strict prefix is a truncated file.
struct tiny_file {
    image img;
    std::uint64_t data_offset = 0;
};
inline tiny_file build_tiny(std::uint32_t version, bool trailing_pad) {
    tiny_file t;
    image& m = t.img;
    m.header(version, 2, 9);
    m.key("general.architecture", gguf_type::string).str("tiny");
    m.key("tiny.block_count", gguf_type::uint32).u32(3);
    m.key("tiny.eps", gguf_type::float32).pod(0.5f);
    m.key("tiny.flag", gguf_type::bool_).pod(std::uint8_t{1});
    m.key("tiny.small", gguf_type::int8).pod(std::int8_t{-5});
    m.key("tiny.ids", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::uint16)).u64(2).pod(std::uint16_t{1}).pod(std::uint16_t{65535});
    m.key("tiny.nested", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::array)).u64(2);
    m.u32(static_cast<std::uint32_t>(gguf_type::int32)).u64(2).pod(std::int32_t{-1}).pod(std::int32_t{2});
    m.u32(static_cast<std::uint32_t>(gguf_type::int32)).u64(0);
    m.key("tiny.words", gguf_type::array).u32(static_cast<std::uint32_t>(gguf_type::string)).u64(2).str("a").str("bc");
    m.key("general.alignment", gguf_type::uint32).u32(64);
    m.tensor_info("w", {3, 2}, 0, 0);
    m.tensor_info("q", {32}, 8, 64);
    m.pad_to(64);
    t.data_offset = m.b.size();
    for (int i = 1; i <= 6; ++i) m.pod(static_cast<float>(i));
    m.pad_to(64);
    m.pod(std::uint16_t{0x3c00});  // q8_0 block: fp16 scale 1.0, then 32 int8 quants 0..31
    for (int i = 0; i < 32; ++i) m.pod(static_cast<std::int8_t>(i));
    if (trailing_pad) m.pad_to(64);
    return t;
}


}  // namespace minigpt::test

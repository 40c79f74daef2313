// Element types as GGUF/ggml numbers them, with their block geometry.
//
// Quantised types store rows as a sequence of fixed-size blocks; a row of n
// elements of type t takes (n / block_size(t)) * block_bytes(t) bytes and n must be
// a multiple of the block size. The numeric values are ggml's `ggml_type` ids, so
// a dtype can be read straight from a GGUF tensor-info record.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "minigpt/core/error.hpp"

namespace minigpt {

enum class dtype : std::uint32_t {
    f32 = 0,
    f16 = 1,
    q4_0 = 2,
    q4_1 = 3,
    q5_0 = 6,
    q5_1 = 7,
    q8_0 = 8,
    q2_k = 10,
    q3_k = 11,
    q4_k = 12,
    q5_k = 13,
    q6_k = 14,
    iq4_nl = 20,
    iq4_xs = 23,
    bf16 = 30,
};

struct dtype_traits {
    dtype type;
    std::string_view name;       // lower case, as llama.cpp prints it ("q4_K" is spelt "q4_k" here)
    std::uint32_t block_size;    // elements per block
    std::uint32_t block_bytes;   // bytes per block
};

inline constexpr dtype_traits k_dtype_table[] = {
    {dtype::f32, "f32", 1, 4},
    {dtype::f16, "f16", 1, 2},
    {dtype::q4_0, "q4_0", 32, 18},
    {dtype::q4_1, "q4_1", 32, 20},
    {dtype::q5_0, "q5_0", 32, 22},
    {dtype::q5_1, "q5_1", 32, 24},
    {dtype::q8_0, "q8_0", 32, 34},
    {dtype::q2_k, "q2_k", 256, 84},
    {dtype::q3_k, "q3_k", 256, 110},
    {dtype::q4_k, "q4_k", 256, 144},
    {dtype::q5_k, "q5_k", 256, 176},
    {dtype::q6_k, "q6_k", 256, 210},
    {dtype::iq4_nl, "iq4_nl", 32, 18},
    {dtype::iq4_xs, "iq4_xs", 256, 136},
    {dtype::bf16, "bf16", 1, 2},
};

// The traits of a supported type, or nullopt for any other ggml type id.
inline std::optional<dtype_traits> find_dtype(std::uint32_t id) {
    for (const auto& t : k_dtype_table)
        if (static_cast<std::uint32_t>(t.type) == id) return t;
    return std::nullopt;
}

inline const dtype_traits& traits(dtype t) {
    for (const auto& e : k_dtype_table)
        if (e.type == t) return e;
    throw error("unsupported element type id " + std::to_string(static_cast<std::uint32_t>(t)));
}

inline std::string_view dtype_name(dtype t) { return traits(t).name; }
inline std::uint32_t block_size(dtype t) { return traits(t).block_size; }
inline std::uint32_t block_bytes(dtype t) { return traits(t).block_bytes; }
inline bool is_quantized(dtype t) { return block_size(t) > 1; }

// Parse "f32", "F16", "q8_0", "Q4_K"... as printed by llama.cpp; throws on anything else.
inline dtype parse_dtype(std::string_view s) {
    std::string lower(s);
    for (auto& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    for (const auto& t : k_dtype_table)
        if (t.name == lower) return t.type;
    throw error("unknown element type '" + std::string(s) + "' (expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl or iq4_xs)");
}

// Bytes taken by a row of n_elements; throws if n_elements is not a whole number of blocks.
inline std::uint64_t row_bytes(dtype t, std::uint64_t n_elements) {
    const auto& tr = traits(t);
    if (n_elements % tr.block_size != 0)
        throw shape_error("row of " + std::to_string(n_elements) + " elements is not a multiple of the " +
                          std::string(tr.name) + " block size " + std::to_string(tr.block_size));
    return checked_mul(n_elements / tr.block_size, tr.block_bytes, "row bytes");
}

}  // namespace minigpt

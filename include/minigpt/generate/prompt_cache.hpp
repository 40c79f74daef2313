// Prompt-prefix KV files (llama.cpp's --prompt-cache): the KV state of a prompt saved to a file and
// restored on a later run whose prompt starts with the same tokens, so only the new tail is
// prefilled.
//
// File (little-endian): "MGKV", version u32, model fingerprint (u64 length + bytes), n_layer i64,
// kv_dim i64, KV element type u32 (dtype), n_tokens i64, the tokens (i32 each), then per layer the K
// rows and the V rows of positions [0, n_tokens) exactly as the cache holds them, then an FNV-1a
// checksum u64 of everything before it.
// Loading validates every field against the context before touching it (fingerprint, layer count,
// row width, element type, context size, token ids, exact file size, checksum) and throws
// format_error naming the file, byte offset and field; the context is unchanged on error.
// Restoring: positions restored = the common prefix of the saved tokens and the prompt, but at most
// prompt length - 1, because sampling needs the logits of the last prompt token, which the file
// does not hold (llama.cpp re-evaluates that token the same way).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/model/context.hpp"

namespace minigpt {

inline constexpr std::uint32_t k_prompt_cache_version = 1;

namespace detail {

inline std::uint64_t prompt_cache_fnv(const char* p, std::size_t n, std::uint64_t h) {
    for (std::size_t i = 0; i < n; ++i) { h ^= static_cast<unsigned char>(p[i]); h *= 1099511628211ull; }
    return h;
}

}  // namespace detail

// Saves positions [0, tokens.size()) of `ctx`, which must hold exactly those tokens there.
inline void save_prompt_cache(const std::string& path, const context& ctx, std::span<const std::int32_t> tokens) {
    const auto n = static_cast<std::int64_t>(tokens.size());
    if (n == 0) throw error("save_prompt_cache: no tokens");
    if (n > ctx.n_past()) throw error("save_prompt_cache: " + std::to_string(n) + " tokens but the context holds " + std::to_string(ctx.n_past()));
    const kv_cache& kv = ctx.kv();
    std::string out;
    auto put = [&](const void* p, std::size_t bytes) { out.append(static_cast<const char*>(p), bytes); };
    auto pod = [&](auto v) { put(&v, sizeof v); };
    put("MGKV", 4);
    pod(k_prompt_cache_version);
    const std::string fp = ctx.get_model().fingerprint();
    pod(static_cast<std::uint64_t>(fp.size()));
    put(fp.data(), fp.size());
    pod(kv.n_layer());
    pod(kv.kv_dim());
    pod(static_cast<std::uint32_t>(kv.type()));
    pod(n);
    put(tokens.data(), tokens.size_bytes());
    const auto rows = static_cast<std::size_t>(kv.row_bytes() * n);
    out.reserve(out.size() + 2 * static_cast<std::size_t>(kv.n_layer()) * rows + 8);
    for (std::int64_t l = 0; l < kv.n_layer(); ++l) {
        put(kv.k(l), rows);
        put(kv.v(l), rows);
    }
    pod(detail::prompt_cache_fnv(out.data(), out.size(), 1469598103934665603ull));
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) throw io_error("cannot write '" + tmp + "'");
        f.write(out.data(), static_cast<std::streamsize>(out.size()));
        if (!f) throw io_error("short write to '" + tmp + "'");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw io_error("cannot rename '" + tmp + "' to '" + path + "'");  // readers never see half a file
}

struct prompt_cache_info {
    std::vector<std::int32_t> tokens;  // the saved prompt
    std::int64_t n_restored = 0;       // positions now in the context
};

// Restores the longest usable prefix of a saved prompt into an empty `ctx` (see the header comment).
inline prompt_cache_info load_prompt_cache(const std::string& path, context& ctx, std::span<const std::int32_t> prompt) {
    if (ctx.n_past() != 0) throw error("load_prompt_cache: the context is not empty");
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) throw io_error("cannot open prompt cache '" + path + "'");
    const auto file_size = static_cast<std::uint64_t>(f.tellg());
    f.seekg(0);
    std::uint64_t pos = 0;
    auto fail = [&](const std::string& what) -> void { throw format_error(path, pos, what); };
    auto read = [&](void* dst, std::uint64_t n, const char* field) {
        if (file_size - pos < n) fail(std::string("truncated ") + field + " (" + std::to_string(n) + " bytes needed, " + std::to_string(file_size - pos) + " left)");
        f.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
        if (!f) throw io_error(path + ": read failed at byte " + std::to_string(pos));
        pos += n;
    };
    std::uint64_t h = 1469598103934665603ull;
    auto read_h = [&](void* dst, std::uint64_t n, const char* field) {
        read(dst, n, field);
        h = detail::prompt_cache_fnv(static_cast<const char*>(dst), static_cast<std::size_t>(n), h);
    };
    char magic[4];
    read_h(magic, 4, "magic");
    if (std::memcmp(magic, "MGKV", 4) != 0) { pos = 0; fail("not a minigpt prompt cache (magic)"); }
    std::uint32_t version;
    read_h(&version, 4, "version");
    if (version != k_prompt_cache_version) { pos -= 4; fail("version " + std::to_string(version) + " unsupported"); }
    std::uint64_t fp_len;
    read_h(&fp_len, 8, "fingerprint length");
    if (fp_len > 4096) { pos -= 8; fail("fingerprint length " + std::to_string(fp_len) + " is absurd"); }
    std::string fp(static_cast<std::size_t>(fp_len), '\0');
    read_h(fp.data(), fp_len, "model fingerprint");
    if (fp != ctx.get_model().fingerprint()) {
        pos -= fp_len;
        fail("model fingerprint '" + fp + "' is not this model's ('" + ctx.get_model().fingerprint() + "')");
    }
    const kv_cache& kv = ctx.kv();
    std::int64_t n_layer, kv_dim, n_tokens;
    std::uint32_t type;
    read_h(&n_layer, 8, "n_layer");
    if (n_layer != kv.n_layer()) { pos -= 8; fail("n_layer " + std::to_string(n_layer) + " differs from the model's " + std::to_string(kv.n_layer())); }
    read_h(&kv_dim, 8, "kv_dim");
    if (kv_dim != kv.kv_dim()) { pos -= 8; fail("kv_dim " + std::to_string(kv_dim) + " differs from the model's " + std::to_string(kv.kv_dim())); }
    read_h(&type, 4, "KV type");
    if (type != static_cast<std::uint32_t>(kv.type())) {
        pos -= 4;
        fail("KV type " + std::to_string(type) + " differs from the context's " + std::string(dtype_name(kv.type())) + " (use the same --cache-type)");
    }
    read_h(&n_tokens, 8, "n_tokens");
    if (n_tokens <= 0 || n_tokens > ctx.n_ctx()) { pos -= 8; fail("n_tokens " + std::to_string(n_tokens) + " outside [1, n_ctx " + std::to_string(ctx.n_ctx()) + "]"); }
    const std::uint64_t rows = static_cast<std::uint64_t>(kv.row_bytes()) * static_cast<std::uint64_t>(n_tokens);
    const std::uint64_t expect = pos + 4ull * static_cast<std::uint64_t>(n_tokens) +
                                 checked_mul(2ull * static_cast<std::uint64_t>(n_layer), rows, "prompt cache size") + 8;
    if (file_size != expect) fail("file is " + std::to_string(file_size) + " bytes but its header describes " + std::to_string(expect));
    prompt_cache_info info;
    info.tokens.resize(static_cast<std::size_t>(n_tokens));
    const std::uint64_t tokens_at = pos;
    read_h(info.tokens.data(), 4ull * static_cast<std::uint64_t>(n_tokens), "tokens");
    for (std::size_t i = 0; i < info.tokens.size(); ++i)
        if (info.tokens[i] < 0 || info.tokens[i] >= ctx.n_vocab()) {
            pos = tokens_at + 4 * i;
            fail("token " + std::to_string(i) + " id " + std::to_string(info.tokens[i]) + " out of range");
        }
    // Read every row (the checksum covers them) into a staging buffer, so a bad file leaves ctx as it was.
    std::vector<char> data(static_cast<std::size_t>(2 * n_layer) * static_cast<std::size_t>(rows));  // (n_layer, K|V, n_tokens, row_bytes)
    read_h(data.data(), data.size(), "KV rows");
    std::uint64_t sum;
    const std::uint64_t sum_at = pos;
    read(&sum, 8, "checksum");
    if (sum != h) { pos = sum_at; fail("checksum mismatch: the file is damaged"); }

    std::int64_t common = 0;
    const auto limit = std::min<std::int64_t>(n_tokens, static_cast<std::int64_t>(prompt.size()) - 1);
    while (common < limit && info.tokens[static_cast<std::size_t>(common)] == prompt[static_cast<std::size_t>(common)]) ++common;
    const auto keep = static_cast<std::size_t>(kv.row_bytes() * common);
    kv_cache& dst = ctx.kv();
    for (std::int64_t l = 0; l < n_layer; ++l) {
        const char* base = data.data() + static_cast<std::size_t>(2 * l) * rows;
        if (keep) {
            std::memcpy(dst.k(l), base, keep);
            std::memcpy(dst.v(l), base + rows, keep);
        }
    }
    ctx.set_restored_positions(common);
    info.n_restored = common;
    return info;
}

}  // namespace minigpt

// minigpt::io::llama2c_checkpoint: zero-copy reader of llama2.c checkpoints (`run.c` format).
//
// Layout: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
// negative vocab_size means the classifier is stored separately), then float32 arrays:
// token_embedding_table (vocab, dim), rms_att_weight (layers, dim), wq (layers, dim, dim),
// wk (layers, kv_dim, dim), wv (layers, kv_dim, dim), wo (layers, dim, dim), rms_ffn_weight
// (layers, dim), w1 (layers, hidden, dim), w2 (layers, dim, hidden), w3 (layers, hidden, dim),
// rms_final_weight (dim), freq_cis_real and freq_cis_imag (seq_len * head_size/2 each; minigpt
// recomputes RoPE and skips them), then wcls (vocab, dim) when unshared.
// The weights are presented as tensor views over the map under GGUF names and shapes
// (outermost first), so the model loader treats both formats alike. The Q/K weights keep
// llama2.c's adjacent-pairs RoPE layout, which is also what Llama GGUF files use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/tensor.hpp"
#include "minigpt/io/mapped_file.hpp"

namespace minigpt::io {

struct llama2c_config {
    std::int32_t dim = 0;
    std::int32_t hidden_dim = 0;
    std::int32_t n_layers = 0;
    std::int32_t n_heads = 0;
    std::int32_t n_kv_heads = 0;
    std::int32_t vocab_size = 0;        // always positive here; the file's sign is in shared_classifier
    std::int32_t seq_len = 0;
    bool shared_classifier = true;      // output.weight is token_embd.weight
    std::int32_t head_size() const { return dim / n_heads; }
    std::int32_t kv_dim() const { return head_size() * n_kv_heads; }
};

inline constexpr std::uint64_t k_llama2c_header_bytes = 7 * 4;

class llama2c_checkpoint {
public:
    static llama2c_checkpoint open(const std::string& path, access_hint hint = access_hint::normal) {
        auto map = mapped_file::open(path, hint);
        const std::byte* base = map->data();
        const std::uint64_t size = map->size();
        return llama2c_checkpoint(std::move(map), base, size, path);
    }
    static llama2c_checkpoint from_memory(std::shared_ptr<const std::vector<std::byte>> bytes, std::string name) {
        if (!bytes) throw error("llama2c_checkpoint::from_memory: null buffer");
        const std::byte* base = bytes->data();
        const std::uint64_t size = bytes->size();
        return llama2c_checkpoint(std::move(bytes), base, size, std::move(name));
    }

    // Bytes a checkpoint with this header must have (header included); throws on overflow.
    static std::uint64_t expected_size(const llama2c_config& c) {
        std::uint64_t floats = 0;
        for (const auto& p : layout(c)) floats = checked_add(floats, p.n_floats, "llama2.c checkpoint size");
        return checked_add(k_llama2c_header_bytes, checked_mul(floats, 4, "llama2.c checkpoint size"), "llama2.c checkpoint size");
    }

    llama2c_config config;

    const std::string& path() const noexcept { return path_; }
    // GGUF names in file order (all layers' attn_norm, then all attn_q, ...).
    const std::vector<std::string>& tensor_names() const noexcept { return names_; }
    std::optional<tensor> find_tensor(std::string_view name) const {
        auto it = tensors_.find(name);
        if (it == tensors_.end()) return std::nullopt;
        return it->second;
    }
    tensor get_tensor(std::string_view name) const {
        auto t = find_tensor(name);
        if (!t) throw lookup_error(path_ + ": llama2.c checkpoint has no tensor '" + std::string(name) + "'");
        return *t;
    }
    std::shared_ptr<const void> keep_alive() const noexcept { return keep_alive_; }

    // "dim 64, hidden_dim 172, 5 layers, ..." for messages and `minigpt info`.
    std::string summary() const {
        const auto& c = config;
        return "dim " + std::to_string(c.dim) + ", hidden_dim " + std::to_string(c.hidden_dim) + ", " + std::to_string(c.n_layers) +
               " layers, " + std::to_string(c.n_heads) + " heads, " + std::to_string(c.n_kv_heads) + " kv heads, vocab " +
               std::to_string(c.vocab_size) + ", seq_len " + std::to_string(c.seq_len) + ", " +
               (c.shared_classifier ? "shared" : "unshared") + " classifier";
    }

private:
    // One float32 array of the file, in file order; per_layer arrays hold n_layers slices.
    struct part {
        const char* name;          // GGUF suffix ("attn_q") or full name; empty for skipped arrays
        bool per_layer;
        std::int64_t rows, cols;   // one slice: (rows, cols); rows == 0 marks a 1-D (cols) slice
        std::uint64_t n_floats;    // whole array
    };

    static std::vector<part> layout(const llama2c_config& c) {
        const std::uint64_t L = static_cast<std::uint64_t>(c.n_layers), d = static_cast<std::uint64_t>(c.dim);
        const std::uint64_t h = static_cast<std::uint64_t>(c.hidden_dim), kv = static_cast<std::uint64_t>(c.kv_dim());
        const std::uint64_t v = static_cast<std::uint64_t>(c.vocab_size), s = static_cast<std::uint64_t>(c.seq_len);
        const std::uint64_t half = static_cast<std::uint64_t>(c.head_size() / 2);
        auto n = [](std::uint64_t a, std::uint64_t b, std::uint64_t k = 1) {
            return checked_mul(checked_mul(a, b, "llama2.c array size"), k, "llama2.c array size");
        };
        std::vector<part> p = {
            {"token_embd.weight", false, c.vocab_size, c.dim, n(v, d)},
            {"attn_norm", true, 0, c.dim, n(L, d)},
            {"attn_q", true, c.dim, c.dim, n(L, d, d)},
            {"attn_k", true, c.kv_dim(), c.dim, n(L, kv, d)},
            {"attn_v", true, c.kv_dim(), c.dim, n(L, kv, d)},
            {"attn_output", true, c.dim, c.dim, n(L, d, d)},
            {"ffn_norm", true, 0, c.dim, n(L, d)},
            {"ffn_gate", true, c.hidden_dim, c.dim, n(L, h, d)},   // w1
            {"ffn_down", true, c.dim, c.hidden_dim, n(L, d, h)},   // w2
            {"ffn_up", true, c.hidden_dim, c.dim, n(L, h, d)},     // w3
            {"output_norm.weight", false, 0, c.dim, d},
            {"", false, 0, 0, n(s, half)},                          // freq_cis_real
            {"", false, 0, 0, n(s, half)},                          // freq_cis_imag
        };
        if (!c.shared_classifier) p.push_back({"output.weight", false, c.vocab_size, c.dim, n(v, d)});
        return p;
    }

    llama2c_checkpoint(std::shared_ptr<const void> keep, const std::byte* base, std::uint64_t size, std::string path)
        : keep_alive_(std::move(keep)), path_(std::move(path)) {
        static constexpr const char* field[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
        // A llama2.c file has no magic: a header whose fields are far outside any model's (a text file
        // renamed, another format) means the file is neither format, which is what the user must hear.
        static constexpr std::int32_t plausible[7] = {1 << 16, 1 << 20, 1 << 12, 1 << 12, 1 << 12, 1 << 24, 1 << 24};
        auto looks_like_text = [&](std::uint64_t n) {
            bool text = n > 0;
            for (std::uint64_t b = 0; b < n; ++b) {
                const auto c = static_cast<unsigned char>(base[b]);
                text = text && (c >= 0x20 || c == '\n' || c == '\r' || c == '\t');
            }
            return text;
        };
        if (size < k_llama2c_header_bytes) {
            // Too short for any model. A short text (no zero byte can be in a real header's small
            // little-endian ints) or a complete field out of range is not a cut-off checkpoint.
            bool implausible = looks_like_text(size);
            for (std::uint64_t i = 0; i < 7 && 4 * (i + 1) <= size; ++i) {
                std::int32_t v;
                std::memcpy(&v, base + 4 * i, 4);
                if (i == 5 && v < 0 && v != INT32_MIN) v = -v;  // vocab_size's sign flags an unshared classifier
                implausible = implausible || v <= 0 || v > plausible[i];
            }
            if (implausible)
                throw format_error(path_, 0, "not a GGUF or llama2.c file (no GGUF magic, and " + std::to_string(size) +
                                                 " bytes are too few for a llama2.c checkpoint's 28-byte header)" +
                                                 (looks_like_text(size) ? "; it is a short text file" : ""));
            throw format_error(path_, size, "file truncated: a llama2.c checkpoint starts with a 28-byte header, the file has " +
                                                std::to_string(size) + " bytes");
        }
        std::int32_t h[7];
        std::memcpy(h, base, sizeof h);
        if (std::memcmp(base, "ak42", 4) == 0)
            throw format_error(path_, 0, "this is a llama2.c export v1/v2 file (magic 'ak42'); only the legacy run.c format "
                                         "(export version 0) is supported");
        if (std::memcmp(base, "GGUF", 4) == 0)
            throw format_error(path_, 0, "this is a GGUF file, not a llama2.c checkpoint (open it with gguf_file)");
        config.shared_classifier = h[5] > 0;
        if (h[5] < 0 && h[5] != INT32_MIN) h[5] = -h[5];
        for (int i = 0; i < 7; ++i)
            if (h[i] <= 0 || h[i] > plausible[i])
                throw format_error(path_, static_cast<std::uint64_t>(4 * i),
                                   "not a GGUF or llama2.c file (no GGUF magic, and as a llama2.c header its " + std::string(field[i]) +
                                       " is " + std::to_string(h[i]) + ", must be in [1, " + std::to_string(plausible[i]) + "])" +
                                       (looks_like_text(k_llama2c_header_bytes) ? "; it starts like a text file" : ""));
        config.dim = h[0];
        config.hidden_dim = h[1];
        config.n_layers = h[2];
        config.n_heads = h[3];
        config.n_kv_heads = h[4];
        config.vocab_size = h[5];
        config.seq_len = h[6];
        const auto& c = config;
        if (c.dim % c.n_heads != 0)
            throw format_error(path_, 12, "llama2.c header: dim " + std::to_string(c.dim) + " is not divisible by n_heads " + std::to_string(c.n_heads));
        if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
            throw format_error(path_, 16, "llama2.c header: n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " +
                                              std::to_string(c.n_kv_heads));
        if (c.head_size() % 2 != 0)
            throw format_error(path_, 12, "llama2.c header: head size " + std::to_string(c.head_size()) + " is odd; RoPE needs pairs");

        std::uint64_t expected = 0;
        try {
            expected = expected_size(c);
        } catch (const error& e) {
            throw format_error(path_, 0, std::string("llama2.c header gives an impossible size: ") + e.what());
        }
        if (expected != size) {
            std::string why = "expected " + std::to_string(expected) + " bytes for this llama2.c header (" + summary() + "), the file has " +
                              std::to_string(size);
            llama2c_config other = c;
            other.shared_classifier = !c.shared_classifier;
            if (expected_size(other) == size)
                why += "; that is the size with a" + std::string(c.shared_classifier ? "n unshared" : " shared") +
                       " classifier, so the sign of vocab_size looks wrong";
            else if (size < expected)
                why += " (truncated)";
            else
                why += " (trailing data: not a run.c checkpoint, or the header is corrupt)";
            throw format_error(path_, std::min(size, expected), why);
        }

        std::uint64_t pos = k_llama2c_header_bytes;
        for (const auto& p : layout(c)) {
            if (*p.name) {
                const std::int64_t slice = (p.rows == 0 ? 1 : p.rows) * p.cols;
                const int n_slices = p.per_layer ? c.n_layers : 1;
                for (int l = 0; l < n_slices; ++l) {
                    const std::string name = p.per_layer ? "blk." + std::to_string(l) + "." + p.name + ".weight" : std::string(p.name);
                    const std::byte* data = base + pos + 4 * static_cast<std::uint64_t>(slice) * static_cast<std::uint64_t>(l);
                    tensor t = p.rows == 0 ? tensor::view(dtype::f32, {p.cols}, data, keep_alive_)
                                           : tensor::view(dtype::f32, {p.rows, p.cols}, data, keep_alive_);
                    names_.push_back(name);
                    tensors_.emplace(name, std::move(t));
                }
            }
            pos += 4 * p.n_floats;
        }
    }

    std::shared_ptr<const void> keep_alive_;
    std::string path_;
    std::vector<std::string> names_;
    std::map<std::string, tensor, std::less<>> tensors_;
};

}  // namespace minigpt::io

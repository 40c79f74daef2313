// Quantising a GGUF model file as llama-quantize does: `minigpt quantize IN OUT TYPE`.
//
// The per-tensor type choices follow llama.cpp's src/llama-quant.cpp for dense (non-MoE)
// models: which tensors may be quantised at all (2-D and larger `*weight` tensors other than
// norms and position embeddings), the "mixture" rules of each file type (Q4_K_M gives attn_v and
// ffn_down of the layers use_more_bits() picks Q6_K, Q3_K_M gives the first attn_v Q5_K, ...),
// output.weight (and token_embd.weight when the model ties them) at Q6_K, or Q8_0 when its rows
// are not whole super-blocks, and the fallbacks for rows that are not a multiple of a type's block
// (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0, IQ4_XS -> IQ4_NL, else F16).
// Tensors are visited and written in llama.cpp's order (non-layer tensors by name, then layer by
// layer by name), so the mixture counters see the layers in the same order, and the output keeps
// every key of the input plus general.quantization_version = 2 and general.file_type (the
// llama_ftype number), with the input's alignment. The quantisers are the llama-quantize ones of
// quant/quant.hpp (no importance matrix). Types minigpt cannot produce (IQ2/IQ3/IQ1, TQ) are not
// offered.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/dtype.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/core/threads.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt::io {

// llama.cpp's llama_ftype numbers (general.file_type) for the file types minigpt writes.
enum class llama_ftype : std::uint32_t {
    all_f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 7, q5_0 = 8, q5_1 = 9, q2_k = 10, q3_k_s = 11, q3_k_m = 12,
    q3_k_l = 13, q4_k_s = 14, q4_k_m = 15, q5_k_s = 16, q5_k_m = 17, q6_k = 18, iq4_nl = 25, iq4_xs = 30, bf16 = 32,
};

struct ftype_info {
    std::string_view name;  // llama-quantize's spelling
    llama_ftype ftype;
    dtype default_type;     // llama_ftype_get_default_type
};

inline constexpr ftype_info k_ftypes[] = {
    {"F32", llama_ftype::all_f32, dtype::f32},   {"F16", llama_ftype::f16, dtype::f16},       {"BF16", llama_ftype::bf16, dtype::bf16},
    {"Q4_0", llama_ftype::q4_0, dtype::q4_0},    {"Q4_1", llama_ftype::q4_1, dtype::q4_1},    {"Q5_0", llama_ftype::q5_0, dtype::q5_0},
    {"Q5_1", llama_ftype::q5_1, dtype::q5_1},    {"Q8_0", llama_ftype::q8_0, dtype::q8_0},    {"Q2_K", llama_ftype::q2_k, dtype::q2_k},
    {"Q3_K_S", llama_ftype::q3_k_s, dtype::q3_k}, {"Q3_K_M", llama_ftype::q3_k_m, dtype::q3_k}, {"Q3_K_L", llama_ftype::q3_k_l, dtype::q3_k},
    {"Q4_K_S", llama_ftype::q4_k_s, dtype::q4_k}, {"Q4_K_M", llama_ftype::q4_k_m, dtype::q4_k}, {"Q5_K_S", llama_ftype::q5_k_s, dtype::q5_k},
    {"Q5_K_M", llama_ftype::q5_k_m, dtype::q5_k}, {"Q6_K", llama_ftype::q6_k, dtype::q6_k},   {"IQ4_NL", llama_ftype::iq4_nl, dtype::iq4_nl},
    {"IQ4_XS", llama_ftype::iq4_xs, dtype::iq4_xs},
};

// "Q4_K_M", "q4_k_m", "Q3_K" (= Q3_K_M, as llama-quantize), "Q4_K" (= Q4_K_M), "Q5_K" (= Q5_K_M).
inline const ftype_info& parse_ftype(std::string_view s) {
    std::string up(s);
    for (auto& c : up) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    if (up == "Q3_K" || up == "Q4_K" || up == "Q5_K") up += "_M";
    for (const auto& f : k_ftypes)
        if (f.name == up) return f;
    std::string names;
    for (const auto& f : k_ftypes) {
        if (!names.empty()) names += ' ';
        names += f.name;
    }
    throw error("unknown quantisation type '" + std::string(s) + "' (expected one of: " + names + ")");
}

// The shape facts llama-quant.cpp's choices depend on.
struct quantize_model_facts {
    std::int64_t n_layer = 0;
    std::int64_t n_gqa = 1;      // n_head / n_head_kv
    bool is_70b = false;         // llama.cpp's LLM_TYPE_70B: llama, 80 layers, GQA
    bool tied_embeddings = true; // no output.weight: token_embd doubles as the output matrix
};

// One tensor of the output, in writing order.
struct tensor_plan {
    const gguf_tensor_info* info;
    dtype type;          // the type written
    bool fallback;       // the mixture's type did not fit the rows
};

namespace detail {

inline bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// tensor_allows_quantization of llama-quant.cpp for the tensors a dense model has.
inline bool allows_quantization(const gguf_tensor_info& t) {
    const std::string_view n = t.name;
    if (t.shape.size() < 2) return false;
    if (n.size() < 6 || n.substr(n.size() - 6) != "weight") return false;
    return !contains(n, "_norm.weight") && !contains(n, "ffn_gate_inp.weight") && n != "position_embd.weight" &&
           n != "token_types.weight" && !contains(n, "ssm_conv1d") && !contains(n, "attn_rel_b.weight");
}

inline bool use_more_bits(std::int64_t i_layer, std::int64_t n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// tensor_type_fallback: the type for rows of n_cols elements when `t` does not divide them.
inline dtype fallback_type(dtype t, std::int64_t n_cols, bool& fell_back) {
    if (n_cols % block_size(t) == 0) return t;
    fell_back = true;
    dtype r;
    switch (t) {
        case dtype::iq4_xs: r = dtype::iq4_nl; break;
        case dtype::q2_k:
        case dtype::q3_k: r = dtype::q4_0; break;
        case dtype::q4_k: r = dtype::q5_0; break;
        case dtype::q5_k: r = dtype::q5_1; break;
        case dtype::q6_k: r = dtype::q8_0; break;
        default: throw error("no tensor type fallback is defined for type " + std::string(dtype_name(t)));
    }
    return n_cols % block_size(r) == 0 ? r : dtype::f16;
}

// llama.cpp's order of model tensors: those outside layers by name, then layer by layer by name.
inline bool weight_order(const gguf_tensor_info* a, const gguf_tensor_info* b) {
    auto layer = [](const std::string& n) -> long {
        if (n.rfind("blk.", 0) != 0) return -1;
        char* end = nullptr;
        const long l = std::strtol(n.c_str() + 4, &end, 10);
        return end && *end == '.' ? l : -1;
    };
    const long la = layer(a->name), lb = layer(b->name);
    if (la != lb) return la < lb;
    return a->name < b->name;
}

}  // namespace detail

// The facts read from the file's metadata ({arch}.block_count, head counts) and tensor names.
inline quantize_model_facts model_facts(const gguf_file& f) {
    quantize_model_facts m;
    const std::string arch = f.get_or<std::string>("general.architecture", "");
    m.n_layer = static_cast<std::int64_t>(f.get_or<std::uint64_t>(arch + ".block_count", 0));
    // Head counts may be per-layer arrays in some models; a scalar is what the mixtures look at.
    if (f.has(arch + ".attention.head_count") && f.type_of(arch + ".attention.head_count") != gguf_type::array) {
        const auto n_head = f.get<std::uint64_t>(arch + ".attention.head_count");
        std::uint64_t n_kv = n_head;
        if (f.has(arch + ".attention.head_count_kv") && f.type_of(arch + ".attention.head_count_kv") != gguf_type::array)
            n_kv = f.get<std::uint64_t>(arch + ".attention.head_count_kv");
        if (n_kv > 0) m.n_gqa = static_cast<std::int64_t>(n_head / n_kv);
        m.is_70b = arch == "llama" && m.n_layer == 80 && n_head != n_kv;
    }
    m.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    return m;
}

// The type of every tensor of `f` quantised as `ftype`, in writing order (llama_tensor_get_type).
inline std::vector<tensor_plan> plan_quantization(const gguf_file& f, const ftype_info& ftype) {
    using detail::contains;
    const quantize_model_facts m = model_facts(f);
    const llama_ftype ft = ftype.ftype;
    std::vector<const gguf_tensor_info*> order;
    for (const auto& t : f.tensors()) order.push_back(&t);
    std::stable_sort(order.begin(), order.end(), detail::weight_order);
    std::int64_t n_attn_v = 0;
    for (const auto* t : order) n_attn_v += contains(t->name, "attn_v.weight") || contains(t->name, "attn_qkv.weight");
    std::int64_t i_attn_v = 0, i_ffn_down = 0;
    const std::int64_t n_ffn_down = m.n_layer;

    std::vector<tensor_plan> plan;
    for (const auto* t : order) {
        tensor_plan p{t, t->type, false};
        plan.push_back(p);
        if (!detail::allows_quantization(*t)) continue;
        const std::string& name = t->name;
        const std::int64_t n_cols = t->shape.back();
        dtype type = ftype.default_type;
        if (is_quantized(type)) {
            const bool output = name == "output.weight", embd = name == "token_embd.weight";
            if (output || (m.tied_embeddings && embd)) {
                if (n_cols % block_size(type) != 0) type = dtype::q8_0;
                else if (type != dtype::q8_0) type = dtype::q6_k;
            } else if (embd) {
                // the file type's default
            } else if (contains(name, "attn_v.weight") || contains(name, "attn_qkv.weight")) {
                // Fused QKV matrices count as attn_v (llama.cpp's category_is_attn_v).
                if (ft == llama_ftype::q2_k) type = m.n_gqa >= 4 ? dtype::q4_k : dtype::q3_k;
                else if (ft == llama_ftype::q3_k_m) type = i_attn_v < 2 ? dtype::q5_k : dtype::q4_k;
                else if (ft == llama_ftype::q3_k_l) type = dtype::q5_k;
                else if ((ft == llama_ftype::iq4_nl || ft == llama_ftype::iq4_xs) && m.n_gqa >= 4) type = dtype::q5_k;
                else if ((ft == llama_ftype::q4_k_m || ft == llama_ftype::q5_k_m) && detail::use_more_bits(i_attn_v, n_attn_v)) type = dtype::q6_k;
                else if (ft == llama_ftype::q4_k_s && i_attn_v < 4) type = dtype::q5_k;
                if (m.is_70b && (type == dtype::q3_k || type == dtype::q4_k)) type = dtype::q5_k;
                ++i_attn_v;
            } else if (contains(name, "ffn_down")) {
                const std::int64_t i = i_ffn_down, n = n_ffn_down;
                if (ft == llama_ftype::q2_k) type = dtype::q3_k;
                else if (ft == llama_ftype::q3_k_m) type = i < n / 16 ? dtype::q5_k : dtype::q4_k;
                else if (ft == llama_ftype::q3_k_l) type = dtype::q5_k;
                else if (ft == llama_ftype::q4_k_m) { if (detail::use_more_bits(i, n)) type = dtype::q6_k; }
                else if (i < n / 8 && (ft == llama_ftype::iq4_nl || ft == llama_ftype::iq4_xs)) type = dtype::q5_k;
                else if (ft == llama_ftype::q5_k_m && detail::use_more_bits(i, n)) type = dtype::q6_k;
                else if (ft == llama_ftype::q4_k_s && i < n / 8) type = dtype::q5_k;
                ++i_ffn_down;
            } else if (contains(name, "attn_output.weight")) {
                if (ft == llama_ftype::q2_k) type = dtype::q3_k;
                else if (ft == llama_ftype::q3_k_m) type = dtype::q4_k;
                else if (ft == llama_ftype::q3_k_l) type = dtype::q5_k;
            }
            type = detail::fallback_type(type, n_cols, plan.back().fallback);
        }
        plan.back().type = type;
    }
    return plan;
}

struct quantize_options {
    int n_threads = 0;               // 0: one per physical core
    bool allow_requantize = false;   // llama-quantize's --allow-requantize
    bool verbose = true;             // llama-quantize's per-tensor lines on stderr
};

// Writes `out`: `in` with its tensors converted as plan_quantization says. Throws minigpt::error on
// a tensor already quantised to another type (unless allow_requantize) or an unknown type.
inline void quantize_gguf(const std::string& in_path, const std::string& out_path, const ftype_info& ftype, const quantize_options& opt = {}) {
    const auto in = gguf_file::open(in_path);
    const auto plan = plan_quantization(in, ftype);
    for (const auto& p : plan)
        if (p.type != p.info->type && is_quantized(p.info->type) && !opt.allow_requantize)
            throw error(in_path + ": tensor '" + p.info->name + "' is already " + std::string(dtype_name(p.info->type)) +
                        "; requantizing to " + std::string(dtype_name(p.type)) + " is disabled (use --allow-requantize)");
    gguf_writer w(out_path);
    w.copy_metadata_from(in);
    w.set("general.quantization_version", std::uint32_t{2});
    w.set("general.file_type", static_cast<std::uint32_t>(ftype.ftype));
    for (const char* k : {"split.no", "split.count", "split.tensors.count"}) w.remove(k);

    std::uint64_t bytes_in = 0, bytes_out = 0, n_done = 0, n_fallback = 0;
    std::uint64_t total_elements = 0;
    for (const auto& p : plan) total_elements += static_cast<std::uint64_t>(p.info->n_elements());
    progress bar("quantizing " + out_path, static_cast<std::int64_t>(total_elements), !opt.verbose && ::isatty(2) != 0);
    std::size_t index = 0;
    for (const auto& p : plan) {
        const gguf_tensor_info& t = *p.info;
        const tensor src = in.get_tensor(t.name);
        const std::int64_t n_cols = t.shape.back(), n_rows = t.n_elements() / n_cols;
        const std::uint64_t out_row = row_bytes(p.type, static_cast<std::uint64_t>(n_cols));
        if (opt.verbose)
            std::fprintf(stderr, "[%4zu/%4zu] %-36s - [%s], type = %6s, ", ++index, plan.size(), t.name.c_str(), src.shape_string().c_str(),
                         std::string(dtype_name(t.type)).c_str());
        if (p.type == t.type) {
            w.add_tensor(t.name, src);
        } else {
            // (n_rows, out_row) converted rows; every row is converted through f32.
            auto buf = heap_buffer(static_cast<std::size_t>(checked_mul(static_cast<std::uint64_t>(n_rows), out_row, "quantized tensor bytes")), fill::none);
            std::byte* dst = buf.get();
            const dtype from = t.type, to = p.type;
            const std::uint64_t in_row = row_bytes(from, static_cast<std::uint64_t>(n_cols));
            const std::byte* base = src.raw();
            parallel_for(n_rows, opt.n_threads, [&](std::int64_t r0, std::int64_t r1) {
                std::vector<float> row(static_cast<std::size_t>(n_cols));  // (n_cols) one source row as f32
                for (std::int64_t r = r0; r < r1; ++r) {
                    quant::dequantize_row_unchecked(from, base + static_cast<std::uint64_t>(r) * in_row, row.data(), n_cols);
                    quant::quantize_row_unchecked(to, row.data(), dst + static_cast<std::uint64_t>(r) * out_row, n_cols);
                }
            }, 16);
            w.add_tensor(t.name, to, t.shape, [&](std::int64_t r, std::byte* row_out) {
                std::memcpy(row_out, dst + static_cast<std::uint64_t>(r) * out_row, static_cast<std::size_t>(out_row));
            });
            if (opt.verbose) std::fprintf(stderr, "converting to %s%s .. ", std::string(dtype_name(to)).c_str(), p.fallback ? " (fallback)" : "");
        }
        n_fallback += p.fallback;
        bytes_in += t.n_bytes;
        bytes_out += out_row * static_cast<std::uint64_t>(n_rows);
        n_done += static_cast<std::uint64_t>(t.n_elements());
        if (opt.verbose)
            std::fprintf(stderr, "size = %8.3f MiB -> %8.3f MiB\n", static_cast<double>(t.n_bytes) / 1048576.0,
                         static_cast<double>(out_row * static_cast<std::uint64_t>(n_rows)) / 1048576.0);
        bar.update(static_cast<std::int64_t>(n_done));
    }
    w.finish();
    bar.done();
    if (opt.verbose) {
        std::fprintf(stderr, "model size  = %8.2f MiB\nquant size  = %8.2f MiB\n", static_cast<double>(bytes_in) / 1048576.0,
                     static_cast<double>(bytes_out) / 1048576.0);
        if (n_fallback) std::fprintf(stderr, "%llu of %zu tensor(s) required fallback quantization\n", static_cast<unsigned long long>(n_fallback), plan.size());
    }
}

}  // namespace minigpt::io

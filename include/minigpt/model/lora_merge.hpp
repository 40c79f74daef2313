// Merging LoRA adapters into a base model's GGUF (llama.cpp's export-lora).
//
// Every adapted matrix becomes W' = W + Σ scale · B A, computed row by row in float from the
// dequantised base row, then stored in the base tensor's type (or `out_type` when given); every other
// tensor and every metadata key is copied as it is. With out_type set, the other matrices are
// converted to it too, as a requantising export would, and general.file_type says so.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/model/lora.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/quant/quant.hpp"

namespace minigpt {

struct lora_merge_options {
    std::optional<dtype> out_type;  // absent: each tensor keeps its type
};

// Writes `out_path`: the base model `m` (a GGUF model) with `bindings` merged into its weights.
inline void merge_lora(const model& m, const std::vector<lora_binding>& bindings, const std::string& out_path,
                       const lora_merge_options& options = {}) {
    const io::gguf_file* f = m.gguf();
    if (!f) throw error(m.path() + ": lora-merge needs a GGUF base model");
    struct term {
        std::vector<float> a;  // (r, n_in)
        std::vector<float> b;  // (n_out, r)
        std::int64_t r;
        float scale;
    };
    std::map<std::string, std::vector<term>> terms;
    for (const auto& bd : bindings) {
        if (!bd.adapter) throw error("lora-merge: null adapter");
        bd.adapter->check_compatible(m);
        for (const auto& p : bd.adapter->pairs()) {
            term t;
            t.r = p.rank();
            t.scale = bd.adapter->scale_of(p, bd.scale);
            auto dequant = [](const tensor& src, std::vector<float>& dst) {
                dst.resize(static_cast<std::size_t>(src.dim(0) * src.dim(1)));
                for (std::int64_t i = 0; i < src.dim(0); ++i)
                    quant::dequantize_row(src.type(), src.row_ptr(i), dst.data() + i * src.dim(1), src.dim(1));
            };
            dequant(p.a.source(), t.a);
            dequant(p.b.source(), t.b);
            terms[p.base_name].push_back(std::move(t));
        }
    }

    io::gguf_writer w(out_path);
    w.copy_metadata_from(*f);
    if (options.out_type) w.set("general.file_type", llama_file_type(*options.out_type));
    progress bar("merging adapters (tensors)", static_cast<std::int64_t>(f->tensors().size()));
    std::int64_t done = 0;
    for (const auto& info : f->tensors()) {
        const tensor src = f->get_tensor(info.name);
        const auto it = terms.find(info.name);
        const bool matrix = src.rank() == 2 && info.name != "token_embd.weight" && info.name != "position_embd.weight";
        const dtype type = options.out_type && (matrix || it != terms.end()) ? *options.out_type : src.type();
        if (it == terms.end() && type == src.type()) {
            w.add_tensor(info.name, src);
        } else {
            const std::int64_t n_in = src.dim(src.rank() - 1);
            if (n_in % block_size(type) != 0)
                throw error(out_path + ": tensor '" + info.name + "' has rows of " + std::to_string(n_in) +
                            " values, not a multiple of " + std::string(dtype_name(type)) + "'s block of " + std::to_string(block_size(type)));
            std::vector<float> row(static_cast<std::size_t>(n_in));  // (n_in)
            w.add_tensor(info.name, type, src.shape(), [&](std::int64_t r, std::byte* dst) {
                quant::dequantize_row(src.type(), src.row_ptr(r), row.data(), n_in);
                if (it != terms.end())
                    for (const auto& t : it->second)
                        for (std::int64_t k = 0; k < t.r; ++k) {
                            const float c = t.scale * t.b[static_cast<std::size_t>(r * t.r + k)];
                            const float* a = t.a.data() + k * n_in;
                            for (std::int64_t j = 0; j < n_in; ++j) row[static_cast<std::size_t>(j)] += c * a[j];
                        }
                quant::quantize_row(type, row.data(), dst, n_in);
            });
        }
        bar.update(++done);
    }
    w.finish();
}

}  // namespace minigpt

// LoRA adapters in llama.cpp's adapter GGUF format, applied at run time on a shared base model.
//
// An adapter file carries general.type = "adapter", adapter.type = "lora", adapter.lora.alpha and,
// for each adapted matrix W (ggml ne = [in, out]; here shape (out, in)), the pair W.lora_a with
// ne = [in, r] (shape (r, in)) and W.lora_b with ne = [r, out] (shape (out, r)). The adapted
// product is W x + scale · B (A x), scale = user_scale · alpha / r (user_scale when alpha is 0),
// as llama.cpp's llama_adapter_lora_weight::get_scale. The base is never copied or modified:
// a context binds adapters (context::set_adapters) and project() (forward_state.hpp) adds the
// low-rank terms, so contexts on one loaded model can run different adapters at once.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/kernels/matmul.hpp"
#include "minigpt/model/forward_state.hpp"
#include "minigpt/model/model.hpp"
#include "minigpt/model/weights.hpp"

namespace minigpt {

// One adapted matrix: A (r, in) and B (out, r) as matmul reads them.
struct lora_pair {
    std::string base_name;   // the base tensor, e.g. "blk.3.attn_q.weight"
    std::int64_t layer = -1; // -1 for the output matrix
    matrix_role role = matrix_role::output;
    kernels::packed_matrix a, b;
    std::int64_t rank() const { return a.n_out(); }
};

class lora_adapter {
public:
    // Reads an adapter file; every tensor must be half of a lora_a / lora_b pair of a matrix role.
    static std::shared_ptr<const lora_adapter> load(const std::string& path) {
        auto f = std::make_shared<const io::gguf_file>(io::gguf_file::open(path));
        auto ad = std::shared_ptr<lora_adapter>(new lora_adapter());
        ad->path_ = path;
        const std::string type = f->get_or<std::string>("general.type", "");
        if (type != "adapter") throw error(path + ": general.type is '" + type + "', expected 'adapter' (not a LoRA adapter file)");
        const std::string atype = f->get_or<std::string>("adapter.type", "");
        if (atype != "lora") throw error(path + ": adapter.type is '" + atype + "', only 'lora' is supported");
        ad->arch_name_ = f->get<std::string>("general.architecture");
        ad->alpha_ = f->get_or<float>("adapter.lora.alpha", 0.0f);
        if (!(ad->alpha_ >= 0.0f) || !std::isfinite(ad->alpha_))
            throw error(path + ": adapter.lora.alpha must be a finite non-negative number");

        std::map<std::string, std::pair<std::optional<tensor>, std::optional<tensor>>> halves;  // base name -> (a, b)
        for (const auto& t : f->tensors()) {
            const auto ends = [&](const char* s) { const std::string x(s); return t.name.size() > x.size() && t.name.compare(t.name.size() - x.size(), x.size(), x) == 0; };
            if (ends(".lora_a")) halves[t.name.substr(0, t.name.size() - 7)].first = f->get_tensor(t.name);
            else if (ends(".lora_b")) halves[t.name.substr(0, t.name.size() - 7)].second = f->get_tensor(t.name);
            else throw error(path + ": tensor '" + t.name + "' is neither a .lora_a nor a .lora_b tensor");
        }
        if (halves.empty()) throw error(path + ": the adapter has no lora_a / lora_b tensors");
        for (auto& [name, ab] : halves) {
            if (!ab.first) throw error(path + ": '" + name + ".lora_b' has no matching '" + name + ".lora_a'");
            if (!ab.second) throw error(path + ": '" + name + ".lora_a' has no matching '" + name + ".lora_b'");
            const tensor& a = *ab.first;
            const tensor& b = *ab.second;
            if (a.rank() != 2 || b.rank() != 2) throw shape_error(path + ": '" + name + "' lora tensors must be 2-D");
            if (b.dim(1) != a.dim(0))
                throw shape_error(path + ": '" + name + "' rank mismatch: lora_a has rank " + std::to_string(a.dim(0)) +
                                  ", lora_b " + std::to_string(b.dim(1)));
            lora_pair p;
            p.base_name = name;
            parse_target(name, path, p.layer, p.role);
            p.a = kernels::packed_matrix(a, kernels::pack_policy::never);
            p.b = kernels::packed_matrix(b, kernels::pack_policy::never);
            ad->pairs_.push_back(std::move(p));
        }
        ad->file_ = std::move(f);
        return ad;
    }

    const std::string& path() const noexcept { return path_; }
    const std::string& arch_name() const noexcept { return arch_name_; }
    float alpha() const noexcept { return alpha_; }
    const std::vector<lora_pair>& pairs() const noexcept { return pairs_; }

    // llama.cpp's get_scale: the rank is lora_b's inner dimension.
    float scale_of(const lora_pair& p, float user_scale) const {
        return alpha_ != 0.0f ? user_scale * alpha_ / static_cast<float>(p.rank()) : user_scale;
    }

    // Throws unless every pair adapts a matrix of `m` with matching shapes.
    void check_compatible(const model& m) const {
        const auto& c = m.config();
        if (arch_name_ != c.arch_name)
            throw error(path_ + ": adapter is for architecture '" + arch_name_ + "', the model is '" + c.arch_name + "'");
        for (const auto& p : pairs_) {
            const tensor& w = base_tensor(m, p);
            if (w.empty()) throw error(path_ + ": adapts '" + p.base_name + "', which the base model does not have");
            if (p.a.n_in() != w.dim(1) || p.b.n_out() != w.dim(0))
                throw shape_error(path_ + ": '" + p.base_name + "' is (" + std::to_string(w.dim(0)) + ", " + std::to_string(w.dim(1)) +
                                  ") in the base, but its adapter gives (" + std::to_string(p.b.n_out()) + ", " +
                                  std::to_string(p.a.n_in()) + ")");
        }
    }

    static const tensor& base_tensor(const model& m, const lora_pair& p) {
        const auto& w = m.weights();
        if (p.role == matrix_role::output) return w.output;  // a tied output has no output.weight to adapt
        if (p.layer >= static_cast<std::int64_t>(w.layers.size())) {
            static const tensor none;
            return none;
        }
        return w.layers[static_cast<std::size_t>(p.layer)].matrix(p.role);
    }

private:
    lora_adapter() = default;

    // "blk.N.<role>.weight" or "output.weight".
    static void parse_target(const std::string& name, const std::string& path, std::int64_t& layer, matrix_role& role) {
        if (name == "output.weight") { layer = -1; role = matrix_role::output; return; }
        if (name.rfind("blk.", 0) == 0) {
            const auto dot = name.find('.', 4);
            if (dot != std::string::npos && dot > 4 && dot - 4 <= 6) {
                std::int64_t n = 0;
                bool digits = true;
                for (std::size_t i = 4; i < dot; ++i) {
                    if (name[i] < '0' || name[i] > '9') { digits = false; break; }
                    n = n * 10 + (name[i] - '0');
                }
                const std::string rest = name.substr(dot + 1);
                for (std::size_t r = 0; digits && r < n_layer_roles; ++r) {
                    if (rest == std::string(role_name(static_cast<matrix_role>(r))) + ".weight") {
                        layer = n;
                        role = static_cast<matrix_role>(r);
                        return;
                    }
                }
            }
        }
        throw error(path + ": cannot adapt '" + name + "': only the attention, feed-forward and output matrices take LoRA adapters");
    }

    std::string path_, arch_name_;
    float alpha_ = 0.0f;
    std::vector<lora_pair> pairs_;
    std::shared_ptr<const io::gguf_file> file_;  // keeps the tensors' memory mapped
};

// An adapter with the user's scale (llama.cpp's --lora FILE is scale 1, --lora-scaled FILE S).
struct lora_binding {
    std::shared_ptr<const lora_adapter> adapter;
    float scale = 1.0f;
};

// The low-rank terms of a set of bindings, by (layer, role), as project() applies them.
inline projection_deltas make_projection_deltas(const model& m, const std::vector<lora_binding>& bindings) {
    projection_deltas d(m.config().n_layer);
    for (const auto& b : bindings) {
        if (!b.adapter) throw error("lora: null adapter");
        if (!std::isfinite(b.scale)) throw error(b.adapter->path() + ": the adapter scale must be finite");
        b.adapter->check_compatible(m);
        for (const auto& p : b.adapter->pairs())
            d.add(p.layer, p.role, low_rank_delta{&p.a, &p.b, b.adapter->scale_of(p, b.scale)});
    }
    return d;
}

// The adapters a context runs with and their low-rank terms, as context and batch_context hold
// them. set() validates every binding and builds the new terms (with scratch for n_batch tokens)
// before replacing anything, so a bad adapter leaves the previous set in place.
class adapter_set {
public:
    void set(const model& m, std::vector<lora_binding> bindings, std::int64_t n_batch) {
        projection_deltas d = make_projection_deltas(m, bindings);
        d.reserve(n_batch);
        deltas_ = std::move(d);
        bindings_ = std::move(bindings);
    }
    const std::vector<lora_binding>& bindings() const noexcept { return bindings_; }
    bool empty() const noexcept { return bindings_.empty(); }
    // What project() takes: null when no adapter adds a term.
    const projection_deltas* deltas() const noexcept { return deltas_.empty() ? nullptr : &deltas_; }

private:
    std::vector<lora_binding> bindings_;  // with their scales (empty: the base alone)
    projection_deltas deltas_;            // bindings_ by (layer, role), with their scratch
};

}  // namespace minigpt

// kNN-LM flags of `minigpt generate`: --knn STORE mixes a datastore into every sampling step
// (knn/sampler_stage.hpp), optionally only where the model's entropy is above --knn-entropy.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "command.hpp"
#include "minigpt/knn.hpp"
#include "minigpt/knn/pca.hpp"
#include "minigpt/knn/sampler_stage.hpp"

namespace minigpt::tool {

inline void declare_knn_flags(flags& f) {
    f.value({"--knn"}, "kNN-LM datastore (from knn-build) mixed into sampling")
        .value({"--lambda"}, "weight of the kNN distribution", "0.25")
        .value({"--k"}, "neighbours per step", "32")
        .value({"--knn-temp"}, "temperature T of exp(-distance / T)", "1")
        .value({"--knn-tap"}, "hidden state used as query; must match the store", "ffn_input")
        .value({"--knn-entropy"}, "retrieve only when the model's entropy (nats) exceeds this (-1: always)", "-1")
        .value({"--knn-index"}, "search: auto (exact up to 200k keys, else IVF), exact or ivf", "auto")
        .value({"--knn-nprobe"}, "IVF lists scanned per query", "16");
}

// Opens the store, sets the context's tap and builds the stage; null without --knn.
inline std::unique_ptr<knn::knn_sampler_stage> make_knn_stage(const flags& f, context& ctx, int n_threads) {
    if (!f.has("--knn")) return nullptr;
    const std::string tap_name = f.str("--knn-tap");
    hidden_tap tap;
    if (tap_name == "ffn_input") tap = hidden_tap::ffn_input;
    else if (tap_name == "final_norm") tap = hidden_tap::final_norm;
    else throw usage_error("--knn-tap must be ffn_input or final_norm, not '" + tap_name + "'");
    ctx.set_tap(tap);
    auto store = knn::datastore::open(f.str("--knn"), ctx.get_model().fingerprint() + " tap=" + tap_name);
    if (store->n_keys() == 0) throw error(store->path() + ": the datastore has no keys");
    std::shared_ptr<const knn::knn_index> index;
    const std::string kind = f.str("--knn-index");
    if (kind == "exact" || (kind == "auto" && store->n_keys() <= 200000)) {
        index = std::make_shared<knn::exact_index>(store, n_threads);
    } else if (kind == "ivf" || kind == "auto") {
        knn::ivf_params p;
        p.nprobe = static_cast<std::int32_t>(f.integer("--knn-nprobe"));
        p.n_threads = n_threads;
        index = knn::ivf_index::open_or_build(store, p);
    } else {
        throw usage_error("--knn-index must be auto, exact or ivf");
    }
    knn::knn_stage_params p;
    p.mix.lambda = static_cast<float>(f.real("--lambda"));
    p.mix.k = static_cast<std::int32_t>(f.integer("--k"));
    p.mix.temperature = static_cast<float>(f.real("--knn-temp"));
    p.entropy_threshold = f.real("--knn-entropy");
    return std::make_unique<knn::knn_sampler_stage>(knn::for_states(index, *store), p, ctx);
}

inline void print_knn_stats(const knn::knn_stage_stats& s) {
    std::fprintf(stderr, "kNN-LM: retrieved at %lld of %lld steps (%.1f%%), search %.2f ms\n", static_cast<long long>(s.n_retrieved),
                 static_cast<long long>(s.n_steps), 100.0 * s.fraction_retrieved(), s.search_seconds * 1e3);
}

}  // namespace minigpt::tool

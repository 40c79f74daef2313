// `minigpt knn-build` and `minigpt perplexity`: build a kNN-LM datastore from a text with
// a model's hidden states, and score a text with the model alone or mixed with a store.
//
// Both cut the token stream into the same windows (knn::make_windows), so a store built
// from a text holds exactly one key per scored position of that text. The store records
// the model's fingerprint and the tap; perplexity refuses a store built with another.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.hpp"
#include "lora_flags.hpp"
#include "minigpt/knn.hpp"
#include "minigpt/knn/adaptive.hpp"
#include "minigpt/knn/pca.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/text/tokenizer_loader.hpp"
#include "sampling_flags.hpp"
#include "tool_io.hpp"

namespace minigpt::tool {
namespace {

hidden_tap parse_tap(const std::string& name) {
    if (name == "ffn_input") return hidden_tap::ffn_input;
    if (name == "final_norm") return hidden_tap::final_norm;
    throw usage_error("--tap must be ffn_input or final_norm, not '" + name + "'");
}

// The text's token ids, with BOS when the vocabulary asks for it.
std::vector<std::int32_t> tokenize_file(const model& m, const std::string& path) {
    const auto tok = load_tokenizer(m.path());
    auto ids = tok.encode(read_file(path), tok.add_bos_default());
    if (ids.size() < 2) throw error(path + ": fewer than two tokens, nothing to predict");
    return ids;
}

std::string store_fingerprint(const model& m, const std::string& tap) { return m.fingerprint() + " tap=" + tap; }

// -c (alias --ctx), or when not given, 256 capped at the model's context.
std::int64_t window_ctx(const flags& f, const model& m) {
    std::int64_t ctx = f.integer("--ctx-size");
    if (!f.has("--ctx-size") && m.config().n_ctx_train > 0) ctx = std::min(ctx, m.config().n_ctx_train);
    if (m.config().n_ctx_train > 0 && ctx > m.config().n_ctx_train)
        throw usage_error("-c " + std::to_string(ctx) + " exceeds the model's context of " + std::to_string(m.config().n_ctx_train));
    return ctx;
}

// The flags both commands check before loading anything.
void check_window_flags(const flags& f) {
    f.integer_in("--ctx-size", 1, 1 << 24, "a positive number of tokens");
    f.integer_in("--stride", 0, 1 << 24, "0 for -c (no overlap), or a positive number of tokens up to -c");
}

// "1 h 2.5 min" / "3.2 s" for an ETA.
std::string duration_text(double seconds) {
    char b[64];
    if (seconds >= 3600) std::snprintf(b, sizeof b, "%d h %.1f min", static_cast<int>(seconds / 3600), std::fmod(seconds, 3600) / 60);
    else if (seconds >= 60) std::snprintf(b, sizeof b, "%.1f min", seconds / 60);
    else std::snprintf(b, sizeof b, "%.1f s", seconds);
    return b;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Feeds each window to a fresh context (positions restart at 0) and copies out the tap
// and, when asked, the logits of every position.
struct model_provider {
    std::shared_ptr<const model> m;
    std::unique_ptr<context> ctx;

    model_provider(std::shared_ptr<const model> model_, std::int64_t n_ctx, hidden_tap tap, int n_threads,
                   std::vector<lora_binding> adapters = {}) : m(std::move(model_)) {
        ctx = std::make_unique<context>(m, context_params{.n_ctx = n_ctx, .n_batch = n_ctx, .n_threads = n_threads, .tap = tap});
        if (!adapters.empty()) ctx->set_adapters(std::move(adapters));
    }
    void run(std::span<const std::int32_t> tokens, float* keys_out, float* logits_out) {
        ctx->truncate(0);
        ctx->decode(tokens, logits_out ? logits_for::all : logits_for::none);
        const auto tap = ctx->tap_output();
        std::copy(tap.begin(), tap.end(), keys_out);
        if (logits_out) std::copy(ctx->logits().begin(), ctx->logits().end(), logits_out);
    }
};

int run_knn_build(const std::vector<std::string>& args) {
    flags f("usage: minigpt knn-build -m MODEL -f CORPUS.txt -o STORE [--tap NAME] [--f16] [-c N] [--stride N] [--ivf]");
    f.value({"-m", "--model"}, "model file (GGUF)")
        .value({"-f", "--file"}, "text to take contexts from")
        .value({"-o", "--output"}, "datastore file to write")
        .value({"--tap"}, "hidden state used as key: ffn_input (Khandelwal et al.) or final_norm", "ffn_input")
        .boolean({"--f16"}, "store keys as float16 (half the size)")
        .value({"-c", "--ctx-size", "--ctx"}, "tokens per window (default: 256, at most the model's context)", "256")
        .value({"--stride"}, "tokens between window starts (0: -c, no overlap)", "0")
        .boolean({"--ivf"}, "also train the IVF index (saved as STORE.ivf)")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    check_window_flags(f);
    const int n_threads = read_threads(f);
    const std::string tap_name = f.str("--tap");
    const hidden_tap tap = parse_tap(tap_name);
    const std::string model_path = f.require("--model"), text_path = f.require("--file"), out = f.require("--output");
    auto m = model::load(model_path);
    const auto tokens = tokenize_file(*m, text_path);
    const knn::window_params windows{window_ctx(f, *m), f.integer("--stride")};
    model_provider provider(m, windows.ctx, tap, n_threads);
    knn::datastore_writer writer(out, m->config().n_embd, f.on("--f16") ? dtype::f16 : dtype::f32, store_fingerprint(*m, tap_name),
                                 static_cast<std::int64_t>(tokens.size()) - 1);
    // Progress on stderr: one line per ~10% of the windows (a log-friendly form; a terminal sees the same).
    const auto n_windows = static_cast<std::int64_t>(knn::make_windows(static_cast<std::int64_t>(tokens.size()), windows).size());
    std::fprintf(stderr, "knn-build: %zu tokens in %lld windows of %lld\n", tokens.size(), static_cast<long long>(n_windows),
                 static_cast<long long>(windows.ctx));
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t n_done = 0, next_report = 1;
    const auto n = knn::build_datastore(writer, tokens, windows, [&](std::span<const std::int32_t> t, std::int64_t, float* keys) {
        provider.run(t, keys, nullptr);
        ++n_done;
        if (n_done >= next_report || n_done == n_windows) {
            const double elapsed = seconds_since(t0);
            std::fprintf(stderr, "knn-build: %lld / %lld windows (%.0f%%), %s elapsed, ETA %s\n", static_cast<long long>(n_done),
                         static_cast<long long>(n_windows), 100.0 * static_cast<double>(n_done) / static_cast<double>(n_windows),
                         duration_text(elapsed).c_str(),
                         duration_text(elapsed / static_cast<double>(n_done) * static_cast<double>(n_windows - n_done)).c_str());
            next_report = n_done + std::max<std::int64_t>(1, n_windows / 10);
        }
    });
    writer.finish();
    std::printf("wrote %lld keys of dimension %lld (%s, tap %s) to %s\n", static_cast<long long>(n),
                static_cast<long long>(m->config().n_embd), f.on("--f16") ? "f16" : "f32", tap_name.c_str(), out.c_str());
    if (f.on("--ivf")) {
        knn::ivf_params p;
        p.n_threads = n_threads;
        auto ivf = knn::ivf_index::build(knn::datastore::open(out), p);
        ivf->save(knn::ivf_index::default_path(ivf->store()));
        std::printf("wrote IVF index (%lld lists) to %s\n", static_cast<long long>(ivf->n_lists()),
                    knn::ivf_index::default_path(ivf->store()).c_str());
    }
    return 0;
}

int run_perplexity(const std::vector<std::string>& args) {
    flags f("usage: minigpt perplexity -m MODEL -f TEXT.txt [--knn STORE --lambda 0.25 --k 32 --temp 1] [-c 256]\n"
            "Prints the running perplexity after each window ([n]value, as llama-perplexity) with an ETA, then\n"
            "\"Final estimate: PPL = x +/- e\" (e: standard error from the per-token log-likelihoods).");
    f.value({"-m", "--model"}, "model file (GGUF)")
        .value({"-f", "--file"}, "text to score")
        .value({"-c", "--ctx-size", "--ctx"}, "tokens per window (default: 256, at most the model's context)", "256")
        .value({"--stride"}, "tokens between window starts (0: -c, no overlap)", "0")
        .value({"--knn"}, "datastore to mix in (kNN-LM)")
        .value({"--lambda"}, "weight of the kNN distribution", "0.25")
        .value({"--k"}, "neighbours per position", "32")
        .value({"--temp"}, "temperature T of exp(-distance / T)", "1")
        .value({"--tap"}, "hidden state used as query; must match the store", "ffn_input")
        .value({"--index"}, "search: auto (exact up to 200k keys, else IVF), exact or ivf", "auto")
        .value({"--nprobe"}, "IVF lists scanned per query", "16")
        .value({"--adaptive"}, "comma-separated entropy thresholds (nats): report adaptive retrieval at each (He et al. 2021)")
        .value({"-t", "--threads"}, "threads (0: physical cores)", "0");
    lora_args lora;
    f.parse(lora.take(args));
    if (f.help()) { std::cout << f.usage(); return 0; }
    check_window_flags(f);
    const int n_threads = read_threads(f);
    const std::string tap_name = f.str("--tap");
    const hidden_tap tap = parse_tap(tap_name);
    knn::knn_lm_params params;
    params.lambda = static_cast<float>(f.real_in("--lambda", 0.0, 1.0, "a weight in [0, 1]"));
    params.k = static_cast<std::int32_t>(f.integer_in("--k", 1, 1 << 20, "a positive number of neighbours"));
    params.temperature = static_cast<float>(f.real_in("--temp", 1e-30, 1e30, "positive"));
    params.validate();
    f.integer_in("--nprobe", 1, 1 << 24, "a positive number of lists");
    const std::string model_path = f.require("--model"), text_path = f.require("--file");
    auto m = model::load(model_path);
    const auto tokens = tokenize_file(*m, text_path);
    const knn::window_params windows{window_ctx(f, *m), f.integer("--stride")};
    std::shared_ptr<const knn::knn_index> index;
    if (f.has("--knn")) {
        auto store = knn::datastore::open(f.str("--knn"), store_fingerprint(*m, tap_name));
        if (store->n_keys() == 0) throw error(store->path() + ": the datastore has no keys");
        const std::string kind = f.str("--index");
        if (kind == "exact" || (kind == "auto" && store->n_keys() <= 200000)) {
            index = std::make_shared<knn::exact_index>(store, n_threads);
        } else if (kind == "ivf" || kind == "auto") {
            knn::ivf_params p;
            p.nprobe = static_cast<std::int32_t>(f.integer("--nprobe"));
            p.n_threads = n_threads;
            index = knn::ivf_index::open_or_build(store, p);
        } else {
            throw usage_error("--index must be auto, exact or ivf");
        }
        index = knn::for_states(index, *store);  // a PCA store projects the model's states first
    }
    model_provider provider(m, windows.ctx, tap, n_threads, lora.load());
    if (f.has("--adaptive")) {
        if (!index) throw usage_error("--adaptive needs --knn");
        std::vector<double> thresholds;
        std::stringstream ss(f.str("--adaptive"));
        for (std::string item; std::getline(ss, item, ',');) {
            try {
                thresholds.push_back(std::stod(item));
            } catch (const std::exception&) {
                throw usage_error("--adaptive: '" + item + "' is not a number");
            }
        }
        const auto t0 = std::chrono::steady_clock::now();
        const auto rep = knn::evaluate_perplexity_adaptive(
            tokens, m->config().n_embd, m->config().n_vocab, windows,
            [&](std::span<const std::int32_t> t, std::int64_t, float* keys, float* logits) { provider.run(t, keys, logits); }, *index,
            params, thresholds, n_threads);
        std::printf("tokens scored: %lld (%.1f s)\nperplexity (LM only): %.6f\n", static_cast<long long>(rep.base.n_tokens),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), rep.base.perplexity());
        std::printf("%12s %10s %12s %14s\n", "threshold", "retrieved", "perplexity", "search ms");
        for (const auto& r : rep.by_threshold)
            std::printf("%12.3f %9.1f%% %12.6f %14.2f\n", r.threshold, 100.0 * r.fraction_retrieved(), r.mixed.perplexity(),
                        r.search_seconds * 1e3);
        return 0;
    }
    const auto n_windows = static_cast<std::int64_t>(knn::make_windows(static_cast<std::int64_t>(tokens.size()), windows).size());
    std::fprintf(stderr, "perplexity: calculating perplexity over %lld windows of %lld tokens (%zu tokens)\n",
                 static_cast<long long>(n_windows), static_cast<long long>(windows.ctx), tokens.size());
    const auto t0 = std::chrono::steady_clock::now();
    // As llama-perplexity: the time of the first window and an ETA, then "[n]ppl," after every window.
    const auto r = knn::evaluate_perplexity(
        tokens, m->config().n_embd, m->config().n_vocab, windows,
        [&](std::span<const std::int32_t> t, std::int64_t, float* keys, float* logits) { provider.run(t, keys, logits); },
        index.get(), params, n_threads, [&](std::int64_t n_done, std::int64_t n_all, const knn::perplexity_result& so_far) {
            if (n_done == 1) {
                const double per_window = seconds_since(t0);
                std::fprintf(stderr, "perplexity: %.2f seconds per window - ETA %s\n", per_window,
                             duration_text(per_window * static_cast<double>(n_all - 1)).c_str());
            }
            std::printf("[%lld]%.4f,", static_cast<long long>(n_done), so_far.mixed.perplexity());
            std::fflush(stdout);
        });
    std::printf("\n");
    std::printf("tokens scored: %lld\n", static_cast<long long>(r.base.n_tokens));
    if (index) {
        std::printf("perplexity (LM only): %.6f +/- %.5f\n", r.base.perplexity(), r.base.perplexity_error());
        std::printf("kNN-LM: %lld keys, lambda %.3g, k %d, temperature %.3g\n", static_cast<long long>(index->n_keys()),
                    static_cast<double>(params.lambda), params.k, static_cast<double>(params.temperature));
    }
    std::printf("perplexity: %.6f\n", r.mixed.perplexity());
    std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.mixed.perplexity(), r.mixed.perplexity_error());
    return 0;
}

int run_knn_pca(const std::vector<std::string>& args) {
    flags f("usage: minigpt knn-pca -i STORE -o REDUCED_STORE --dim D [--f16] [--samples N]");
    f.value({"-i", "--input"}, "datastore to reduce (from knn-build)")
        .value({"-o", "--output"}, "reduced datastore to write (records the projection)")
        .value({"--dim"}, "dimensions kept (principal components)")
        .value({"--samples"}, "keys used to estimate the covariance", "100000")
        .boolean({"--f16"}, "store the reduced keys as float16");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    auto store = knn::datastore::open(f.require("--input"));
    const auto fit = knn::fit_pca(*store, f.integer("--dim"), f.integer("--samples"));
    knn::write_projected_store(*store, fit.projection, f.require("--output"), f.on("--f16") ? dtype::f16 : dtype::f32);
    std::printf("wrote %lld keys of dimension %lld (from %lld; %.2f%% of the variance) to %s\n", static_cast<long long>(store->n_keys()),
                static_cast<long long>(fit.projection.out_dim), static_cast<long long>(store->dim()), 100.0 * fit.explained(),
                f.str("--output").c_str());
    return 0;
}

const register_command k_knn_pca("knn-pca", "reduce a kNN-LM datastore's keys by PCA", run_knn_pca);
const register_command k_knn_build("knn-build", "build a kNN-LM datastore from a text", run_knn_build);
const register_command k_perplexity("perplexity", "perplexity of a text, optionally with kNN-LM", run_perplexity);

}  // namespace
}  // namespace minigpt::tool

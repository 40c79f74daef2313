// `minigpt bench`: llama-bench's measurements and table. pp<N> times one batched prefill
// of N random tokens into an empty context; tg<N> times N single-token decodes from an
// empty context (as llama-bench does). Each test runs once to warm up, then -r times;
// tokens/s are reported as mean ± sample standard deviation.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "lora_flags.hpp"
#include "minigpt/core/progress.hpp"
#include "minigpt/model/context.hpp"

namespace minigpt::tool {
namespace {

struct result {
    std::string test;
    std::int64_t n_tokens;
    std::vector<double> ts;  // tokens/s of each repetition
    double mean() const {
        double s = 0;
        for (double v : ts) s += v;
        return ts.empty() ? 0 : s / static_cast<double>(ts.size());
    }
    double stddev() const {
        if (ts.size() < 2) return 0;
        const double m = mean();
        double s = 0;
        for (double v : ts) s += (v - m) * (v - m);
        return std::sqrt(s / static_cast<double>(ts.size() - 1));
    }
};

std::vector<std::int64_t> parse_list(const std::string& s) {
    std::vector<std::int64_t> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        try {
            out.push_back(std::stoll(item));
        } catch (const std::logic_error&) {
            throw usage_error("'" + s + "' is not a comma-separated list of numbers");
        }
    }
    return out;
}

std::string human_size(double bytes) {
    char b[32];
    if (bytes >= 1024.0 * 1024 * 1024) std::snprintf(b, sizeof b, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
    else std::snprintf(b, sizeof b, "%.2f MiB", bytes / (1024.0 * 1024));
    return b;
}

std::string human_params(double n) {
    char b[32];
    if (n >= 1e9) std::snprintf(b, sizeof b, "%.2f B", n / 1e9);
    else std::snprintf(b, sizeof b, "%.2f M", n / 1e6);
    return b;
}

std::string model_label(const model& m) {
    const double n = static_cast<double>(m.n_params());
    char size[16];
    if (n >= 1e9) std::snprintf(size, sizeof size, "%.0fB", n / 1e9);
    else if (n >= 1e6) std::snprintf(size, sizeof size, "%.0fM", n / 1e6);
    else std::snprintf(size, sizeof size, "%.0fK", n / 1e3);
    std::string type(dtype_name(m.main_type()));
    for (auto& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return m.config().arch_name + " " + size + " " + type;
}

int run_bench(const std::vector<std::string>& args) {
    flags f(std::string("usage: minigpt bench -m MODEL [-p 512] [-n 128] [-t 2] [-r 3] [-o md|json]") + lora_usage);
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"-p", "--n-prompt"}, "prompt lengths to test, comma-separated (0: none)", "512")
        .value({"-n", "--n-gen"}, "generation lengths to test, comma-separated (0: none)", "128")
        .value({"-t", "--threads"}, "thread counts, comma-separated", std::to_string(physical_cores()))
        .value({"-r", "--repetitions"}, "repetitions of each test", "5")
        .value({"-b", "--batch-size"}, "prompt tokens per forward chunk", "512")
        .value({"-ctk", "--cache-type-k"}, "KV cache type: f32 or f16", "f32")
        .value({"-nr", "--no-repack"}, "1: use Q4_0/Q8_0 weights in place from the file, not repacked", "0")
        .value({"-o", "--output"}, "output format: md or json", "md");
    lora_args lora;
    f.parse(lora.take(args));
    if (f.help()) { std::cout << f.usage(); return 0; }
    const std::string format = f.str("--output");
    if (format != "md" && format != "json") throw usage_error("-o must be md or json");
    const auto prompts = parse_list(f.str("--n-prompt"));
    const auto gens = parse_list(f.str("--n-gen"));
    const auto threads = parse_list(f.str("--threads"));
    for (auto v : prompts)
        if (v < 0) throw usage_error("-p: prompt lengths must be >= 0");
    for (auto v : gens)
        if (v < 0) throw usage_error("-n: generation lengths must be >= 0");
    for (auto v : threads)
        if (v < 1 || v > 4 * hardware_threads()) throw usage_error("-t: thread counts must be in [1, " + std::to_string(4 * hardware_threads()) + "]");
    f.integer_in("--batch-size", 1, 1 << 24, "a positive number of tokens");
    const auto reps = f.integer("--repetitions");
    if (reps < 1) throw usage_error("-r must be at least 1");

    auto m = model::load(f.require("--model"));
    const auto& c = m->config();
    std::int64_t n_ctx = 16;
    for (auto p : prompts) n_ctx = std::max(n_ctx, p);
    for (auto g : gens) n_ctx = std::max(n_ctx, g + 1);
    if (c.learned_positions && n_ctx > c.n_ctx_train)
        throw usage_error("this " + c.arch_name + " model has " + std::to_string(c.n_ctx_train) + " learned positions; lower -p/-n");
    std::int64_t n_runs = 0;
    for (auto v : prompts) n_runs += v > 0 ? reps + 1 : 0;
    for (auto v : gens) n_runs += v > 0 ? reps + 1 : 0;
    progress bar("benchmarking", n_runs * static_cast<std::int64_t>(threads.size()), ::isatty(2) != 0, 0.0);
    std::int64_t n_done = 0;
    std::mt19937 rng(1234);
    std::uniform_int_distribution<std::int32_t> any_token(0, static_cast<std::int32_t>(c.n_vocab - 1));

    std::vector<std::pair<int, result>> results;
    for (auto nt : threads) {
        context ctx(m, {.n_ctx = n_ctx, .n_batch = f.integer("--batch-size"),
                        .kv_type = parse_dtype(f.str("--cache-type-k")), .n_threads = static_cast<int>(nt),
                        .repack = f.integer("--no-repack") == 0});
        if (!lora.empty()) ctx.set_adapters(lora.load());
        auto time_it = [&](auto&& body) {
            const auto t0 = std::chrono::steady_clock::now();
            body();
            return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        };
        for (auto p : prompts) {
            if (p <= 0) continue;
            std::vector<std::int32_t> tokens(static_cast<std::size_t>(p));
            result r{"pp" + std::to_string(p), p, {}};
            for (std::int64_t rep = -1; rep < reps; ++rep) {  // rep -1: warm-up
                for (auto& t : tokens) t = any_token(rng);
                ctx.truncate(0);
                const double s = time_it([&] { ctx.decode(tokens); });
                if (rep >= 0) r.ts.push_back(static_cast<double>(p) / s);
                bar.update(++n_done);
            }
            results.emplace_back(static_cast<int>(nt), r);
        }
        for (auto g : gens) {
            if (g <= 0) continue;
            result r{"tg" + std::to_string(g), g, {}};
            for (std::int64_t rep = -1; rep < reps; ++rep) {
                ctx.truncate(0);
                const double s = time_it([&] {
                    for (std::int64_t i = 0; i < g; ++i) {
                        const std::int32_t tok = any_token(rng);
                        ctx.decode(std::span(&tok, 1));
                    }
                });
                if (rep >= 0) r.ts.push_back(static_cast<double>(g) / s);
                bar.update(++n_done);
            }
            results.emplace_back(static_cast<int>(nt), r);
        }
    }
    bar.done();

    const std::string label = model_label(*m);
    if (format == "json") {
        auto arr = nlohmann::json::array();
        for (const auto& [nt, r] : results) {
            arr.push_back({{"model_filename", m->path()}, {"model_type", label}, {"model_size", m->n_bytes()},
                           {"model_n_params", m->n_params()}, {"n_threads", nt},
                           {"no_repack", f.integer("--no-repack") != 0}, {"test", r.test},
                           {"n_prompt", r.test.rfind("pp", 0) == 0 ? r.n_tokens : 0},
                           {"n_gen", r.test.rfind("tg", 0) == 0 ? r.n_tokens : 0},
                           {"avg_ts", r.mean()}, {"stddev_ts", r.stddev()}, {"samples_ts", r.ts}});
        }
        std::cout << arr.dump(2) << "\n";
        return 0;
    }
    std::printf("| %-24s | %10s | %10s | %-7s | %7s | %8s | %20s |\n", "model", "size", "params", "backend", "threads", "test", "t/s");
    std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", std::string(24, '-').c_str(), std::string(9, '-').append(":").c_str(),
                std::string(9, '-').append(":").c_str(), std::string(7, '-').c_str(), std::string(6, '-').append(":").c_str(),
                std::string(7, '-').append(":").c_str(), std::string(19, '-').append(":").c_str());
    for (const auto& [nt, r] : results) {
        char ts[64];
        std::snprintf(ts, sizeof ts, "%.2f ± %.2f", r.mean(), r.stddev());
        std::printf("| %-24s | %10s | %10s | %-7s | %7d | %8s | %20s |\n", label.c_str(),
                    human_size(static_cast<double>(m->n_bytes())).c_str(), human_params(static_cast<double>(m->n_params())).c_str(),
                    "CPU", nt, r.test.c_str(), ts);
    }
    return 0;
}

const register_command reg_bench("bench", "llama-bench style speed test: pp (prompt) and tg (generation) tokens/s", run_bench);

}  // namespace
}  // namespace minigpt::tool

// `minigpt batched-bench`: llama-batched-bench's measurement of many sequences decoded together
// (model/batch_context.hpp). For every (PP, TG, B) of -npp x -ntg x -npl: clear the cache, prefill
// B prompts of PP tokens (or one prompt, forked to the B sequences with -pps) in batches of -b
// tokens, then TG steps that each decode one token of every sequence in one batch. The table and
// the --output-format jsonl lines have llama-batched-bench's columns and keys: N_KV is the cache
// positions the test needs (B*(PP+TG), or PP+B*TG with a shared prompt), S_PP counts the prompt
// tokens computed, S_TG all B*TG generated tokens, S is N_KV over the total time.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "minigpt/model/batch_context.hpp"

namespace minigpt::tool {
namespace {

std::vector<std::int64_t> parse_counts(const std::string& flag, const std::string& s) {
    std::vector<std::int64_t> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        std::size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(item, &used);
        } catch (const std::logic_error&) {
            used = 0;
        }
        if (used != item.size() || item.empty() || v < 1 || v > (1 << 20))
            throw usage_error(flag + ": '" + s + "' is not a comma-separated list of positive numbers");
        out.push_back(v);
    }
    if (out.empty()) throw usage_error(flag + ": empty list");
    return out;
}

int run_batched_bench(const std::vector<std::string>& args) {
    flags f("usage: minigpt batched-bench -m MODEL [-c 4096] [-b 2048] [-ub 512] [-npp 128,256,512] [-ntg 128,256] "
            "[-npl 1,2,4,8,16,32] [-pps] [-t N] [--output-format md|jsonl]");
    f.value({"-m", "--model"}, "model file (GGUF or llama2.c .bin)")
        .value({"-c", "--ctx-size"}, "KV cache positions over all sequences (N_KV_MAX)", "4096")
        .value({"-b", "--batch-size"}, "tokens per decode call", "2048")
        .value({"-ub", "--ubatch-size"}, "tokens per forward pass", "512")
        .value({"-npp"}, "prompt lengths, comma-separated", "128,256,512")
        .value({"-ntg"}, "generated tokens per sequence, comma-separated", "128,256")
        .value({"-npl"}, "numbers of parallel sequences, comma-separated", "1,2,4,8,16,32")
        .boolean({"-pps"}, "one prompt shared by all sequences (prefilled once, then forked)")
        .value({"-t", "--threads"}, "threads", std::to_string(physical_cores()))
        .value({"-ctk", "--cache-type-k"}, "KV cache type: f32 or f16 (llama-batched-bench's default)", "f16")
        .value({"--kv-block"}, "positions per KV cache block", "16")
        .value({"--output-format"}, "md (a table) or jsonl (one JSON object per test)", "md");
    f.parse(args);
    if (f.help()) { std::cout << f.usage(); return 0; }
    const std::string format = f.str("--output-format");
    if (format != "md" && format != "jsonl") throw usage_error("--output-format must be md or jsonl");
    const auto n_pp = parse_counts("-npp", f.str("-npp"));
    const auto n_tg = parse_counts("-ntg", f.str("-ntg"));
    const auto n_pl = parse_counts("-npl", f.str("-npl"));
    const auto n_kv_max = f.integer_in("--ctx-size", 16, 1 << 24, "16 to 16777216 positions");
    const auto n_batch = f.integer_in("--batch-size", 1, 1 << 20, "a positive number of tokens");
    const auto n_ubatch = f.integer_in("--ubatch-size", 1, 1 << 16, "1 to 65536 tokens");
    const auto n_threads = static_cast<int>(f.integer_in("--threads", 1, 4 * hardware_threads(), "1 to 4x the hardware threads"));
    const auto block = f.integer_in("--kv-block", 1, 4096, "1 to 4096 positions");
    const dtype kv_type = parse_dtype(f.str("--cache-type-k"));
    if (kv_type != dtype::f32 && kv_type != dtype::f16) throw usage_error("-ctk must be f32 or f16");
    const bool shared = f.on("-pps");
    std::int64_t max_pl = 1;
    for (auto v : n_pl) max_pl = std::max(max_pl, v);
    if (max_pl > 65536) throw usage_error("-npl: at most 65536 sequences");

    auto m = model::load(f.require("--model"));
    batch_context bc(m, {.n_ctx = n_kv_max, .n_seq_max = static_cast<std::int32_t>(max_pl), .n_batch = n_ubatch,
                         .block_size = block, .kv_type = kv_type, .n_threads = n_threads});
    batch b;
    // Decodes b in pieces of n_batch tokens (llama-batched-bench's decode_helper).
    auto decode_all = [&](const batch& all) {
        batch piece;
        for (std::int64_t i = 0; i < all.size(); i += n_batch) {
            piece.clear();
            for (std::int64_t j = i; j < std::min(all.size(), i + n_batch); ++j) {
                const auto u = static_cast<std::size_t>(j);
                piece.add(all.token[u], all.pos[u], all.seq_id[u], all.logits[u] != 0);
            }
            bc.decode(piece);
        }
    };
    // Warm-up: 16 tokens of sequence 0.
    for (std::int64_t i = 0; i < 16; ++i) b.add(0, i, 0, false);
    decode_all(b);

    if (format == "md") {
        std::printf("\nbatched-bench: n_kv_max = %lld, n_batch = %lld, n_ubatch = %lld, is_pp_shared = %d, n_threads = %d, kv = %s, kv block = %lld\n\n",
                    static_cast<long long>(n_kv_max), static_cast<long long>(n_batch), static_cast<long long>(n_ubatch), shared ? 1 : 0,
                    n_threads, std::string(dtype_name(kv_type)).c_str(), static_cast<long long>(block));
        std::printf("|%6s | %6s | %4s | %6s | %8s | %8s | %8s | %8s | %8s | %8s |\n", "PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s",
                    "T_TG s", "S_TG t/s", "T s", "S t/s");
        std::printf("|%6s-|-%6s-|-%4s-|-%6s-|-%8s-|-%8s-|-%8s-|-%8s-|-%8s-|-%8s-|\n", "------", "------", "----", "------", "--------",
                    "--------", "--------", "--------", "--------", "--------");
    }
    using clock = std::chrono::steady_clock;
    auto seconds = [](clock::time_point a, clock::time_point z) { return std::chrono::duration<double>(z - a).count(); };
    for (const auto pp : n_pp) {
        for (const auto tg : n_tg) {
            for (const auto pl : n_pl) {
                const std::int64_t n_kv = shared ? pp + pl * tg : pl * (pp + tg);
                if (n_kv > n_kv_max) continue;
                b.clear();
                for (std::int64_t j = 0; j < (shared ? 1 : pl); ++j)
                    for (std::int64_t i = 0; i < pp; ++i) b.add(0, i, static_cast<std::int32_t>(j), false);
                b.logits.back() = 1;
                const auto t_pp_start = clock::now();
                bc.clear();
                decode_all(b);
                if (shared)
                    for (std::int64_t j = 1; j < pl; ++j) bc.seq_cp(0, static_cast<std::int32_t>(j));
                const auto t_pp_end = clock::now();
                for (std::int64_t i = 0; i < tg; ++i) {
                    b.clear();
                    for (std::int64_t j = 0; j < pl; ++j) b.add(0, pp + i, static_cast<std::int32_t>(j), true);
                    decode_all(b);
                }
                const auto t_tg_end = clock::now();
                const double t_pp = seconds(t_pp_start, t_pp_end), t_tg = seconds(t_pp_end, t_tg_end), t = t_pp + t_tg;
                const double speed_pp = static_cast<double>(shared ? pp : pl * pp) / t_pp;
                const double speed_tg = static_cast<double>(pl * tg) / t_tg;
                const double speed = static_cast<double>(n_kv) / t;
                if (format == "jsonl") {
                    nlohmann::ordered_json j = {{"n_kv_max", n_kv_max}, {"n_batch", n_batch}, {"n_ubatch", n_ubatch},
                                                {"is_pp_shared", shared ? 1 : 0}, {"n_threads", n_threads}, {"n_threads_batch", n_threads},
                                                {"pp", pp}, {"tg", tg}, {"pl", pl}, {"n_kv", n_kv}, {"t_pp", t_pp}, {"speed_pp", speed_pp},
                                                {"t_tg", t_tg}, {"speed_tg", speed_tg}, {"t", t}, {"speed", speed}};
                    std::printf("%s\n", j.dump().c_str());
                } else {
                    std::printf("|%6lld | %6lld | %4lld | %6lld | %8.3f | %8.2f | %8.3f | %8.2f | %8.3f | %8.2f |\n",
                                static_cast<long long>(pp), static_cast<long long>(tg), static_cast<long long>(pl),
                                static_cast<long long>(n_kv), t_pp, speed_pp, t_tg, speed_tg, t, speed);
                }
                std::fflush(stdout);
            }
        }
    }
    return 0;
}

const register_command reg("batched-bench", "llama-batched-bench: prompt and generation speed of many sequences decoded together",
                           run_batched_bench);

}  // namespace
}  // namespace minigpt::tool

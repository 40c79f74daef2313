// Writes the binary seed corpora of the fuzzers: tiny random-weight GGUF models, llama2.c
// checkpoints, a kNN store and an IVF index, LoRA adapters and prompt-cache files for the fixed model
// of fixed_model.hpp, completion-cache records (and, with SQLite, cache rows and a cache database),
// under DIR/<harness>/. scripts/test-sanitizers runs it
// before fuzzing (model files are made at test time, never committed):
//   build-sanitizers/fuzz/tests/fuzz/fuzz_make_seeds build-sanitizers/fuzz/seeds
// Kept tiny (a few KB) so that libFuzzer's mutations stay fast.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "completion_cache_fixture.hpp"
#include "fixed_model.hpp"
#include "knn_fixture.hpp"
#include "minigpt/generate/prompt_cache.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/io/llama2c.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/knn/ivf.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_gguf.hpp"
#ifdef MINIGPT_HAVE_SQLITE
#include "minigpt/frugal/cache_sqlite.hpp"
#endif

using namespace minigpt;

static void write_file(const std::string& path, const void* p, std::size_t n) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    if (!f) throw io_error(path + ": cannot write");
}

static std::vector<std::byte> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<std::byte> b(c.size());
    std::memcpy(b.data(), c.data(), c.size());
    return b;
}

static void prefixed(const std::string& path, char selector, const std::string& from) {
    std::vector<std::byte> b = read_file(from);
    std::string out(1, selector);
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    write_file(path, out.data(), out.size());
    std::remove(from.c_str());
}


static void selected(const std::string& path, char selector, std::string_view bytes) {
    std::string out(1, selector);
    out.append(bytes);
    write_file(path, out.data(), out.size());
}

// LoRA adapters for the fixed model: (target, rank, element type of the halves).
static void write_lora_seeds(const std::string& dir) {
    struct target { const char* name; std::int64_t rank; dtype type; };
    const std::vector<std::pair<std::vector<target>, float>> adapters = {
        {{{"blk.0.attn_q.weight", 2, dtype::f32}, {"output.weight", 2, dtype::f32}}, 4.0f},
        {{{"blk.0.ffn_down.weight", 3, dtype::f16}, {"blk.0.attn_v.weight", 2, dtype::f16}}, 0.0f},
    };
    const auto& base = *fuzz::fixed_llm().weights;
    std::uint64_t seed = 100;
    for (std::size_t i = 0; i < adapters.size(); ++i) {
        const std::string tmp = dir + "/lora/adapter.tmp";
        io::gguf_writer w(tmp);
        w.set("general.architecture", base.config().arch_name);
        w.set("general.type", "adapter");
        w.set("adapter.type", "lora");
        w.set("adapter.lora.alpha", adapters[i].second);
        for (const auto& t : adapters[i].first) {
            const auto* info = base.gguf()->find_tensor(t.name);
            if (!info || info->shape.size() != 2) throw error(std::string("make_seeds: the fixed model has no matrix ") + t.name);
            w.add_tensor(std::string(t.name) + ".lora_a", detail::random_tensor(t.type, t.rank, info->shape[1], 0.0f, 0.1f, ++seed, 1));
            w.add_tensor(std::string(t.name) + ".lora_b", detail::random_tensor(t.type, info->shape[0], t.rank, 0.0f, 0.1f, ++seed, 1));
        }
        w.finish();
        prefixed(dir + "/lora/adapter-" + std::to_string(i), static_cast<char>(i), tmp);
    }
}

// Prompt caches of the fixed model: f32 and f16 KV, the fixed prompt and one sharing 3 tokens with it.
static void write_prompt_cache_seeds(const std::string& dir) {
    const auto& m = fuzz::fixed_llm().weights;
    const std::vector<std::int32_t> other = {1, 75, 104, 7, 8};
    for (const bool f16 : {false, true})
        for (const auto* tokens : {&fuzz::fixed_prompt(), &other}) {
            context ctx(m, {.n_ctx = 16, .kv_type = f16 ? dtype::f16 : dtype::f32, .n_threads = 1});
            ctx.decode(*tokens);
            const std::string tmp = dir + "/prompt_cache/kv.tmp";
            save_prompt_cache(tmp, ctx, *tokens);
            // selector bit 1: f16 context; bit 0 (recompute the checksum) set on the second prompt's files
            prefixed(dir + "/prompt_cache/" + (f16 ? "f16-" : "f32-") + (tokens == &other ? "partial" : "full"),
                     static_cast<char>((f16 ? 2 : 0) | (tokens == &other ? 1 : 0)), tmp);
        }
}

// Completion-cache records under the fixed request's key, as rows, and (with SQLite) a database.
static void write_completion_cache_seeds(const std::string& dir) {
    const auto key = frugal::make_key(fuzz::fixed_cache_request());
    for (const bool lp : {true, false}) {
        const std::string rec = frugal::encode_record(key, fuzz::fixed_completion(lp));
        selected(dir + "/completion_cache/record" + (lp ? "-logprobs" : ""), static_cast<char>(fuzz::cache_mode::record), rec);
        // Row: flags (1: the request's scope), u16 record length, record, embedding (4 floats).
        std::string row(1, '\x01');
        row += static_cast<char>(rec.size() & 0xff);
        row += static_cast<char>(rec.size() >> 8);
        row += rec;
        const float embedding[4] = {1.0f, 0.0f, 0.0f, 0.0f};
        row.append(reinterpret_cast<const char*>(embedding), sizeof embedding);
        selected(dir + "/completion_cache/row" + (lp ? "-logprobs" : ""), static_cast<char>(fuzz::cache_mode::sqlite_row), row);
        // A row whose embedding blob is empty (not NULL): found by this harness (memcpy from a null
        // pointer in sqlite_cache::scope_candidates), kept as a seed so every fuzz run replays it.
        if (lp) selected(dir + "/completion_cache/regress-row-empty-embedding", static_cast<char>(fuzz::cache_mode::sqlite_row),
                         row.substr(0, row.size() - sizeof embedding));
    }
#ifdef MINIGPT_HAVE_SQLITE
    // A cache database with 512-byte pages (a few KB instead of 16): the page size is fixed first.
    const std::string db = dir + "/completion_cache/cache.tmp";
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
    sqlite3* raw = nullptr;
    if (sqlite3_open(db.c_str(), &raw) != SQLITE_OK ||
        sqlite3_exec(raw, "PRAGMA page_size=512; CREATE TABLE seed(x); DROP TABLE seed;", nullptr, nullptr, nullptr) != SQLITE_OK)
        throw error("make_seeds: cannot create " + db);
    sqlite3_close(raw);
    {
        frugal::sqlite_cache cache(db);
        const float embedding[4] = {1.0f, 0.0f, 0.0f, 0.0f};
        cache.put(key, frugal::encode_record(key, fuzz::fixed_completion(true)), embedding);
    }
    prefixed(dir + "/completion_cache/database", static_cast<char>(fuzz::cache_mode::sqlite_file), db);
#endif
}

int main(int argc, char** argv) try {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR (tests/fuzz/corpus)\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    for (const char* h : {"gguf_model", "llama2c", "knn", "lora", "prompt_cache", "completion_cache"})
        std::filesystem::create_directories(dir + "/" + h);
    // GGUF: llama (GQA, untied) and gpt2 (tied), with the 259-token synthetic vocabulary.
    const synth_preset presets[] = {
        {"fuzz", architecture::llama, 259, 16, 32, 1, 2, 1, 32, false},
        {"fuzz", architecture::gpt2, 259, 16, 32, 1, 2, 2, 64, true},
    };
    const std::pair<int, dtype> seeds[] = {{0, dtype::q4_0}, {0, dtype::f16}, {1, dtype::q8_0}, {1, dtype::f32}};
    for (const auto& [p, type] : seeds) {
        const synth_preset& preset = presets[p];
        const std::string path = dir + "/gguf_model/" + (preset.arch == architecture::gpt2 ? "gpt2-" : "llama-") + std::string(dtype_name(type)) + ".gguf";
        io::gguf_writer w(path);
        write_vocab(w, synthetic_vocab(static_cast<std::int32_t>(preset.n_vocab)));
        synthesize(w, preset, type, 7, 0, 1);
        w.finish();
    }
    // llama2.c: dim 16, hidden 32, 1 layer, 2 heads (1 KV head), vocab 8, seq 8; shared and unshared classifier.
    for (const int vocab : {8, -8}) {
        const std::int32_t header[7] = {16, 32, 1, 2, 1, vocab, 8};
        io::llama2c_config c{16, 32, 1, 2, 1, 8, 8, vocab > 0};
        const std::uint64_t n = io::llama2c_checkpoint::expected_size(c);
        std::vector<float> floats((n - sizeof header) / sizeof(float));
        for (std::size_t i = 0; i < floats.size(); ++i) floats[i] = 0.02f * static_cast<float>(static_cast<int>(i * 2654435761u % 101) - 50) / 50.0f + (i % 97 == 0 ? 1.0f : 0.0f);
        std::string bytes(reinterpret_cast<const char*>(header), sizeof header);
        bytes.append(reinterpret_cast<const char*>(floats.data()), floats.size() * sizeof(float));
        write_file(dir + "/llama2c/" + (vocab > 0 ? "shared" : "unshared") + ".bin", bytes.data(), bytes.size());
    }
    // kNN: a 16-key store (f32 and f16 keys) and an IVF index of the harness's fixed store.
    for (const dtype t : {dtype::f32, dtype::f16}) {
        const std::string tmp = dir + "/knn/store.tmp";
        knn::datastore_writer w(tmp, 4, t, "fuzz");
        std::vector<float> keys(16 * 4);  // (16, 4)
        std::vector<std::int32_t> values(16);
        for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<float>(i % 7) * 0.25f;
        for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::int32_t>(i);
        w.append(keys.data(), values.data(), 16);
        w.finish();
        prefixed(dir + "/knn/store-" + std::string(dtype_name(t)), '\0', tmp);
    }
    knn::ivf_params p;
    p.n_lists = 4;
    p.n_threads = 1;
    const std::string tmp = dir + "/knn/ivf.tmp";
    knn::ivf_index::build(fuzz::fixed_store(), p)->save(tmp);
    prefixed(dir + "/knn/ivf", '\1', tmp);
    write_lora_seeds(dir);
    write_prompt_cache_seeds(dir);
    write_completion_cache_seeds(dir);
    std::printf("seeds written under %s\n", dir.c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
}

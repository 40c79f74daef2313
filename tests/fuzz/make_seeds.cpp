// Writes the binary seed corpora of the fuzzers: tiny random-weight GGUF models, llama2.c
// checkpoints, a kNN store and an IVF index, under DIR/<harness>/. scripts/test-sanitizers runs it
// before fuzzing (model files are made at test time, never committed):
//   build-sanitizers/fuzz/tests/fuzz/fuzz_make_seeds build-sanitizers/fuzz/seeds
// Kept tiny (a few KB) so that libFuzzer's mutations stay fast.
#include <cstdio>
#include <fstream>
#include <string>

#include "knn_fixture.hpp"
#include "minigpt/io/gguf_writer.hpp"
#include "minigpt/io/llama2c.hpp"
#include "minigpt/knn/datastore.hpp"
#include "minigpt/knn/ivf.hpp"
#include "minigpt/model/synth.hpp"
#include "minigpt/text/vocab.hpp"
#include "minigpt/text/vocab_gguf.hpp"

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

int main(int argc, char** argv) try {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR (tests/fuzz/corpus)\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
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
    std::printf("seeds written under %s\n", dir.c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
}

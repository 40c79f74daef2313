// `minigpt info -m MODEL`: what is inside a GGUF file or a llama2.c checkpoint.
//
// The printout follows llama.cpp's model loader dump (one `- kv N: key type = value` line per
// metadata key, one line per tensor, per-type counts, file size and bits per weight), so the two
// can be compared side by side. Shapes are printed outermost first, as minigpt writes them
// (llama.cpp prints ne[] innermost first). Long values and arrays are abbreviated. Any GGUF is
// listed, whatever its types or architecture; a last line says whether minigpt can run it and,
// if not, why (the loader's error: an unknown architecture or key, a missing or unused tensor).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "command.hpp"
#include "minigpt/io/gguf.hpp"
#include "minigpt/io/llama2c.hpp"
#include "minigpt/io/mapped_file.hpp"
#include "minigpt/model/model.hpp"

namespace {

using namespace minigpt;
using minigpt::tool::usage_error;

std::string human_bytes(std::uint64_t n) {
    char buf[64];
    if (n < 1024) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
    else if (n < (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f KiB", static_cast<double>(n) / 1024.0);
    else if (n < (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(n) / (1024.0 * 1024.0));
    else std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(n) / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + ")";
}

// Cuts a printable value to max_chars (0: no limit), marking the cut.
std::string cut(std::string s, std::size_t max_chars) {
    if (max_chars == 0 || s.size() <= max_chars) return s;
    std::size_t n = max_chars > 3 ? max_chars - 3 : max_chars;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // do not split a UTF-8 sequence
    return s.substr(0, n) + "...";
}

struct tensor_row {
    std::string name;
    std::string type;
    std::vector<std::int64_t> shape;
    std::uint64_t n_bytes;
};

void print_tensors(const std::vector<tensor_row>& rows, std::uint64_t file_size, bool list) {
    std::size_t name_width = 24;
    for (const auto& r : rows) name_width = std::max(name_width, r.name.size());
    std::uint64_t n_params = 0, n_bytes = 0;
    std::map<std::string, int> per_type;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        std::uint64_t n = 1;
        for (auto d : r.shape) n *= static_cast<std::uint64_t>(d);
        n_params += n;
        n_bytes += r.n_bytes;
        ++per_type[r.type];
        if (list)
            std::printf("  - tensor %4zu: %*s %-5s %-22s %12llu bytes\n", i, static_cast<int>(name_width), r.name.c_str(),
                        r.type.c_str(), shape_string(r.shape).c_str(),
                        static_cast<unsigned long long>(r.n_bytes));
    }
    for (const auto& [type, count] : per_type) std::printf("  - type %5s: %4d tensors\n", type.c_str(), count);
    std::printf("parameters  = %llu (%.2f M)\n", static_cast<unsigned long long>(n_params), static_cast<double>(n_params) / 1e6);
    std::printf("tensor data = %llu bytes (%s)\n", static_cast<unsigned long long>(n_bytes), human_bytes(n_bytes).c_str());
    if (n_params > 0)
        std::printf("file size   = %s (%.2f BPW)\n", human_bytes(file_size).c_str(),
                    8.0 * static_cast<double>(file_size) / static_cast<double>(n_params));
    else
        std::printf("file size   = %s\n", human_bytes(file_size).c_str());
}

// Whether minigpt can run the file: its architecture's descriptor reads the keys and checks every
// tensor (names, shapes, none left over) exactly as loading does. Listing above never depends on it.
void print_support(const std::string& path) {
    try {
        const auto m = model::from_gguf(std::make_shared<const io::gguf_file>(io::gguf_file::open(path)));
        std::printf("minigpt     = runs this file: %s, %.2f M parameters\n", m->config().summary().c_str(),
                    static_cast<double>(m->n_params()) / 1e6);
    } catch (const std::exception& e) {
        std::printf("minigpt     = cannot run this file: %s\n", e.what());
    }
}

void info_gguf(const std::string& path, std::size_t array_items, std::size_t max_value, bool list_tensors) {
    const auto f = io::gguf_file::open_listing(path);  // any element type, even ones minigpt cannot compute with
    std::printf("%s: GGUF V%u, %zu key-value pairs, %zu tensors, alignment %u, data at byte %llu\n", path.c_str(), f.version(),
                f.n_keys(), f.tensors().size(), f.alignment(), static_cast<unsigned long long>(f.data_offset()));
    std::printf("architecture = %s\n", f.get_or<std::string>("general.architecture", "(none)").c_str());
    std::size_t key_width = 24;
    for (const auto& k : f.keys()) key_width = std::max(key_width, k.size());
    const auto keys = f.keys();
    for (std::size_t i = 0; i < keys.size(); ++i) {
        const auto& v = f.value(keys[i]);
        std::printf("  - kv %3zu: %*s %-16s = %s\n", i, static_cast<int>(key_width), keys[i].c_str(), v.type_label().c_str(),
                    cut(v.to_string(array_items), max_value).c_str());
    }
    std::vector<tensor_row> rows;
    rows.reserve(f.tensors().size());
    for (const auto& t : f.tensors())
        rows.push_back({t.name, t.supported ? std::string(dtype_name(t.type)) : io::ggml_type_name(t.ggml_type), t.shape, t.n_bytes});
    print_tensors(rows, f.file_size(), list_tensors);
    print_support(path);
}

void info_llama2c(const std::string& path, bool list_tensors) {
    const auto ck = io::llama2c_checkpoint::open(path);
    const auto& c = ck.config;
    std::printf("%s: llama2.c checkpoint (run.c format), %zu tensors\n", path.c_str(), ck.tensor_names().size());
    std::printf("  dim        = %d\n  hidden_dim = %d\n  n_layers   = %d\n  n_heads    = %d\n  n_kv_heads = %d\n"
                "  vocab_size = %d (%s classifier)\n  seq_len    = %d\n  head_size  = %d\n  kv_dim     = %d\n",
                c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.shared_classifier ? "shared" : "unshared",
                c.seq_len, c.head_size(), c.kv_dim());
    std::vector<tensor_row> rows;
    for (const auto& name : ck.tensor_names()) {
        const tensor t = ck.get_tensor(name);
        rows.push_back({name, std::string(dtype_name(t.type())), std::vector<std::int64_t>(t.shape().begin(), t.shape().end()),
                        static_cast<std::uint64_t>(t.n_bytes())});
    }
    print_tensors(rows, io::llama2c_checkpoint::expected_size(c), list_tensors);
}

int run_info(const std::vector<std::string>& args) {
    tool::flags fl("usage: minigpt info -m MODEL [options]\n\n"
                   "Prints a GGUF file's version, metadata (every key with its type and value) and tensors\n"
                   "(name, type, shape outermost first, bytes) with totals, or a llama2.c checkpoint's header and tensors.");
    fl.value({"-m", "--model"}, "GGUF file or llama2.c checkpoint (may also be given as the only positional argument)")
        .value({"--array-items"}, "array elements shown per array value", "8")
        .value({"--max-value"}, "cut printed values to this many characters (0: no limit)", "200")
        .boolean({"--no-tensors"}, "print only the per-type tensor counts and totals, not one line per tensor")
        .allow_positional("MODEL                       the model file, instead of -m");
    fl.parse(args);
    if (fl.help()) {
        std::printf("%s", fl.usage().c_str());
        return 0;
    }
    std::string path = fl.str("-m");
    if (path.empty() && fl.positional().size() == 1) path = fl.positional()[0];
    if (fl.positional().size() > 1) throw usage_error("unexpected argument '" + fl.positional()[1] + "'");
    if (path.empty()) throw usage_error("missing -m MODEL");
    if (!fl.positional().empty() && fl.has("-m")) throw usage_error("unexpected argument '" + fl.positional()[0] + "'");
    const auto array_items = fl.integer("--array-items");
    const auto max_value = fl.integer("--max-value");
    if (array_items < 0 || max_value < 0) throw usage_error("--array-items and --max-value must be >= 0");

    const auto file = io::mapped_file::open(path);
    const bool gguf = file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0;
    if (gguf) info_gguf(path, static_cast<std::size_t>(array_items), static_cast<std::size_t>(max_value), !fl.on("--no-tensors"));
    else info_llama2c(path, !fl.on("--no-tensors"));
    return 0;
}

const tool::register_command reg_info("info", "show a model file's metadata and tensors (GGUF or llama2.c)", run_info);

}  // namespace

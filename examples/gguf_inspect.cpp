// gguf_inspect: lists a GGUF file's metadata keys and tensors with minigpt's reader, then shows
// the typed accessors and a zero-copy tensor view.
//
//   example_gguf_inspect MODEL.gguf      (e.g. ../shared/models/stories260K.gguf)
//
// With --roundtrip OUT.gguf it also rewrites the file with gguf_writer (all metadata copied, every
// tensor re-added); for a file written by llama.cpp the copy is byte-identical.
#include <cstdio>
#include <cstring>
#include <string>

#include "minigpt/io/gguf.hpp"
#include "minigpt/io/gguf_writer.hpp"

int main(int argc, char** argv) {
    using namespace minigpt;
    if (argc != 2 && !(argc == 4 && std::strcmp(argv[2], "--roundtrip") == 0)) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [--roundtrip OUT.gguf]\n", argv[0]);
        return 2;
    }
    try {
        // Opening maps the file and validates the header; tensor data is not read.
        const auto f = io::gguf_file::open(argv[1]);
        std::printf("GGUF v%u, alignment %u, %zu keys, %zu tensors\n\n", f.version(), f.alignment(), f.n_keys(), f.tensors().size());

        for (const auto& key : f.keys())
            std::printf("%-40s %-16s %s\n", key.c_str(), f.value(key).type_label().c_str(), f.value_string(key, 4).c_str());

        std::printf("\n");
        for (const auto& t : f.tensors()) {
            std::string shape;
            for (auto d : t.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
            std::printf("%-32s %-5s %-16s %10llu bytes at data offset %llu\n", t.name.c_str(), std::string(dtype_name(t.type)).c_str(),
                        shape.c_str(), static_cast<unsigned long long>(t.n_bytes), static_cast<unsigned long long>(t.offset));
        }

        // Typed access: integers convert when the stored value fits, optional keys have get_or/find.
        if (auto arch = f.find<std::string>("general.architecture")) {
            const auto n_layer = f.get_or<std::int64_t>(*arch + ".block_count", 0);
            std::printf("\n%s model with %lld blocks\n", arch->c_str(), static_cast<long long>(n_layer));
        }
        if (f.has("tokenizer.ggml.tokens")) {
            const auto tokens = f.get_string_views("tokenizer.ggml.tokens");  // views into the map, no copies
            std::printf("vocabulary: %zu tokens, last is \"%.*s\"\n", tokens.size(), static_cast<int>(tokens.back().size()),
                        tokens.back().data());
        }
        if (!f.tensors().empty()) {
            const tensor t = f.get_tensor(f.tensors().front().name);  // a view into the mapped file
            std::printf("first tensor %s has shape %s\n", f.tensors().front().name.c_str(), t.shape_string().c_str());
            if (t.type() == dtype::f32) std::printf("its first value is %g\n", static_cast<double>(t.data<float>()[0]));
        }

        if (argc == 4) {
            io::gguf_writer w(argv[3]);
            w.copy_metadata_from(f);
            for (const auto& t : f.tensors()) w.add_tensor(t.name, f.get_tensor(t.name));
            w.finish();
            std::printf("\nrewrote %s as %s\n", argv[1], argv[3]);
        }
    } catch (const error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

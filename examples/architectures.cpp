// The architecture registry: every architecture minigpt runs, its tensors as its descriptor
// lists them, and a few greedy tokens from a random-weight model of each (made in memory).
// With a file argument, says whether minigpt runs that file and, if not, why.
//
//   example_architectures [MODEL.gguf]
#include <minigpt/model.hpp>
#include <minigpt/model/synth.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>

int main(int argc, char** argv) {
    using namespace minigpt;
    try {
        if (argc > 1) {  // the loader checks every key and tensor against the file's architecture
            const auto m = model::load(argv[1]);
            std::printf("runs: %s\n", m->config().summary().c_str());
            return 0;
        }
        for (const arch_descriptor* d : architectures()) {
            const auto m = synthesize_model(find_synth_preset(d->name, "tiny"), dtype::q8_0, 1, d->name);
            int n_matrices = 0, n_vectors = 0;
            const tensor_visitor count = [&](const tensor_spec& s) {
                if (s.dst->empty()) return;
                (s.kind == tensor_kind::vector ? n_vectors : n_matrices) += 1;
            };
            tensor_list list(count);
            model_weights scratch = m->weights();  // the visitor reads through the descriptor's list
            d->tensors(m->config(), scratch, list);
            context ctx(m, {.n_ctx = 32});
            std::vector<std::int32_t> ids = {1};
            for (int i = 0; i < 6; ++i) {
                ctx.decode(std::span(&ids.back(), 1));
                const auto l = ctx.logits();
                ids.push_back(static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
            }
            std::printf("%-10s %2d matrices/tables, %2d vectors; greedy ids:", d->name, n_matrices, n_vectors);
            for (auto id : ids) std::printf(" %d", id);
            std::printf("\n");
        }
    } catch (const error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

// kNN-LM in a generation loop: build a datastore from a text with a model's hidden
// states, then continue a prompt greedily with the model alone and with the model mixed
// with the datastore (the knn_lm stage turns the logits into log p_mixed).
//
//   example_knn_lm MODEL.gguf MEMORY.txt "PROMPT" [N_TOKENS] [LAMBDA]
//
// With a store built from MEMORY.txt, the mixed model tends to continue the prompt the
// way MEMORY.txt does, even when the model alone has never seen that text.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "minigpt/knn.hpp"
#include "minigpt/model/context.hpp"
#include "minigpt/text/tokenizer.hpp"

using namespace minigpt;

namespace {

std::int32_t argmax(std::span<const float> v) {
    return static_cast<std::int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Greedy continuation; with a stage, each step's logits become log p_mixed first.
std::string continue_prompt(const std::shared_ptr<const model>& m, const tokenizer& tok, const std::string& prompt,
                            int n_tokens, knn::knn_lm* stage) {
    const std::int64_t n_ctx = std::min<std::int64_t>(256, m->config().n_ctx_train > 0 ? m->config().n_ctx_train : 256);
    context ctx(m, context_params{.n_ctx = n_ctx, .tap = hidden_tap::ffn_input});
    std::vector<std::int32_t> ids = tok.encode(prompt, tok.add_bos_default());
    const std::size_t n_prompt = ids.size();
    ctx.decode(ids, logits_for::last);
    std::vector<float> logits;
    for (int i = 0; i < n_tokens && ctx.n_past() < ctx.n_ctx(); ++i) {
        logits.assign(ctx.logits().begin(), ctx.logits().end());
        if (stage) {
            const auto tap = ctx.tap_output();  // (tokens of the last decode, n_embd): use the last row
            stage->apply(logits, tap.data() + tap.size() - static_cast<std::size_t>(m->config().n_embd));
        }
        const std::int32_t next = argmax(logits);
        if (tok.is_eog(next)) break;
        ids.push_back(next);
        ctx.decode(std::span<const std::int32_t>(&ids.back(), 1), logits_for::last);
    }
    return tok.decode(std::span<const std::int32_t>(ids).subspan(n_prompt));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL.gguf MEMORY.txt \"PROMPT\" [N_TOKENS] [LAMBDA]\n", argv[0]);
        return 1;
    }
    try {
        const int n_tokens = argc > 4 ? std::atoi(argv[4]) : 24;
        auto m = model::load(argv[1]);
        if (!m->gguf()) throw error("the model file has no tokenizer: use a GGUF model");
        const auto tok = tokenizer::from_gguf(*m->gguf());
        std::ifstream in(argv[2], std::ios::binary);
        if (!in) throw error(std::string("cannot open ") + argv[2]);
        std::stringstream text;
        text << in.rdbuf();
        const auto memory = tok.encode(text.str(), tok.add_bos_default());

        // Keys: the input of the last feed-forward block at each position of MEMORY.txt.
        const std::string store_path = (std::filesystem::temp_directory_path() / "example_knn_lm.store").string();
        const std::int64_t window = std::min<std::int64_t>(256, m->config().n_ctx_train > 0 ? m->config().n_ctx_train : 256);
        context ctx(m, context_params{.n_ctx = window, .n_batch = window, .tap = hidden_tap::ffn_input});
        knn::datastore_writer writer(store_path, m->config().n_embd, dtype::f16, m->fingerprint() + " tap=ffn_input");
        knn::build_datastore(writer, memory, {window, 0}, [&](std::span<const std::int32_t> t, std::int64_t, float* keys) {
            ctx.truncate(0);
            ctx.decode(t, logits_for::none);
            std::copy(ctx.tap_output().begin(), ctx.tap_output().end(), keys);
        });
        writer.finish();
        auto store = knn::datastore::open(store_path, m->fingerprint() + " tap=ffn_input");
        std::printf("datastore: %lld keys of dimension %lld\n", static_cast<long long>(store->n_keys()),
                    static_cast<long long>(store->dim()));

        knn::knn_lm_params params;
        params.lambda = argc > 5 ? static_cast<float>(std::atof(argv[5])) : 0.5f;
        params.k = 16;
        knn::knn_lm stage(std::make_shared<knn::exact_index>(store), params);
        std::printf("prompt:        %s\n", argv[3]);
        std::printf("model alone:   %s\n", continue_prompt(m, tok, argv[3], n_tokens, nullptr).c_str());
        std::printf("with kNN-LM:   %s\n", continue_prompt(m, tok, argv[3], n_tokens, &stage).c_str());
        std::remove(store_path.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

// The completion cache and a prompt-prefix KV file on a real model, with timings.
//
//   example_frugal_cache MODEL [CACHE_DIR]
//
// 1. The same request twice through an SQLite completion cache: the second is answered from the
//    file without running the model. 2. A long prompt prefilled from scratch, then again with its
//    first part restored from a KV file: only the tail is computed, and the logits agree.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "minigpt/frugal/completion_cache.hpp"
#include "minigpt/generate/prompt_cache.hpp"
#ifdef MINIGPT_HAVE_SQLITE
#include "minigpt/frugal/cache_sqlite.hpp"
#endif

using namespace minigpt;

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [CACHE_DIR]\n", argv[0]);
        return 1;
    }
    try {
        const llm lm = llm::load(argv[1]);
        const std::filesystem::path dir = argc > 2 ? argv[2] : std::filesystem::temp_directory_path();
        const context_params cp{.n_ctx = 512};
        generation_params gp;
        gp.max_tokens = 64;
        gp.sampling.seed = 42;
        const auto prompt = lm.vocab->encode("Once upon a time, there was a little girl named Lily.", lm.vocab->add_bos_default());
#ifdef MINIGPT_HAVE_SQLITE
        const auto db = (dir / "minigpt-example-cache.db").string();
        std::filesystem::remove(db);
        frugal::completion_cache cache(std::make_unique<frugal::sqlite_cache>(db));
        const frugal::completion_request req{lm.weights->fingerprint(), {}, prompt, gp};
        for (int round = 0; round < 2; ++round) {
            const auto t0 = std::chrono::steady_clock::now();
            context ctx(lm.weights, cp);
            const auto c = cache.get_or_generate(req, [&] { return frugal::generate_completion(lm, ctx, prompt, gp); });
            std::printf("request %d: %s in %.2f ms, %zu tokens, mean log-prob %.3f\n", round + 1,
                        c.from_cache ? "from the cache" : "generated", ms_since(t0), c.tokens.size(), c.mean_logprob());
            if (round == 1) std::printf("  text:%s\n", c.text.c_str());
        }
        const auto s = cache.stats();
        std::printf("cache: %llu hit, %llu miss\n\n", static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses));
#else
        std::printf("(built without SQLite: completion cache part skipped)\n\n");
#endif
        // A long prompt: the first n_saved tokens restored from a file, the rest decoded.
        std::string text;
        for (int i = 0; i < 40; ++i) text += "Tom and Lily went to the park to play with a big red ball. ";
        auto ids = lm.vocab->encode(text, lm.vocab->add_bos_default());
        if (static_cast<std::int64_t>(ids.size()) > cp.n_ctx - 8) ids.resize(static_cast<std::size_t>(cp.n_ctx - 8));
        const std::size_t n_saved = ids.size() - 8;
        const auto kv_file = (dir / "minigpt-example-prompt.kv").string();
        {
            context a(lm.weights, cp);
            a.decode(std::span(ids).first(n_saved), logits_for::none);
            save_prompt_cache(kv_file, a, std::span(ids).first(n_saved));
        }
        auto t0 = std::chrono::steady_clock::now();
        context full(lm.weights, cp);
        full.decode(ids);
        const double full_ms = ms_since(t0);
        t0 = std::chrono::steady_clock::now();
        context restored(lm.weights, cp);
        const auto info = load_prompt_cache(kv_file, restored, ids);
        restored.decode(std::span(ids).subspan(static_cast<std::size_t>(info.n_restored)));
        const double restored_ms = ms_since(t0);
        double diff = 0;
        for (std::size_t v = 0; v < full.logits().size(); ++v) diff = std::max(diff, double(std::abs(full.logits()[v] - restored.logits()[v])));
        std::printf("prompt of %zu tokens: full prefill %.2f ms; %lld restored from %s (%ju bytes) + %zu decoded: %.2f ms; "
                    "max |logit diff| %.2e\n",
                    ids.size(), full_ms, static_cast<long long>(info.n_restored), kv_file.c_str(),
                    static_cast<std::uintmax_t>(std::filesystem::file_size(kv_file)), ids.size() - static_cast<std::size_t>(info.n_restored),
                    restored_ms, diff);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

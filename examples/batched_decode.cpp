// N answers to one prompt in one batch: the prompt is prefilled once into sequence 0, forked to
// N-1 more sequences (the forks share its KV blocks copy-on-write), then every step decodes one
// token of each sequence in a single forward pass (model/batch_context.hpp). Prints the answers,
// the cache's block use after the fork and at the end, and the aggregate decode speed.
//
//   example_batched_decode MODEL.gguf [N]
#include <minigpt/generate/generation.hpp>
#include <minigpt/generate/sampler.hpp>
#include <minigpt/model/batch_context.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [N]\n", argv[0]);
        return 1;
    }
    const int n = argc > 2 ? std::atoi(argv[2]) : 4;
    if (n < 1 || n > 64) {
        std::fprintf(stderr, "N must be in [1, 64]\n");
        return 1;
    }
    try {
        const minigpt::llm lm = minigpt::llm::load(argv[1]);
        minigpt::batch_context ctx(lm.weights, {.n_ctx = 2048, .n_seq_max = n});
        const auto prompt = lm.vocab->encode("Once upon a time there was a little girl named Lily. One day", lm.vocab->add_bos_default());
        minigpt::batch b;
        for (std::size_t i = 0; i < prompt.size(); ++i) b.add(prompt[i], static_cast<std::int64_t>(i), 0, i + 1 == prompt.size());
        ctx.decode(b);
        for (int s = 1; s < n; ++s) ctx.seq_cp(0, s);
        auto report = [&](const char* when) {
            const auto u = ctx.memory();
            std::printf("%s: %lld positions in %lld of %lld blocks (%.2f of %.2f MiB)\n", when, static_cast<long long>(u.positions),
                        static_cast<long long>(u.blocks_used), static_cast<long long>(u.blocks_total), static_cast<double>(u.bytes_used) / (1 << 20),
                        static_cast<double>(u.bytes_total) / (1 << 20));
        };
        report("after the fork");
        // Sequence 0 greedy, the others sampled with their own seeds; all start from the prompt's logits.
        std::vector<minigpt::sampler> samplers;
        samplers.reserve(static_cast<std::size_t>(n));
        std::vector<std::vector<std::int32_t>> answers(static_cast<std::size_t>(n));
        for (int s = 0; s < n; ++s) {
            minigpt::sampling_params p = s == 0 ? minigpt::sampling_params::greedy() : minigpt::sampling_params{};
            p.seed = 100 + static_cast<std::uint64_t>(s);
            samplers.emplace_back(p, static_cast<std::int32_t>(ctx.n_vocab()));
        }
        std::vector<std::int64_t> row(static_cast<std::size_t>(n), static_cast<std::int64_t>(prompt.size()) - 1);  // where each one's logits are
        const int n_steps = 48;
        const auto t0 = std::chrono::steady_clock::now();
        for (int step = 0; step < n_steps; ++step) {
            b.clear();
            for (int s = 0; s < n; ++s) {
                const auto id = samplers[static_cast<std::size_t>(s)].sample(ctx.logits_ith(row[static_cast<std::size_t>(s)]));
                answers[static_cast<std::size_t>(s)].push_back(id);
                b.add(id, ctx.n_pos(s), s, true);
                row[static_cast<std::size_t>(s)] = s;
            }
            ctx.decode(b);
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (int s = 0; s < n; ++s) std::printf("[%d] %s\n", s, lm.vocab->decode(answers[static_cast<std::size_t>(s)]).c_str());
        report("at the end");
        std::printf("%d sequences x %d tokens in %.3f s: %.1f tokens/s in all\n", n, n_steps, secs, n * n_steps / secs);
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

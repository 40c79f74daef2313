// Many requests at once on one model: the continuous-batching engine that `minigpt serve` runs.
// Eight threads submit prompts concurrently into four slots; each request has its own sampler,
// stop string, token limit and log-probabilities; one is cancelled half way. Prints each answer
// and the engine's counters (prompt tokens computed vs reused from a slot's cache).
//
//   example_continuous_batching MODEL.gguf
#include <minigpt/generate/engine.hpp>

#include <cstdio>
#include <future>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 1;
    }
    try {
        const minigpt::llm lm = minigpt::llm::load(argv[1]);
        minigpt::engine engine(lm, {.n_slots = 4, .n_ctx_slot = 256, .token_budget = 256});
        const std::string story = "Once upon a time there was a little girl named Lily.";
        const std::vector<std::string> prompts = {story + " She", story + " One day", story + " Her mom", story + " Lily saw",
                                                  "The dog ran", "Tom liked", "A big bird", "The sun"};
        std::vector<std::future<minigpt::generation_output>> answers;
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            answers.push_back(std::async(std::launch::async, [&, i] {
                minigpt::engine_request r;
                r.prompt = engine.tokenize(prompts[i]);
                r.params.max_tokens = 40;
                r.params.stop = {"\n"};
                r.params.sampling.temperature = i % 2 ? 0.8f : 0.0f;  // half greedy, half sampled
                r.params.sampling.seed = 100 + i;
                r.params.n_logprobs = 0;                              // log-probability of each chosen token
                int n = 0;
                if (i == 7) r.on_token = [&n](const minigpt::token_event&) { return ++n < 10; };  // stop after 10 tokens
                return engine.run_to_completion(std::move(r));
            }));
        }
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            const auto out = answers[i].get();
            double sum = 0;
            for (const auto& t : out.logprobs) sum += t.logprob;
            std::printf("[%zu] %s|%s\n     %zu tokens, mean logprob %.3f, TTFT %.1f ms\n", i, prompts[i].c_str(), out.text.c_str(),
                        out.tokens.size(), out.tokens.empty() ? 0.0 : sum / static_cast<double>(out.tokens.size()),
                        out.stats.time_to_first_token * 1e3);
        }
        const auto s = engine.stats();
        std::printf("requests %llu, prompt tokens %llu (computed %llu, reused from cache %llu), generated %llu, steps %llu\n",
                    static_cast<unsigned long long>(s.requests_finished), static_cast<unsigned long long>(s.prompt_tokens),
                    static_cast<unsigned long long>(s.prompt_tokens_evaluated),
                    static_cast<unsigned long long>(s.prompt_tokens - s.prompt_tokens_evaluated),
                    static_cast<unsigned long long>(s.generated_tokens), static_cast<unsigned long long>(s.steps));
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

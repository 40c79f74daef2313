// Several questions after one shared prompt, answered together, then every answer continued
// together: model_session::fork_append_generate prefills the N appended questions in one batch
// over the shared prompt's KV blocks and decodes the N answers one forward pass per step;
// append_generate_each then continues the N forks, each its own sequence of one batch. The
// results are what fork() + append() + generate() give one at a time (generate/model_session.hpp).
//
//   example_batched_sessions MODEL.gguf
#include <minigpt/generate/model_session.hpp>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 1;
    }
    try {
        const minigpt::llm lm = minigpt::llm::load(argv[1]);
        minigpt::model_session session(lm, {.n_ctx = 256});
        session.append("Once upon a time there was a little girl named Lily. She lived in a small house with her mom.");
        const std::vector<std::string> questions = {" One day Lily", " Her mom", " In the garden", " At night"};
        std::vector<minigpt::generation_options> options(questions.size());
        for (auto& o : options) {
            o.max_tokens = 24;
            o.stop = {"."};
            o.sampling = minigpt::sampling_params::greedy();
        }
        auto forks = session.fork_append_generate(questions, options);
        std::vector<minigpt::text_session*> sessions;
        for (std::size_t i = 0; i < forks.size(); ++i) {
            std::printf("[%zu]%s%s. (%zu appended tokens, %d generated)\n", i, questions[i].c_str(), forks[i].result.text.c_str(),
                        forks[i].n_appended_tokens, forks[i].result.n_tokens);
            sessions.push_back(forks[i].session.get());
        }
        const std::vector<std::string> thens(forks.size(), " Then");
        const auto more = minigpt::append_generate_each(sessions, thens, options);
        for (std::size_t i = 0; i < more.size(); ++i) std::printf("[%zu] ... Then%s.\n", i, more[i].text.c_str());
        std::printf("paths decoded in a batch: %zu from the shared prompt\n", session.n_batched_paths());
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

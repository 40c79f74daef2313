// Runs a batch prompt (text/batch_prompt.hpp) on a text_session, or the same questions one prompt
// at a time for comparison, returning the answers and the prompt tokens each way cost.
// frugal/ sits above generate/: it uses sessions, caches and scorers built on the generation layers.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "minigpt/generate/text_session.hpp"
#include "minigpt/text/batch_prompt.hpp"

namespace minigpt::frugal {

struct batch_run {
    batch_answers answers;
    std::string reply;              // the generated text
    std::size_t n_prompt_tokens = 0;
    std::size_t n_generated_tokens = 0;
};

struct separate_run {
    std::vector<std::optional<std::string>> answers;  // the reply of each prompt up to its first line end, trimmed
    std::size_t n_prompt_tokens = 0;
    std::size_t n_generated_tokens = 0;
};

// Sends the batch prompt to a fork of `session` (the session itself is left as it was).
inline batch_run answer_batch(const text_session& session, const batch_prompt& batch, const generation_options& options,
                              const batch_format& format = {}) {
    auto s = session.fork();
    const std::size_t before = s->n_tokens();
    s->append(batch.text);
    batch_run r;
    r.n_prompt_tokens = s->n_tokens() - before;
    const auto g = s->generate(options);
    r.reply = g.text;
    r.n_generated_tokens = static_cast<std::size_t>(g.n_tokens);
    r.answers = parse_batch_answers(g.text, batch.n_questions, format);
    return r;
}

// Sends each question in its own few-shot prompt (same instruction and demonstrations as `batch`),
// each on a fresh fork of `session`; the forks generate together (text_session::fork_append_generate).
inline separate_run answer_separately(const text_session& session, const batch_prompt& batch, std::span<const std::string> questions,
                                      const generation_options& options, const few_shot_options& fs = {},
                                      const batch_format& format = {}) {
    separate_run r;
    std::vector<std::string> prompts;
    for (std::size_t i = 0; i < questions.size(); ++i) prompts.push_back(separate_prompt(batch, questions, i, fs, format));
    const std::vector<generation_options> generations(questions.size(), options);
    // One fork per prompt, answered together (a model-backed session decodes them in one batch).
    const auto forks = session.fork_append_generate(prompts, generations);
    for (const auto& f : forks) {
        const generation_result& g = f.result;
        r.n_prompt_tokens += f.n_appended_tokens;
        r.n_generated_tokens += static_cast<std::size_t>(g.n_tokens);
        const std::string first_line = g.text.substr(0, g.text.find('\n'));
        r.answers.push_back(detail::trim(first_line));
    }
    return r;
}

}  // namespace minigpt::frugal

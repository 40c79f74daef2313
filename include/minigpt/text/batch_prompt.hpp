// Prompt adaptation by query concatenation (FrugalGPT, Chen, Zaharia & Zou 2023): instead of k
// few-shot prompts that each repeat the same instruction and demonstrations, one prompt carries the
// shared part once and then k numbered questions, and the model answers them in numbered slots.
//
// Layout, with the default format (demonstrations rendered exactly as text/few_shot.hpp does):
//     {instruction}\n\n Q: {input 1}\nA: {output 1}\n\n ... Q1: {question 1}\nQ2: {question 2}\n...\nA1:
// The prompt ends with the first answer slot, so a reply reads " answer 1\nA2: answer 2\n...".
// parse_batch_answers() reads "A1:" + reply line by line: a line that starts with "A{i}:" fills slot i
// (the first such line wins; later ones are counted as duplicates), everything up to the line end is
// the answer, trimmed. Slots no line fills are reported missing (std::nullopt), never guessed.
// Demonstration selection and the token budget are build_few_shot()'s: it is called with the batched
// questions standing for its query and a counter that measures the real batch prompt, so similarity
// selection, drop order and truncation behave exactly as for a single question.
// Savings: the prompt tokens of the k separate few-shot prompts (same demonstrations) minus the
// tokens of the one batch prompt, both measured with the caller's counter.
#pragma once

#include <cctype>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/text/few_shot.hpp"

namespace minigpt {

struct batch_format {
    std::string question_prefix = "Q";      // + number + question_suffix + question
    std::string question_suffix = ": ";
    std::string answer_prefix = "A";        // + number + answer_suffix + answer
    std::string answer_suffix = ":";
    std::string question_separator = "\n";  // between numbered questions, and before the first answer slot
};

struct batch_prompt {
    std::string text;                       // ends with the first answer slot ("A1:")
    std::size_t n_questions = 0;
    std::size_t n_tokens = 0;               // tokens of `text` (0 without a counter)
    std::size_t n_tokens_separate = 0;      // sum over the k separate few-shot prompts
    std::vector<std::size_t> used;          // demonstrations used, as few_shot_prompt::used
    std::vector<std::size_t> dropped;       // demonstrations dropped to fit the budget
    std::optional<std::size_t> truncated;
    std::ptrdiff_t tokens_saved() const {
        return static_cast<std::ptrdiff_t>(n_tokens_separate) - static_cast<std::ptrdiff_t>(n_tokens);
    }
};

struct batch_answers {
    std::vector<std::optional<std::string>> answers;  // one per question, nullopt when missing
    std::vector<std::size_t> missing;                 // 0-based question indices with no answer line
    std::size_t n_duplicates = 0;                     // answer lines for a slot already filled
    std::size_t n_unexpected = 0;                     // "A{n}:" lines with n outside 1..k
};

namespace detail {

inline std::string answer_slot(const batch_format& f, std::size_t i) { return f.answer_prefix + std::to_string(i + 1) + f.answer_suffix; }

inline std::string render_questions(const batch_format& f, std::span<const std::string> questions) {
    std::string out;
    for (std::size_t i = 0; i < questions.size(); ++i) {
        if (questions[i].find('\n') != std::string::npos)
            throw error("batch prompt: question " + std::to_string(i + 1) + " contains a newline, which would break the numbered slots");
        out += f.question_prefix + std::to_string(i + 1) + f.question_suffix + questions[i] + f.question_separator;
    }
    return out + answer_slot(f, 0);
}

inline std::string trim(std::string_view s) {
    std::size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return std::string(s.substr(a, b - a));
}

}  // namespace detail

// Builds the batch prompt. `options` are build_few_shot()'s (format of the demonstrations, budget,
// counter, similarity selection against all questions joined by spaces).
inline batch_prompt build_batch_prompt(std::string_view instruction, std::span<const demonstration> demos,
                                       std::span<const std::string> questions, const few_shot_options& options = {},
                                       const batch_format& format = {}) {
    if (questions.empty()) throw error("batch prompt: no questions");
    const std::string block = detail::render_questions(format, questions);
    std::string joined;
    for (const auto& q : questions) joined += (joined.empty() ? "" : " ") + q;
    // build_few_shot renders its query as this block at the end of the prompt; the counter swaps it for
    // the batched block so the budget is checked against the text that will be sent.
    const std::string stand_in = detail::render_query(options.format, joined);
    auto to_batch = [&](std::string_view few_shot_text) {
        if (few_shot_text.size() < stand_in.size() || few_shot_text.substr(few_shot_text.size() - stand_in.size()) != stand_in)
            throw error("batch prompt: few-shot text does not end with its query block");  // cannot happen with build_few_shot
        return std::string(few_shot_text.substr(0, few_shot_text.size() - stand_in.size())) + block;
    };
    few_shot_options opts = options;
    if (options.count_tokens) opts.count_tokens = [&](std::string_view t) { return options.count_tokens(to_batch(t)); };
    const few_shot_prompt fs = build_few_shot(instruction, demos, joined, opts);

    batch_prompt r;
    r.text = to_batch(fs.text);
    r.n_questions = questions.size();
    r.used = fs.used;
    r.dropped = fs.dropped;
    r.truncated = fs.truncated;
    if (options.count_tokens) {
        r.n_tokens = options.count_tokens(r.text);
        // Each separate prompt is the same instruction and demonstrations (as the batch carries them,
        // a truncated one included) followed by one question: build_few_shot's layout.
        const std::string shared = r.text.substr(0, r.text.size() - block.size());
        for (const auto& q : questions) r.n_tokens_separate += options.count_tokens(shared + detail::render_query(options.format, q));
    }
    return r;
}

// The few-shot prompt each question would be sent with on its own (same demonstrations as `batch`).
inline std::string separate_prompt(const batch_prompt& batch, std::span<const std::string> questions, std::size_t i,
                                   const few_shot_options& options = {}, const batch_format& format = {}) {
    if (i >= questions.size()) throw error("batch prompt: question index " + std::to_string(i) + " out of range");
    const std::string block = detail::render_questions(format, questions);
    if (batch.text.size() < block.size()) throw error("batch prompt: text is shorter than its question block");
    return batch.text.substr(0, batch.text.size() - block.size()) + detail::render_query(options.format, questions[i]);
}

// Reads the answers of a batch reply. `reply` is the generated text that follows the prompt (which
// ended with the first slot "A1:").
inline batch_answers parse_batch_answers(std::string_view reply, std::size_t n_questions, const batch_format& format = {}) {
    batch_answers r;
    r.answers.assign(n_questions, std::nullopt);
    const std::string text = detail::answer_slot(format, 0) + std::string(reply);
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        const std::string_view line = std::string_view(text).substr(pos, end - pos);
        pos = end + 1;
        if (line.substr(0, format.answer_prefix.size()) != format.answer_prefix) continue;
        std::size_t j = format.answer_prefix.size();
        std::size_t number = 0, n_digits = 0;
        while (j < line.size() && line[j] >= '0' && line[j] <= '9' && n_digits < 9) number = number * 10 + (line[j++] - '0'), ++n_digits;
        if (n_digits == 0 || line.substr(j, format.answer_suffix.size()) != format.answer_suffix) continue;
        if (number < 1 || number > n_questions) { ++r.n_unexpected; continue; }
        auto& slot = r.answers[number - 1];
        if (slot) { ++r.n_duplicates; continue; }
        slot = detail::trim(line.substr(j + format.answer_suffix.size()));
    }
    for (std::size_t i = 0; i < n_questions; ++i)
        if (!r.answers[i]) r.missing.push_back(i);
    return r;
}

}  // namespace minigpt

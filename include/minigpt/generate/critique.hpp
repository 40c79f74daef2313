// Self-critique and two-model dialogue: answer, have the answer checked, revise on feedback.
//
// The solver session answers the question. A critic then reviews the answer: either the same
// session (the review prompt is appended after the answer, so the model critiques its own
// context), or a second session given the question and answer in its own prompt (a two-model
// dialogue; the critic's context grows round by round). The critic's reply is the verdict: it is
// an acceptance when, after leading whitespace, it starts with `accept_prefix` ("CORRECT", any
// case); anything else is feedback. On feedback the solver is asked to revise, and the loop goes
// on for at most `max_rounds` rounds (one round = one review + one revision, so the last
// revision is not reviewed again) or until the critic accepts.
// Prompt formats take the placeholders {question}, {answer}, {feedback} and {round}. Every
// appended prompt starts on a new line: "\n" is put in front when the context does not already end
// with one (generated text plus its stop string). Returns every turn with its role ("user",
// "solver", "critic") and round, and the final answer (the last solver turn, trimmed).
#pragma once

#include <cctype>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/text_session.hpp"
#include "minigpt/text/few_shot.hpp"

namespace minigpt {

struct critique_options {
    std::string question_format = "Question: {question}\nAnswer:";
    // Same-session review, appended after the answer.
    std::string self_review_format = "Review the answer above. If it is correct, reply CORRECT. Otherwise explain the mistake.\nReview:";
    std::string self_revise_format = "Revised answer:";
    // Review by a separate critic session, appended to the critic; then the revision request to the solver.
    std::string critic_format =
        "Question: {question}\nProposed answer: {answer}\nIf the answer is correct, reply CORRECT. Otherwise explain the mistake.\nReview:";
    std::string revise_format = "Feedback: {feedback}\nRevised answer:";
    std::string accept_prefix = "CORRECT";
    std::size_t max_rounds = 3;
    generation_options answer_generation = [] {
        generation_options g;
        g.max_tokens = 128;
        g.stop = {"\n"};
        g.sampling = sampling_params::greedy();
        return g;
    }();
    generation_options review_generation = answer_generation;
};

struct dialogue_turn {
    std::string role;      // "user" (the question), "solver" or "critic"
    std::string text;
    std::size_t round = 0; // 0: the first answer; k: the k-th review and its revision
};

struct critique_result {
    std::vector<dialogue_turn> transcript;
    std::string final_answer;
    bool accepted = false;
    std::size_t n_rounds = 0;   // reviews done
};

namespace detail {

inline std::string trim_copy(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

inline bool starts_with_nocase(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(text[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
    return true;
}

// One session plus whether its context currently ends with a newline.
struct line_session {
    text_session* session;
    bool at_line_start;

    void append_line(const std::string& text) {
        session->append(at_line_start ? text : "\n" + text);
        at_line_start = !text.empty() && text.back() == '\n';
    }
    generation_result generate(const generation_options& g) {
        generation_result r = session->generate(g);
        const std::string tail = r.text + r.stop_string;
        if (!tail.empty()) at_line_start = tail.back() == '\n';
        return r;
    }
};

inline bool context_ends_with_newline(const text_session& s) {
    const std::string t = s.transcript();
    return t.empty() || t.back() == '\n';
}

}  // namespace detail

// `critic` null: the solver reviews its own answer in its own context.
inline critique_result self_critique(text_session& solver, std::string_view question, const critique_options& options = {},
                                     text_session* critic = nullptr) {
    if (options.accept_prefix.empty()) throw error("self_critique: accept_prefix is empty, every review would accept");
    if (critic == &solver) throw error("self_critique: the critic must be another session (pass nullptr to review in place)");
    critique_result result;
    detail::line_session s{&solver, detail::context_ends_with_newline(solver)};
    std::optional<detail::line_session> c;
    if (critic) c = detail::line_session{critic, detail::context_ends_with_newline(*critic)};

    const std::string q(question);
    s.append_line(fill_placeholders(options.question_format, {{"question", q}}));
    std::string answer = detail::trim_copy(s.generate(options.answer_generation).text);
    result.transcript.push_back({"user", q, 0});
    result.transcript.push_back({"solver", answer, 0});

    for (std::size_t round = 1; round <= options.max_rounds; ++round) {
        const std::string round_text = std::to_string(round);
        std::string review;
        if (c) {
            c->append_line(fill_placeholders(options.critic_format, {{"question", q}, {"answer", answer}, {"round", round_text}}));
            review = detail::trim_copy(c->generate(options.review_generation).text);
        } else {
            s.append_line(fill_placeholders(options.self_review_format, {{"question", q}, {"answer", answer}, {"round", round_text}}));
            review = detail::trim_copy(s.generate(options.review_generation).text);
        }
        result.transcript.push_back({"critic", review, round});
        result.n_rounds = round;
        if (detail::starts_with_nocase(review, options.accept_prefix)) {
            result.accepted = true;
            break;
        }
        const std::string& format = c ? options.revise_format : options.self_revise_format;
        s.append_line(fill_placeholders(format, {{"question", q}, {"answer", answer}, {"feedback", review}, {"round", round_text}}));
        answer = detail::trim_copy(s.generate(options.answer_generation).text);
        result.transcript.push_back({"solver", answer, round});
    }
    result.final_answer = answer;
    return result;
}

}  // namespace minigpt

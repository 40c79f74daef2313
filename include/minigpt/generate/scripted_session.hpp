// scripted_session: a text_session that plays back planned replies instead of running a model, so
// prompt builders and loops (chain-of-thought, self-consistency, critique, tool use) can be tested
// end to end with exact expectations, and demonstrated without model weights.
//
// Replies: generate() takes the first queued reply whose conditions hold (the transcript contains
// `when_contains`; the request's sampling seed equals `when_seed`) and removes it from the queue;
// when none matches it throws, naming the call, so a test notices an unplanned generation.
// Tokens: the rule is one token per 4 bytes (the last one shorter): count_tokens(t) is
// ceil(size(t) / 4), each append() adds that many, and a reply is emitted in 4-byte pieces. The
// pieces cut through words, markers and UTF-8 sequences, which exercises stop strings matched
// across token boundaries and the callback's hold-back of incomplete text.
// Stop strings: generation ends at the earliest match; the context keeps the text up to the end of
// the stop string (bytes of the last piece past it are dropped, the piece still counts as a token),
// the returned text excludes it, as text_session specifies. A reply's pieces left over after
// max_tokens, a stop string, the callback or a full context are discarded.
// Observation: a session and all its forks report to one shared scripted_log (appends, prefilled
// tokens, generations and their options, forks). The log only records; it never changes what a
// session emits, so forks stay independent in everything that affects output. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "minigpt/core/error.hpp"
#include "minigpt/generate/text_session.hpp"

namespace minigpt {

struct scripted_reply {
    std::string text;                        // what the "model" generates
    std::string when_contains;               // "": any transcript
    std::optional<std::uint64_t> when_seed;  // only for a generate() whose sampling.seed is this

    scripted_reply(std::string text_, std::string when_contains_ = {}, std::optional<std::uint64_t> when_seed_ = {})
        : text(std::move(text_)), when_contains(std::move(when_contains_)), when_seed(when_seed_) {}
    scripted_reply(const char* text_) : scripted_reply(std::string(text_)) {}
};

struct scripted_log {
    std::size_t n_appends = 0;
    std::size_t n_prefill_tokens = 0;        // tokens fed by append(), over all sessions sharing the log
    std::size_t n_generates = 0;
    std::size_t n_generated_tokens = 0;
    std::size_t n_forks = 0;
    std::vector<std::string> appended;       // every append() text, in call order
    std::vector<generation_options> requests;  // every generate() call's options, in call order

    // How many append() calls contained `text`.
    std::size_t appends_containing(std::string_view text) const {
        return static_cast<std::size_t>(std::count_if(appended.begin(), appended.end(),
                                                      [&](const std::string& a) { return a.find(text) != std::string::npos; }));
    }
};

class scripted_session final : public text_session {
public:
    static constexpr std::size_t k_bytes_per_token = 4;

    explicit scripted_session(std::vector<scripted_reply> replies = {}, std::size_t n_ctx = 4096)
        : replies_(replies.begin(), replies.end()), n_ctx_(n_ctx), log_(std::make_shared<scripted_log>()) {}
    // So that `scripted_session s{{"first reply"}, {"second", "when this is in the transcript"}}` reads naturally.
    scripted_session(std::initializer_list<scripted_reply> replies, std::size_t n_ctx = 4096)
        : scripted_session(std::vector<scripted_reply>(replies), n_ctx) {}
    scripted_session(scripted_session&&) = default;

    void add_reply(scripted_reply reply) { replies_.push_back(std::move(reply)); }
    std::size_t n_pending_replies() const noexcept { return replies_.size(); }

    const scripted_log& log() const noexcept { return *log_; }

    static std::size_t tokens_in(std::string_view text) noexcept {
        return (text.size() + k_bytes_per_token - 1) / k_bytes_per_token;
    }

    void append(std::string_view text) override {
        const std::size_t n = tokens_in(text);
        if (n_tokens_ + n > n_ctx_)
            throw error("scripted_session: appending " + std::to_string(n) + " tokens to " + std::to_string(n_tokens_) +
                        " would exceed the context of " + std::to_string(n_ctx_));
        transcript_ += text;
        n_tokens_ += n;
        ++log_->n_appends;
        log_->n_prefill_tokens += n;
        log_->appended.emplace_back(text);
    }

    generation_result generate(const generation_options& options, const text_callback& on_text = {}) override {
        for (std::size_t i = 0; i < options.stop.size(); ++i)
            if (options.stop[i].empty()) throw error("scripted_session: stop string " + std::to_string(i) + " is empty");
        ++log_->n_generates;
        log_->requests.push_back(options);
        const std::string reply = take_reply(options);

        generation_result result;
        result.reason = stop_reason::end_of_generation;
        std::string generated;            // all piece bytes so far
        std::size_t emitted = 0;          // bytes of `generated` passed to the callback
        std::size_t keep = std::string::npos;  // bytes of `generated` that enter the context
        std::size_t longest_stop = 0;
        for (const auto& s : options.stop) longest_stop = std::max(longest_stop, s.size());

        for (std::size_t pos = 0; pos < reply.size(); pos += k_bytes_per_token) {
            if (options.max_tokens >= 0 && result.n_tokens >= options.max_tokens) {
                result.reason = stop_reason::max_tokens;
                break;
            }
            if (n_tokens_ >= n_ctx_) {
                result.reason = stop_reason::context_full;
                break;
            }
            const std::size_t before = generated.size();
            generated += reply.substr(pos, k_bytes_per_token);
            ++result.n_tokens;
            ++n_tokens_;
            // A match can only end inside the new piece, so it starts at most longest_stop-1 bytes earlier.
            const std::size_t from = before >= longest_stop ? before - (longest_stop - 1) : 0;
            std::size_t best = std::string::npos;
            for (const auto& s : options.stop) {
                const std::size_t at = generated.find(s, from);
                if (at != std::string::npos && at < best) {
                    best = at;
                    result.stop_string = s;
                }
            }
            if (best != std::string::npos) {
                result.reason = stop_reason::stop_string;
                keep = best + result.stop_string.size();
                generated.resize(keep);
                if (on_text && best > emitted) on_text(std::string_view(generated).substr(emitted, best - emitted));
                result.text = generated.substr(0, best);
                break;
            }
            if (on_text) {
                const std::size_t safe = safe_prefix(generated, options.stop);
                if (safe > emitted) {
                    const bool go_on = on_text(std::string_view(generated).substr(emitted, safe - emitted));
                    emitted = safe;
                    if (!go_on) {
                        result.reason = stop_reason::callback;
                        break;
                    }
                }
            }
        }
        if (result.reason != stop_reason::stop_string) {
            result.text = generated;
            if (on_text && result.reason != stop_reason::callback && generated.size() > emitted)
                on_text(std::string_view(generated).substr(emitted));
        }
        transcript_ += keep == std::string::npos ? generated : generated.substr(0, keep);
        log_->n_generated_tokens += static_cast<std::size_t>(result.n_tokens);
        return result;
    }

    std::unique_ptr<text_session> fork() const override {
        ++log_->n_forks;
        return std::unique_ptr<text_session>(new scripted_session(*this));
    }

    std::size_t n_tokens() const override { return n_tokens_; }
    std::size_t n_ctx() const override { return n_ctx_; }
    std::size_t count_tokens(std::string_view text) const override { return tokens_in(text); }
    std::string transcript() const override { return transcript_; }

private:
    scripted_session(const scripted_session&) = default;

    std::string take_reply(const generation_options& options) {
        for (auto it = replies_.begin(); it != replies_.end(); ++it) {
            if (!it->when_contains.empty() && transcript_.find(it->when_contains) == std::string::npos) continue;
            if (it->when_seed && *it->when_seed != options.sampling.seed) continue;
            std::string text = std::move(it->text);
            replies_.erase(it);
            return text;
        }
        const std::size_t tail = std::min<std::size_t>(transcript_.size(), 60);
        throw error("scripted_session: no scripted reply for generate() call " + std::to_string(log_->n_generates) + " (seed " +
                    std::to_string(options.sampling.seed) + ", " + std::to_string(replies_.size()) +
                    " replies queued; transcript ends with '" + transcript_.substr(transcript_.size() - tail) + "')");
    }

    // Bytes of `text` that can be shown: not a possible start of a stop string, and whole UTF-8.
    static std::size_t safe_prefix(const std::string& text, const std::vector<std::string>& stops) {
        std::size_t safe = text.size();
        for (const auto& s : stops)
            for (std::size_t len = std::min(s.size() - 1, text.size()); len > 0; --len)
                if (text.compare(text.size() - len, len, s, 0, len) == 0) {
                    safe = std::min(safe, text.size() - len);
                    break;
                }
        // Back off over an unfinished multi-byte sequence at the end.
        std::size_t start = safe;
        int back = 0;
        while (start > 0 && back < 4 && (static_cast<unsigned char>(text[start - 1]) & 0xC0) == 0x80) {
            --start;
            ++back;
        }
        if (start > 0) {
            const unsigned char lead = static_cast<unsigned char>(text[start - 1]);
            const std::size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            if (need > 1 && static_cast<std::size_t>(back) + 1 < need) safe = start - 1;
        }
        return safe;
    }

    std::deque<scripted_reply> replies_;
    std::string transcript_;
    std::size_t n_tokens_ = 0;
    std::size_t n_ctx_;
    std::shared_ptr<scripted_log> log_;
};

}  // namespace minigpt

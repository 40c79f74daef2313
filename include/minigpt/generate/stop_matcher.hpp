// minigpt::stop_matcher: finds stop strings in generated text as it streams in, token by token.
//
// A stop string can be split over several tokens ("</" then "s>"), so text that might be the
// start of one is held back until the next piece settles it. push() returns the text that is safe
// to show now; held-back text is released by a later push, or by flush() at the end. When a stop
// string completes, push() reports which one and returns the not yet emitted text before it; the
// stop string itself and anything after it in the same piece are dropped.
//
// The outcome does not depend on how the text is cut into pieces: the stop string reported is
// the one whose occurrence ends first in the text (at equal ends the longer one, then the first
// listed), exactly what feeding the text one byte at a time would give. Matching is on bytes;
// pieces that are whole UTF-8 sequences give emitted text that is whole UTF-8 too, because a held
// suffix starts where a stop string starts, which is never inside a character.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "minigpt/core/error.hpp"

namespace minigpt {

class stop_matcher {
public:
    struct result {
        std::string emit;      // text safe to show now
        bool stopped = false;  // a stop string completed; generation should end
        std::string matched;   // which stop string (when stopped)
    };

    explicit stop_matcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
        for (std::size_t i = 0; i < stops_.size(); ++i) {
            if (stops_[i].empty()) throw error("stop_matcher: stop string " + std::to_string(i) + " is empty");
            max_len_ = std::max(max_len_, stops_[i].size());
        }
    }

    const std::vector<std::string>& stops() const noexcept { return stops_; }
    bool stopped() const noexcept { return stopped_; }
    // Text received but not yet emitted: a possible start of a stop string.
    std::string_view held() const noexcept { return held_; }

    result push(std::string_view piece) {
        if (stopped_) throw error("stop_matcher: push after stop string '" + matched_ + "' matched");
        held_.append(piece);
        result r;
        // Every occurrence that ends in the new piece starts inside held_: the part of it before
        // the piece was a suffix that could start a stop string, and the longest such suffix was held.
        std::size_t best_start = std::string::npos, best_end = std::string::npos, best = 0;
        for (std::size_t i = 0; i < stops_.size(); ++i) {
            const std::size_t start = held_.find(stops_[i]);
            if (start == std::string::npos) continue;
            const std::size_t end = start + stops_[i].size();
            if (end < best_end || (end == best_end && start < best_start)) {
                best_start = start;
                best_end = end;
                best = i;
            }
        }
        if (best_start != std::string::npos) {
            r.emit = held_.substr(0, best_start);
            r.stopped = true;
            r.matched = stops_[best];
            matched_ = stops_[best];
            stopped_ = true;
            held_.clear();
            return r;
        }
        const std::size_t keep = partial_suffix();
        r.emit = held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return r;
    }

    // At the end of generation: the held-back text, which turned out not to start a stop string.
    std::string flush() {
        std::string out;
        out.swap(held_);
        return out;
    }

    // Ready for a new generation with the same stop strings.
    void reset() {
        held_.clear();
        matched_.clear();
        stopped_ = false;
    }

private:
    // Length of the longest suffix of held_ that is a proper prefix of some stop string.
    std::size_t partial_suffix() const {
        const std::size_t longest = std::min(held_.size(), max_len_ == 0 ? 0 : max_len_ - 1);
        for (std::size_t k = longest; k > 0; --k) {
            const std::string_view tail = std::string_view(held_).substr(held_.size() - k);
            for (const auto& s : stops_)
                if (s.size() > k && std::string_view(s).substr(0, k) == tail) return k;
        }
        return 0;
    }

    std::vector<std::string> stops_;
    std::size_t max_len_ = 0;
    std::string held_;
    std::string matched_;
    bool stopped_ = false;
};

}  // namespace minigpt

// A one-line progress report on stderr for long jobs (writing models and kNN stores,
// training an index, benchmarks).
//
// Only drawn when stderr is a terminal, so logs and test output stay clean; nothing is
// drawn for jobs that finish within `delay_seconds` (default 1 s); redrawn at most a few
// times a second so millions of small updates cost nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace minigpt {

class progress {
public:
    // `total` <= 0 means unknown (the count is shown without a percentage).
    progress(std::string label, std::int64_t total, bool enabled = ::isatty(2) != 0, double delay_seconds = 1.0)
        : label_(std::move(label)), total_(total), enabled_(enabled), start_(std::chrono::steady_clock::now()),
          last_(start_), delay_(delay_seconds) {}
    progress(const progress&) = delete;
    progress& operator=(const progress&) = delete;
    ~progress() { done(); }

    void update(std::int64_t n_done) {
        if (!enabled_) return;
        const auto now = std::chrono::steady_clock::now();
        if (!drawn_ && std::chrono::duration<double>(now - start_).count() < delay_) return;
        if (drawn_ && now - last_ < std::chrono::milliseconds(200)) return;
        last_ = now;
        drawn_ = true;
        if (total_ > 0)
            std::fprintf(stderr, "\r%s: %lld / %lld (%.0f%%)   ", label_.c_str(), static_cast<long long>(n_done),
                         static_cast<long long>(total_), 100.0 * static_cast<double>(n_done) / static_cast<double>(total_));
        else
            std::fprintf(stderr, "\r%s: %lld   ", label_.c_str(), static_cast<long long>(n_done));
        std::fflush(stderr);
    }

    // Ends the line (once), leaving the last count visible.
    void done() {
        if (enabled_ && drawn_) std::fprintf(stderr, "\n");
        drawn_ = false;
        enabled_ = false;
    }

private:
    std::string label_;
    std::int64_t total_;
    bool enabled_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point start_;
    std::chrono::steady_clock::time_point last_;
    double delay_;
};

}  // namespace minigpt

namespace minigpt::knn {
using minigpt::progress;
}  // namespace minigpt::knn

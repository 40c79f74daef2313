// The persistent worker threads behind minigpt::parallel_for (core/threads.hpp).
//
// A parallel loop used to be an OpenMP region: every call forked a team whose threads spun at the
// closing barrier, and on a machine busy with other processes a loop then waited for whichever
// thread the scheduler had parked (two competing processes on two cores made -t 2 decode ~100-800
// times slower than -t 1). Here the helpers are ordinary threads that live for the whole process:
// after a job a helper spins for a few tens of microseconds (the gap between two loops of one
// decode step), then sleeps on a futex (std::atomic::wait) and costs nothing. A caller posts a job
// to idle helpers and runs the work itself too; work is claimed piece by piece from shared
// counters, so a helper that has not started when the caller runs out of work is simply cancelled
// (the caller never waits for a thread the scheduler has not run), and the caller waits only for
// helpers in the middle of a piece. Every hand-over is an atomic acquire/release pair, which is
// what lets ThreadSanitizer follow the data from the caller to the helpers and back (it cannot see
// libgomp's barriers).
//
// The pool only grows (up to k_max_workers threads, created on first need) and is never destroyed:
// sleeping helpers cost no CPU, and a process exiting while they sleep is fine. A helper thread that
// cannot be created (resource limits) just means a smaller team; nothing here throws.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace minigpt::detail {

// One spin-wait step: tells the core we are spinning (frees the pipeline for a hyper-thread sibling,
// saves power). A compiler builtin, not an intrinsic header, so core/ stays free of SIMD headers.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

// Spins while still() holds, for at most about `ns` nanoseconds; true if still() stopped holding.
template <class Pred>
inline bool spin_while(Pred&& still, std::int64_t ns) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::nanoseconds(ns);
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (!still()) return true;
            cpu_relax();
        }
        if (clock::now() >= deadline) return !still();
    }
}

// How long an idle helper spins for its next job before it sleeps: longer than the serial work
// between two parallel loops of a decode step (norms, RoPE, sampling: microseconds), short enough
// that helpers of a process that stopped decoding leave the cores to others almost at once.
inline constexpr std::int64_t k_helper_spin_ns = 50'000;
// How long a caller spins for a helper that is in the middle of a piece before it sleeps.
inline constexpr std::int64_t k_caller_spin_ns = 20'000;
// Helper threads the process may ever start (a loop asking for more runs with a smaller team).
inline constexpr int k_max_workers = 256;

// Nesting depth of parallel loops on this thread: helpers are always inside one, a caller during
// its loop. A loop started at depth > 0 runs on its thread alone.
inline int& region_depth() {
    thread_local int depth = 0;
    return depth;
}

// One parallel loop as the helpers see it: body(ctx, t) is run by thread t of the team (the caller
// is t = 0). The body must share its work out by claiming pieces from atomics, so that any subset
// of the team (down to the caller alone) completes it. It lives on the caller's stack and is
// touched by a helper only between claiming its post and marking it done.
struct team_job {
    void (*body)(void* ctx, int t) noexcept;
    void* ctx;
};

class worker {
public:
    worker() = default;
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    // Starts the thread; false if the system refused one.
    bool start() {
        try {
            thread_ = std::thread([this] { loop(); });
            thread_.detach();  // the pool is never destroyed, see above
            return true;
        } catch (const std::system_error&) {
            return false;
        }
    }

    // Hands job to this (idle) helper as thread t of the team.
    void post(const team_job* job, int t) {
        job_ = job;
        index_ = t;
        if (state_.exchange(k_posted, std::memory_order_acq_rel) == k_sleeping) state_.notify_one();
    }

    // Returns once the helper is done with the posted job: at once if it has not started it (the job
    // is withdrawn), otherwise after it finishes, spinning briefly and then sleeping.
    void finish() {
        std::uint32_t s = k_posted;
        if (state_.compare_exchange_strong(s, k_idle, std::memory_order_acq_rel)) return;
        if (spin_while([&] { return state_.load(std::memory_order_acquire) == k_running; }, k_caller_spin_ns)) return;
        s = k_running;
        if (!state_.compare_exchange_strong(s, k_running_waited, std::memory_order_acq_rel)) return;  // just finished
        while (s == k_running || s == k_running_waited) {
            state_.wait(k_running_waited, std::memory_order_acquire);
            s = state_.load(std::memory_order_acquire);
        }
    }

private:
    enum : std::uint32_t { k_idle, k_sleeping, k_posted, k_running, k_running_waited };

    void loop() {
        region_depth() = 1;  // anything this thread runs is inside a parallel loop
        for (;;) {
            std::uint32_t s = state_.load(std::memory_order_acquire);
            if (s == k_posted) {
                if (!state_.compare_exchange_strong(s, k_running, std::memory_order_acq_rel)) continue;  // withdrawn
                job_->body(job_->ctx, index_);
                if (state_.exchange(k_idle, std::memory_order_acq_rel) == k_running_waited) state_.notify_all();
                continue;
            }
            if (spin_while([&] { return state_.load(std::memory_order_relaxed) == k_idle; }, k_helper_spin_ns)) continue;
            s = k_idle;
            if (state_.compare_exchange_strong(s, k_sleeping, std::memory_order_acq_rel))
                state_.wait(k_sleeping, std::memory_order_acquire);
        }
    }

    // k_idle -> (k_sleeping) -> k_posted -> k_running [-> k_running_waited] -> k_idle; a caller may
    // move k_posted back to k_idle. Only a post wakes a sleeping helper; only a waited-for helper
    // wakes its caller.
    alignas(64) std::atomic<std::uint32_t> state_{k_idle};
    const team_job* job_ = nullptr;  // written by the poster before the release in post()
    int index_ = 0;
    std::thread thread_;
};

// The idle helpers, handed out to loops and taken back when they end.
class worker_pool {
public:
    static worker_pool& instance() {
        static worker_pool* pool = new worker_pool;  // never destroyed: helpers may still be sleeping in it
        return *pool;
    }

    // Takes up to n idle helpers into out (starting threads if needed); returns how many.
    int acquire(worker** out, int n) {
        std::lock_guard<std::mutex> g(lock_);
        int got = 0;
        while (got < n && !idle_.empty()) {
            out[got++] = idle_.back();
            idle_.pop_back();
        }
        while (got < n && n_started_ < k_max_workers) {
            auto* w = new worker;
            if (!w->start()) {
                delete w;
                break;
            }
            ++n_started_;
            out[got++] = w;
        }
        return got;
    }

    void release(worker* const* ws, int n) {
        std::lock_guard<std::mutex> g(lock_);
        // Most recently used last, so a lone caller keeps getting the same helpers (warm caches).
        for (int i = n - 1; i >= 0; --i) idle_.push_back(ws[i]);
    }

    int started() {
        std::lock_guard<std::mutex> g(lock_);
        return n_started_;
    }

private:
    worker_pool() { idle_.reserve(k_max_workers); }
    std::mutex lock_;
    std::vector<worker*> idle_;
    int n_started_ = 0;
};

// Runs job on the calling thread (t = 0) and up to n_threads - 1 helpers; returns the number of
// helpers it was posted to (some may have been withdrawn before starting). The body is noexcept:
// nothing may be thrown out of a parallel loop's pieces (validate before the loop).
inline int run_team(const team_job& job, int n_threads) {
    constexpr int k_stack = 32;
    worker* stack_helpers[k_stack];
    std::vector<worker*> heap_helpers(n_threads - 1 > k_stack ? static_cast<std::size_t>(n_threads - 1) : 0);
    worker** helpers = n_threads - 1 > k_stack ? heap_helpers.data() : stack_helpers;
    const int got = worker_pool::instance().acquire(helpers, n_threads - 1);
    for (int i = 0; i < got; ++i) helpers[i]->post(&job, i + 1);
    ++region_depth();
    job.body(job.ctx, 0);
    --region_depth();
    for (int i = 0; i < got; ++i) helpers[i]->finish();
    worker_pool::instance().release(helpers, got);
    return got;
}

}  // namespace minigpt::detail

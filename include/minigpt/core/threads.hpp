// Threading: the one place in minigpt that starts threads.
//
// Parallel loops go through parallel_for / parallel_for_balanced, which run on the calling
// thread plus helpers from a persistent worker pool (core/worker_pool.hpp: helpers spin
// briefly after a loop, then sleep; no OpenMP). The thread count is chosen per call
// (n_threads <= 0 means the default: the number of physical cores). A parallel_for
// called from inside another parallel region runs on the calling thread only. Threads
// the caller started itself share one process-wide budget (max_threads(), default the
// physical cores): every thread running a minigpt loop counts against it, and a loop
// only adds helper threads while the budget has room, so four caller threads decoding
// at once on two cores run with no helpers instead of eight threads on two cores.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "minigpt/core/worker_pool.hpp"

namespace minigpt {

// Physical cores (hyper-threads counted once), read from Linux sysfs; falls back to
// std::thread::hardware_concurrency().
inline int physical_cores() {
    static const int n = [] {
        std::set<std::pair<std::string, std::string>> cores;
        for (int cpu = 0; cpu < 4096; ++cpu) {
            const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
            std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
            if (!pkg || !core) {
                if (cpu > 0) break;
                continue;
            }
            std::string p, c;
            pkg >> p;
            core >> c;
            cores.emplace(p, c);
        }
        int hw = static_cast<int>(std::thread::hardware_concurrency());
        int found = static_cast<int>(cores.size());
        if (found == 0) return std::max(1, hw);
        return hw > 0 ? std::min(found, hw) : found;
    }();
    return n;
}

inline int resolve_threads(int n_threads) { return n_threads > 0 ? n_threads : physical_cores(); }

namespace detail {
inline std::atomic<int>& thread_limit() {
    static std::atomic<int> limit{0};  // 0: physical_cores()
    return limit;
}
// Threads currently running minigpt loops: callers plus the helpers started for them.
inline std::atomic<int>& threads_in_use() {
    static std::atomic<int> n{0};
    return n;
}
}  // namespace detail

// Process-wide cap on threads running minigpt loops at once (callers included); a loop
// asking for more threads than the cap is still granted them when it runs alone.
inline int max_threads() {
    const int limit = detail::thread_limit().load(std::memory_order_relaxed);
    return limit > 0 ? limit : physical_cores();
}
inline void set_max_threads(int n) { detail::thread_limit().store(std::max(0, n), std::memory_order_relaxed); }

// True when called from inside a parallel loop (on its caller or one of its helpers).
inline bool in_parallel_region() { return detail::region_depth() > 0; }

// The team of one parallel loop, reserved against the budget for the loop's lifetime: the
// calling thread always runs, and size() threads in all (caller included) run the loop. A
// team of one (nothing to share, inside a parallel region, or no room left) reserves only
// the caller and means "run fn on the calling thread".
class thread_team {
public:
    explicit thread_team(int wanted) {
        if (wanted <= 1 || in_parallel_region()) return;
        auto& in_use = detail::threads_in_use();
        const int before = in_use.fetch_add(1, std::memory_order_relaxed);
        reserved_ = 1;
        const int limit = std::max(max_threads(), before == 0 ? wanted : 0);
        int extra = std::max(0, std::min(wanted - 1, limit - before - 1));
        if (extra > 0) {
            const int now = in_use.fetch_add(extra, std::memory_order_relaxed) + extra;
            // Another caller reserved at the same time: hand back what overshoots the cap.
            const int over = std::min(extra, std::max(0, now - limit));
            if (over > 0) in_use.fetch_sub(over, std::memory_order_relaxed);
            extra -= over;
        }
        reserved_ += extra;
        size_ = reserved_;
    }
    ~thread_team() {
        if (reserved_ > 0) detail::threads_in_use().fetch_sub(reserved_, std::memory_order_relaxed);
    }
    thread_team(const thread_team&) = delete;
    thread_team& operator=(const thread_team&) = delete;
    int size() const { return size_; }

private:
    int reserved_ = 0;
    int size_ = 1;
};

// Run fn(begin, end) over [0, n) split into contiguous chunks, one per thread of the team.
// `grain` is the smallest chunk worth a thread (chunks are multiples of it). Each chunk is
// claimed by whichever thread gets to it first, so a helper the scheduler has not run yet
// never holds the loop up: the caller runs its chunk too. fn must not throw.
template <class Fn>
void parallel_for(std::int64_t n, int n_threads, Fn&& fn, std::int64_t grain = 1) {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(1, grain);
    const std::int64_t n_grains = (n + grain - 1) / grain;
    const thread_team team(static_cast<int>(std::min<std::int64_t>(resolve_threads(n_threads), n_grains)));
    if (team.size() <= 1) {
        fn(std::int64_t{0}, n);
        return;
    }
    struct loop {
        std::int64_t n, per, n_chunks;
        std::remove_reference_t<Fn>* fn;
        alignas(64) std::atomic<std::int64_t> next{0};
    };
    const int nt = team.size();
    loop l{n, ((n_grains + nt - 1) / nt) * grain, nt, &fn};
    const detail::team_job job{[](void* ctx, int) noexcept {
                                   auto& lp = *static_cast<loop*>(ctx);
                                   for (;;) {
                                       const std::int64_t c = lp.next.fetch_add(1, std::memory_order_relaxed);
                                       if (c >= lp.n_chunks) return;
                                       const std::int64_t b = std::min(lp.n, c * lp.per), e = std::min(lp.n, (c + 1) * lp.per);
                                       if (b < e) (*lp.fn)(b, e);
                                   }
                               },
                               &l};
    detail::run_team(job, nt);
}

// As parallel_for, for loops whose threads may run at unequal speeds (memory-bound work on a
// shared machine, where a GEMV split in equal halves left one core idle ~10% of the time): each
// thread's contiguous share is cut into pieces of `chunk` indices, run in order from the front, and
// a thread that finishes early takes half of what another has left, from the back, and runs it in
// order. Both threads thus keep reading sequential streams: taking single pieces from the front of
// the other's share instead made the two leapfrog through it piece by piece, which cost the
// hardware prefetchers ~5% of a 2-thread GEMV (measured against a static split). fn(begin, end) may
// be called several times per thread, with begin a multiple of `chunk` and end - begin <= chunk.
// fn must not throw.
template <class Fn>
void parallel_for_balanced(std::int64_t n, int n_threads, Fn&& fn, std::int64_t chunk) {
    if (n <= 0) return;
    chunk = std::max<std::int64_t>(1, chunk);
    // Piece indices are packed two to a 64-bit word below: keep them under 2^31.
    chunk = std::max(chunk, (n + (std::int64_t(1) << 31) - 1) >> 31);
    const std::int64_t n_chunks = (n + chunk - 1) / chunk;
    const thread_team team(static_cast<int>(std::min<std::int64_t>(resolve_threads(n_threads), n_chunks)));
    if (team.size() <= 1) {
        fn(std::int64_t{0}, n);
        return;
    }
    const int nt = team.size();
    // A share's unclaimed pieces [front, back) in one word, so that the owner taking from the front
    // and a helper taking from the back never claim the same piece; one cache line per share.
    struct alignas(64) share {
        std::atomic<std::uint64_t> range{0};
    };
    const auto pack = [](std::uint64_t front, std::uint64_t back) { return front << 32 | back; };
    constexpr int k_stack_shares = 16;
    share stack_shares[k_stack_shares];
    std::vector<share> heap_shares(nt > k_stack_shares ? static_cast<std::size_t>(nt) : 0);
    share* shares = nt > k_stack_shares ? heap_shares.data() : stack_shares;
    const std::int64_t per = (n_chunks + nt - 1) / nt;
    for (int t = 0; t < nt; ++t)
        shares[t].range.store(pack(static_cast<std::uint64_t>(std::min(n_chunks, t * per)),
                                   static_cast<std::uint64_t>(std::min(n_chunks, (t + 1) * per))),
                              std::memory_order_relaxed);
    struct loop {
        std::int64_t n, chunk;
        int nt;
        share* shares;
        std::remove_reference_t<Fn>* fn;
    };
    loop l{n, chunk, nt, shares, &fn};
    const detail::team_job job{[](void* ctx, int t) noexcept {
                                   const loop& lp = *static_cast<const loop*>(ctx);
                                   auto run = [&](std::uint64_t c) {
                                       const auto b = static_cast<std::int64_t>(c) * lp.chunk;
                                       (*lp.fn)(b, std::min(lp.n, b + lp.chunk));
                                   };
                                   // Every thread visits every share, so the work is done whichever
                                   // threads of the team actually run.
                                   for (int k = 0; k < lp.nt; ++k) {
                                       std::atomic<std::uint64_t>& range = lp.shares[(t + k) % lp.nt].range;
                                       std::uint64_t v = range.load(std::memory_order_relaxed);
                                       for (;;) {
                                           const std::uint64_t front = v >> 32, back = v & 0xffffffffu;
                                           if (front >= back) break;
                                           if (k == 0) {  // own share: the next piece from the front
                                               if (range.compare_exchange_weak(v, (front + 1) << 32 | back, std::memory_order_relaxed)) {
                                                   run(front);
                                                   v = range.load(std::memory_order_relaxed);
                                               }
                                           } else {  // another's: half of what is left, from the back
                                               const std::uint64_t take = std::max<std::uint64_t>(1, (back - front) / 2);
                                               if (range.compare_exchange_weak(v, front << 32 | (back - take), std::memory_order_relaxed)) {
                                                   for (std::uint64_t c = back - take; c < back; ++c) run(c);
                                                   v = range.load(std::memory_order_relaxed);
                                               }
                                           }
                                       }
                                   }
                               },
                               &l};
    detail::run_team(job, nt);
}

}  // namespace minigpt

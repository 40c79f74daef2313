// Threading: the one place in minigpt that starts threads.
//
// Parallel loops go through parallel_for, which uses OpenMP when the library is
// built with it and runs serially otherwise. The thread count is chosen per call
// (n_threads <= 0 means the default: the number of physical cores). A parallel_for
// called from inside another parallel region, or from a thread the caller started
// while another minigpt loop runs, runs on the calling thread only, so minigpt never
// multiplies the caller's threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#if defined(_OPENMP)
#include <omp.h>
#endif

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

// True when called from inside an active parallel region.
inline bool in_parallel_region() {
#if defined(_OPENMP)
    return omp_in_parallel() != 0;
#else
    return false;
#endif
}

// Run fn(begin, end) over [0, n) split into contiguous chunks, one per thread.
// `grain` is the smallest chunk worth a thread (chunks are multiples of it).
template <class Fn>
void parallel_for(std::int64_t n, int n_threads, Fn&& fn, std::int64_t grain = 1) {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(1, grain);
    const std::int64_t n_grains = (n + grain - 1) / grain;
    int nt = static_cast<int>(std::min<std::int64_t>(resolve_threads(n_threads), n_grains));
    if (nt <= 1 || in_parallel_region()) {
        fn(std::int64_t{0}, n);
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        const int team = omp_get_num_threads();
        const std::int64_t per = (n_grains + team - 1) / team;
        const std::int64_t b = std::min(n, t * per * grain);
        const std::int64_t e = std::min(n, (t + 1) * per * grain);
        if (b < e) fn(b, e);
    }
#else
    fn(std::int64_t{0}, n);
#endif
}

}  // namespace minigpt

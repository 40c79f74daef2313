// Software prefetch requests that survive the optimiser.
//
// GCC 12 at -O2 and -O3 compiled the paged-attention kernel's __builtin_prefetch requests (nested
// loops over rows and lines, trip counts known only at run time) to nothing, which only the
// disassembly showed; with -fno-finite-loops they stayed, so the loops were removed as having no
// effect. An `asm volatile` prefetch is an effect the compiler must keep, so on x86-64 with GCC or
// clang the requests are written that way; elsewhere they fall back to __builtin_prefetch. The
// ctest prefetch_emitted (tests/prefetch/) checks that the kernels keep their requests.
//
// prefetch_l2 asks for the line holding p into L2 (prefetcht1): streams that are read a few
// thousand cycles later, where an L1 request would tie up one of the core's few L1 miss buffers
// per line for the whole memory latency (docs/benchmarks.md has the measurements).
#pragma once

namespace minigpt::simd {

inline void prefetch_l2(const void* p) noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    asm volatile("prefetcht1 %0" : : "m"(*static_cast<const char*>(p)));
#elif defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 2);
#else
    (void)p;
#endif
}

}  // namespace minigpt::simd

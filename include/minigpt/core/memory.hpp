// minigpt::heap_buffer: the one place minigpt allocates tensor-sized memory.
//
// Decoding streams every weight once per token, so the cost of a weight byte is a
// DRAM read plus, with 4 KiB pages, a TLB miss every 4 KiB; the page walks cost ~15%
// of the read bandwidth on the machines we measure (docs/benchmarks.md). Buffers of
// at least 2 MiB (repacked weights, KV caches, scratch) therefore come from an
// anonymous mapping aligned to 2 MiB with MADV_HUGEPAGE, so a kernel with transparent
// huge pages in "madvise" or "always" mode backs them with 2 MiB pages. Such memory is
// zero on first touch at no cost, and the threads that first write it take its page
// faults in parallel. Smaller buffers come from aligned_alloc. Both are 64-byte aligned.
#pragma once

#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define MINIGPT_HAVE_MMAP 1
#endif

#include "minigpt/core/error.hpp"

namespace minigpt {

inline constexpr std::size_t k_huge_page_bytes = std::size_t(2) << 20;

enum class fill { zero, none };

namespace detail {

inline std::shared_ptr<std::byte> small_buffer(std::size_t n_bytes, fill f) {
    const std::size_t rounded = (n_bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (!p) throw error("out of memory allocating " + std::to_string(n_bytes) + " bytes");
    if (f == fill::zero) std::memset(p, 0, rounded);
    return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
}

}  // namespace detail

#if defined(MINIGPT_HAVE_MMAP)
namespace detail {

// n_bytes of fresh anonymous memory with protection `prot` starting on a 2 MiB boundary, or nullptr
// when mmap fails: over-reserve by one huge page, then give back both ends. Only aligned 2 MiB ranges
// can be backed by a huge page; io::mapped_file reserves a file's range this way too (PROT_NONE,
// then maps the file over it).
inline void* map_huge_aligned(std::size_t n_bytes, int prot) noexcept {
    constexpr std::size_t H = k_huge_page_bytes;
    if (n_bytes > SIZE_MAX - H) return nullptr;
    // A PROT_NONE reservation commits no memory (MAP_NORESERVE); usable memory is accounted as usual.
    void* r = ::mmap(nullptr, n_bytes + H, prot, MAP_PRIVATE | MAP_ANONYMOUS | (prot == PROT_NONE ? MAP_NORESERVE : 0), -1, 0);
    if (r == MAP_FAILED) return nullptr;
    const auto begin = reinterpret_cast<std::uintptr_t>(r);
    const std::uintptr_t aligned = (begin + H - 1) / H * H, end = begin + n_bytes + H;
    if (aligned > begin) ::munmap(r, aligned - begin);
    if (end > aligned + n_bytes) ::munmap(reinterpret_cast<void*>(aligned + n_bytes), end - (aligned + n_bytes));
    return reinterpret_cast<void*>(aligned);
}

}  // namespace detail
#endif

// Bytes of memory the kernel could hand out now without swapping (MemAvailable of /proc/meminfo,
// which counts reclaimable page cache), or 0 when unknown.
inline std::uint64_t available_memory_bytes() {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kib = 0;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
    std::fclose(f);
    return kib > UINT64_MAX / 1024 ? UINT64_MAX : static_cast<std::uint64_t>(kib) * 1024;
}

// n_bytes of 64-byte aligned memory, zero-filled when asked (large buffers are zero anyway).
inline std::shared_ptr<std::byte> heap_buffer(std::size_t n_bytes, fill f = fill::zero) {
#if defined(MINIGPT_HAVE_MMAP)
    constexpr std::size_t H = k_huge_page_bytes;
    if (n_bytes >= H && n_bytes <= SIZE_MAX - 2 * H) {
        const std::size_t n_mapped = (n_bytes + H - 1) / H * H;
        auto* p = static_cast<std::byte*>(detail::map_huge_aligned(n_mapped, PROT_READ | PROT_WRITE));
        if (!p) throw error("out of memory mapping " + std::to_string(n_bytes) + " bytes");
#ifdef MADV_HUGEPAGE
        ::madvise(p, n_mapped, MADV_HUGEPAGE);  // advisory: without THP the memory is just 4 KiB pages
#endif
        return std::shared_ptr<std::byte>(p, [n_mapped](std::byte* q) { ::munmap(q, n_mapped); });
    }
#endif
    return detail::small_buffer(n_bytes, f);
}

}  // namespace minigpt

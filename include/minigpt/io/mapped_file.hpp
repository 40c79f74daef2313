// minigpt::io::mapped_file: a read-only memory map of a whole file.
//
// Model files are gigabytes; mapping them makes "open" cost a few system calls and
// lets the kernel page weights in on first touch and share them between processes.
// The map is MAP_PRIVATE and PROT_READ, so nothing minigpt does can write to the file.
// An empty file is legal (size 0, data() points at a dummy byte) because mmap
// refuses zero-length maps. Every failure throws io_error naming the path and the
// errno text. Large files are mapped at a 2 MiB-aligned address with MADV_HUGEPAGE, so
// a kernel whose page cache holds large folios (Linux 6.x on ext4, xfs, tmpfs) maps
// the weights with 2 MiB page-table entries: a decode step streams every weight once,
// and with 4 KiB pages the TLB misses cost ~15% of the read bandwidth (docs/benchmarks.md).
// Caveat inherent to mmap: if another process truncates the file while
// it is mapped, touching the lost pages raises SIGBUS; minigpt cannot guard that.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "minigpt/core/error.hpp"
#include "minigpt/core/memory.hpp"
#include "minigpt/core/progress.hpp"

namespace minigpt::io {

// How the caller expects to touch the mapping; forwarded to madvise.
enum class access_hint {
    normal,      // kernel default read-ahead
    sequential,  // one front-to-back pass (conversion, checksums): aggressive read-ahead
    random,      // scattered lookups (kNN stores, sparse embeddings): no read-ahead
    willneed,    // start reading the whole file in the background now
    populate,    // read the whole file in now, front to back, on the calling thread (model weights)
};

class mapped_file {
public:
    static std::shared_ptr<const mapped_file> open(const std::string& path, access_hint hint = access_hint::normal) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw_errno(path, "cannot open");
        // The descriptor is only needed until mmap returns; the mapping keeps the file alive.
        struct fd_closer {
            int fd;
            ~fd_closer() { ::close(fd); }
        } closer{fd};
        struct stat st {};
        if (::fstat(fd, &st) != 0) throw_errno(path, "cannot stat");
        if (!S_ISREG(st.st_mode)) throw io_error(path + ": not a regular file");
        std::shared_ptr<mapped_file> f(new mapped_file());
        f->path_ = path;
        f->size_ = static_cast<std::uint64_t>(st.st_size);
        if (f->size_ == 0) return f;
        if (f->size_ > static_cast<std::uint64_t>(SIZE_MAX)) throw io_error(path + ": file too large to map");
        const auto n_bytes = static_cast<std::size_t>(f->size_);
        void* const at = huge_aligned_address(n_bytes);
        void* p = ::mmap(at, n_bytes, PROT_READ, MAP_PRIVATE | (at ? MAP_FIXED : 0), fd, 0);
        if (p == MAP_FAILED && at) ::munmap(at, n_bytes);
        if (p == MAP_FAILED) throw_errno(path, "cannot mmap " + std::to_string(f->size_) + " bytes");
        f->map_ = p;
#ifdef MADV_HUGEPAGE
        // Before any page is touched, so read-ahead allocates whole 2 MiB folios.
        if (n_bytes >= huge_page) ::madvise(p, n_bytes, MADV_HUGEPAGE);
#endif
        f->advise(hint);
        return f;
    }

    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    mapped_file(mapped_file&& o) noexcept : path_(std::move(o.path_)), map_(o.map_), size_(o.size_) {
        o.map_ = nullptr;
        o.size_ = 0;
    }
    mapped_file& operator=(mapped_file&& o) noexcept {
        if (this != &o) {
            release();
            path_ = std::move(o.path_);
            map_ = o.map_;
            size_ = o.size_;
            o.map_ = nullptr;
            o.size_ = 0;
        }
        return *this;
    }
    ~mapped_file() { release(); }

    const std::byte* data() const noexcept { return map_ ? static_cast<const std::byte*>(map_) : &empty_byte(); }
    std::uint64_t size() const noexcept { return size_; }
    const std::string& path() const noexcept { return path_; }

    // Hints are advisory: a kernel that rejects one leaves the mapping fully usable, so failures are ignored.
    void advise(access_hint hint) const noexcept { advise(hint, 0, size_); }
    void advise(access_hint hint, std::uint64_t offset, std::uint64_t length) const noexcept {
        if (!map_ || offset >= size_) return;
        if (length > size_ - offset) length = size_ - offset;
        // madvise needs a page-aligned start; widen the range down to the page boundary.
        const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        const std::uint64_t start = offset / page * page;
        int advice = MADV_NORMAL;
        switch (hint) {
            case access_hint::normal: advice = MADV_NORMAL; break;
            case access_hint::sequential: advice = MADV_SEQUENTIAL; break;
            case access_hint::random: advice = MADV_RANDOM; break;
            case access_hint::willneed: advice = MADV_WILLNEED; break;
            case access_hint::populate: break;
        }
        if (hint == access_hint::populate) return populate(start, length + (offset - start));
        ::madvise(static_cast<char*>(map_) + start, static_cast<std::size_t>(length + (offset - start)), advice);
    }

private:
    mapped_file() = default;

    // Faults [start, start + length) in front to back (start page-aligned), 32 MiB at a time, with a
    // progress line on a terminal. Read-faults in one sequential pass let read-ahead fill the page
    // cache with whole 2 MiB folios (the mapping is MADV_HUGEPAGE), which the map then uses as huge
    // pages; left to the first decode, two threads faulting different parts of the file at once
    // left ~10% of GPT-2 124M's weights in 4 KiB pages. MADV_POPULATE_READ (Linux 5.14) does the
    // faulting without touching the bytes; older kernels get one read per page instead.
    void populate(std::uint64_t start, std::uint64_t length) const noexcept {
        constexpr std::uint64_t step = std::uint64_t(32) << 20;
        const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        progress bar("loading " + path_, static_cast<std::int64_t>(length >> 20));
        auto* base = static_cast<const volatile unsigned char*>(map_) + start;
        for (std::uint64_t done = 0; done < length; done += step) {
            const std::uint64_t n = std::min(step, length - done);
            bool faulted = false;
#ifdef MADV_POPULATE_READ
            faulted = ::madvise(const_cast<unsigned char*>(base + done), static_cast<std::size_t>(n), MADV_POPULATE_READ) == 0;
#endif
            if (!faulted) {
                unsigned sum = 0;
                for (std::uint64_t i = 0; i < n; i += page) sum += base[done + i];
                (void)sum;
            }
            bar.update(static_cast<std::int64_t>((done + n) >> 20));
        }
    }

    static constexpr std::size_t huge_page = k_huge_page_bytes;

    // Where to map a file of n_bytes: a reserved range on a huge-page boundary (mmap MAP_FIXED then
    // replaces it with the file; file offset 0 at an aligned address keeps file and virtual offsets
    // congruent modulo 2 MiB, which a huge page-table entry needs), or nullptr (let the kernel
    // choose) for small files or when the reservation fails.
    static void* huge_aligned_address(std::size_t n_bytes) noexcept {
        return n_bytes < huge_page ? nullptr : minigpt::detail::map_huge_aligned(n_bytes, PROT_NONE);
    }

    [[noreturn]] static void throw_errno(const std::string& path, const std::string& what) {
        const int e = errno;
        throw io_error(path + ": " + what + ": " + std::strerror(e));
    }
    static const std::byte& empty_byte() noexcept {
        static const std::byte b{0};
        return b;
    }
    void release() noexcept {
        if (map_) ::munmap(map_, static_cast<std::size_t>(size_));
        map_ = nullptr;
    }

    std::string path_;
    void* map_ = nullptr;
    std::uint64_t size_ = 0;
};

}  // namespace minigpt::io

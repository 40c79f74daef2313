// Shared pieces of the libFuzzer harnesses in tests/fuzz (built with -DMINIGPT_FUZZ=ON, clang only).
//
// What a harness accepts as correct: the code under test returns normally, or throws minigpt::error
// (or a subclass) for input it rejects. Anything else is a finding: another exception type escaping
// (reported with its message, then abort()), a crash or sanitizer report, a leak, an allocation over
// the -malloc_limit_mb / -rss_limit_mb given to the fuzzer (2 GiB in scripts/test-sanitizers), or a
// broken documented property a harness checks (fuzz_check).
//
// Every harness is one fuzz target, MINIGPT_FUZZ_TARGET(name) { ... data, size ... }. They are all
// linked into one executable (the library is compiled twice with the sanitizers instead of once per
// harness), and fuzz_main.cpp runs the target named by the link it was started through
// (fuzz/fuzz_<name>) or by MINIGPT_FUZZ_TARGET=<name>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include <unistd.h>

#include "minigpt/core/error.hpp"

namespace minigpt::fuzz {

using target_fn = int (*)(const std::uint8_t* data, std::size_t size);
struct target {
    const char* name;
    target_fn run;
};
inline std::vector<target>& targets() {
    static std::vector<target> all;
    return all;
}
struct register_target {
    register_target(const char* name, target_fn run) { targets().push_back({name, run}); }
};

#define MINIGPT_FUZZ_TARGET(name)                                                                          \
    static int minigpt_fuzz_##name(const std::uint8_t* data, std::size_t size);                            \
    static const ::minigpt::fuzz::register_target minigpt_fuzz_register_##name(#name, minigpt_fuzz_##name); \
    static int minigpt_fuzz_##name(const std::uint8_t* data, std::size_t size)

// Runs fn; minigpt::error is the expected way to reject bad input, any other exception aborts.
template <class Fn>
inline void guarded(const char* what, Fn&& fn) {
    try {
        fn();
    } catch (const minigpt::error&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "FUZZ FINDING (%s): %s escaped instead of minigpt::error: %s\n", what, typeid(e).name(), e.what());
        std::abort();
    } catch (...) {
        std::fprintf(stderr, "FUZZ FINDING (%s): a non-std exception escaped\n", what);
        std::abort();
    }
}

// A property the harness checks beyond "no crash" (documented behaviour of the API under test).
inline void fuzz_check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "FUZZ FINDING: %s\n", what);
        std::abort();
    }
}

inline std::shared_ptr<const std::vector<std::byte>> bytes_of(const std::uint8_t* data, std::size_t size) {
    auto v = std::make_shared<std::vector<std::byte>>(size);
    if (size > 0) std::memcpy(v->data(), data, size);
    return v;
}

// The files SQLite may create beside a database at `path`.
inline void remove_sqlite_companions(const std::string& path) {
    for (const char* companion : {"-wal", "-shm", "-journal"}) std::remove((path + companion).c_str());
}
// A database file and its companions.
inline void remove_sqlite_files(const std::string& path) {
    std::remove(path.c_str());
    remove_sqlite_companions(path);
}

// A per-process scratch file name under /tmp, removed (with SQLite's companions, for the ones that
// are databases) when the fuzzer exits; they had been left behind by every CI run.
inline std::string scratch_path(const char* suffix) {
    struct registry {
        std::vector<std::string> paths;
        ~registry() {
            for (const auto& p : paths) remove_sqlite_files(p);
        }
    };
    static registry files;
    std::string path = "/tmp/minigpt-fuzz-" + std::to_string(::getpid()) + suffix;
    for (const auto& p : files.paths)
        if (p == path) return path;
    files.paths.push_back(path);
    return path;
}

// For readers that only take a path: the input written to a per-process scratch file.
inline const std::string& write_scratch(const std::uint8_t* data, std::size_t size, const char* suffix) {
    static std::string path;
    path = scratch_path(suffix);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    return path;
}

}  // namespace minigpt::fuzz

// The libFuzzer entry points of the one fuzz executable: LLVMFuzzerInitialize picks the harness
// (fuzz_common.hpp's MINIGPT_FUZZ_TARGET) named by MINIGPT_FUZZ_TARGET, else by the name the program
// was started as (fuzz_<name>, the links tests/fuzz/CMakeLists.txt makes), and every input goes to it.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_common.hpp"

namespace {
minigpt::fuzz::target_fn g_target = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
    std::string name;
    if (const char* env = std::getenv("MINIGPT_FUZZ_TARGET")) {
        name = env;
    } else if (*argc > 0) {
        name = (*argv)[0];
        name = name.substr(name.find_last_of('/') + 1);
        if (name.rfind("fuzz_", 0) == 0) name = name.substr(5);
    }
    for (const auto& t : minigpt::fuzz::targets())
        if (name == t.name) g_target = t.run;
    if (g_target == nullptr) {
        std::fprintf(stderr, "minigpt fuzz: no harness named '%s'; start the program as fuzz_<name> or set MINIGPT_FUZZ_TARGET to one of:",
                     name.c_str());
        for (const auto& t : minigpt::fuzz::targets()) std::fprintf(stderr, " %s", t.name);
        std::fprintf(stderr, "\n");
        std::exit(2);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return g_target(data, size); }

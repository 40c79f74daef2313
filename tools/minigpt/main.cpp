// `minigpt` entry point: dispatches argv[1] to a registered subcommand.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "command.hpp"
#include "minigpt/core/error.hpp"
#include "minigpt/version.hpp"

int main(int argc, char** argv) {
    using namespace minigpt::tool;
    auto& cmds = registry();
    std::sort(cmds.begin(), cmds.end(), [](const command& a, const command& b) { return a.name < b.name; });
    auto print_usage = [&] {
        std::fprintf(stderr, "usage: minigpt COMMAND [options]   (minigpt COMMAND --help for its options; minigpt --version)\n\ncommands:\n");
        for (const auto& c : cmds) std::fprintf(stderr, "  %-14s %s\n", c.name.c_str(), c.summary.c_str());
    };
    auto print_version = [] {
        std::printf("minigpt %s\n", MINIGPT_VERSION_STRING);
#if defined(__clang__)
        std::printf("built with clang %d.%d.%d", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
        std::printf("built with GCC %d.%d.%d", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#endif
#if defined(__AVX512F__)
        std::printf(" for AVX-512\n");
#elif defined(__AVX2__)
        std::printf(" for AVX2\n");
#else
        std::printf(" for a baseline CPU (AVX2 kernels chosen at run time)\n");
#endif
    };
    if (argc >= 2 && std::string(argv[1]) == "--version") {
        print_version();
        return 0;
    }
    if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
        print_usage();
        return argc < 2 ? 1 : 0;
    }
    const std::string name = argv[1];
    auto it = std::find_if(cmds.begin(), cmds.end(), [&](const command& c) { return c.name == name; });
    if (it == cmds.end()) {
        std::fprintf(stderr, "minigpt: unknown command '%s'\n", name.c_str());
        print_usage();
        return 1;
    }
    try {
        return it->run(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const version_request&) {
        print_version();
        return 0;
    } catch (const usage_error& e) {
        std::fprintf(stderr, "minigpt %s: %s (see minigpt %s --help)\n", name.c_str(), e.what(), name.c_str());
        return 2;
    } catch (const minigpt::error& e) {
        std::fprintf(stderr, "minigpt %s: error: %s\n", name.c_str(), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "minigpt %s: unexpected error: %s\n", name.c_str(), e.what());
        return 1;
    }
}

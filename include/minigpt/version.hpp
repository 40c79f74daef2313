// minigpt's version, for programs that need to check or print it.
//
// scripts/release VERSION stamps this file, and CMakeLists.txt reads its project version from it, so
// the macro, the CMake package version (minigptConfigVersion.cmake) and ports/minigpt/vcpkg.json
// always agree (tests/package_test.cpp checks them).
#pragma once

#define MINIGPT_VERSION_MAJOR 0
#define MINIGPT_VERSION_MINOR 1
#define MINIGPT_VERSION_PATCH 0
#define MINIGPT_VERSION_STRING "0.1.0"
// One comparable number: major * 10000 + minor * 100 + patch (0.1.0 -> 100).
#define MINIGPT_VERSION (MINIGPT_VERSION_MAJOR * 10000 + MINIGPT_VERSION_MINOR * 100 + MINIGPT_VERSION_PATCH)

namespace minigpt {
inline constexpr const char* version_string = MINIGPT_VERSION_STRING;
}  // namespace minigpt

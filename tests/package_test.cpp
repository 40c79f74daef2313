// The package's version and port files agree (issue 15): the version macro, the CMake project
// version, ports/minigpt/vcpkg.json, the port's features and CMake components, and what
// scripts/release writes (run on a copy of the tree, its tarball's SHA512 recomputed here).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "minigpt/version.hpp"
#include "test_data.hpp"

namespace fs = std::filesystem;
using minigpt::test::read_text;
using minigpt::test::run;

namespace {

const fs::path k_source = MINIGPT_SOURCE_DIR;

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_text(p.string())); }

std::string sha512_of(const fs::path& file) {
    std::string out;
    if (run("sha512sum '" + file.string() + "'", &out) != 0) return {};
    return out.substr(0, out.find(' '));
}

}  // namespace

TEST(Package, VersionMacroCMakeAndVcpkgAgree) {
    const std::string v = MINIGPT_VERSION_STRING;
    EXPECT_EQ(v, std::to_string(MINIGPT_VERSION_MAJOR) + "." + std::to_string(MINIGPT_VERSION_MINOR) + "." +
                     std::to_string(MINIGPT_VERSION_PATCH));
    EXPECT_EQ(MINIGPT_VERSION, MINIGPT_VERSION_MAJOR * 10000 + MINIGPT_VERSION_MINOR * 100 + MINIGPT_VERSION_PATCH);
    EXPECT_EQ(v, MINIGPT_PROJECT_VERSION);  // CMake's project(VERSION), passed in by tests/CMakeLists.txt
    EXPECT_EQ(read_json(k_source / "ports/minigpt/vcpkg.json")["version"].get<std::string>(), v);
    EXPECT_EQ(std::string(minigpt::version_string), v);
}

TEST(Package, PortFilesAreInstallable) {
    const auto manifest = read_json(k_source / "ports/minigpt/vcpkg.json");
    // supports: what is tested, nothing more (io/mapped_file.hpp is POSIX, so never Windows).
    EXPECT_EQ(manifest["supports"], "linux & x64");
    // Features faiss / server / cache, each naming the CMake component(s) it enables.
    const std::string backends = read_text((k_source / "cmake/minigptBackends.cmake").string());
    std::smatch m;
    ASSERT_TRUE(std::regex_search(backends, m, std::regex(R"(set\(MINIGPT_KNOWN_BACKENDS ([a-z ]+)\))")));
    const std::string known = m[1];
    const std::map<std::string, std::vector<std::string>> components = {
        {"faiss", {"faiss"}}, {"server", {"httplib"}}, {"cache", {"sqlite", "redis"}}};
    for (const auto& [feature, comps] : components) {
        ASSERT_TRUE(manifest["features"].contains(feature)) << feature;
        EXPECT_FALSE(manifest["features"][feature]["dependencies"].empty()) << feature;
        for (const auto& c : comps) {
            EXPECT_NE((" " + known + " ").find(" " + c + " "), std::string::npos) << c;
            EXPECT_TRUE(fs::exists(k_source / "cmake/backends" / (c + ".cmake"))) << c;
            EXPECT_NE(read_text((k_source / "ports/minigpt/usage").string()).find("COMPONENTS " + c), std::string::npos) << c;
        }
    }
    const std::string port = read_text((k_source / "ports/minigpt/portfile.cmake").string());
    EXPECT_NE(port.find("minigpt-${VERSION}.tar.gz"), std::string::npos);
    EXPECT_NE(port.find("\"${CMAKE_CURRENT_LIST_DIR}/usage\""), std::string::npos) << "usage must be installed";
    // The committed SHA512 is a real one (scripts/release wrote it), not the placeholder 0.
    ASSERT_TRUE(std::regex_search(port, m, std::regex(R"(\n    SHA512 ([0-9a-f]+)\n)")));
    EXPECT_EQ(m[1].length(), 128u) << "run scripts/release " << MINIGPT_VERSION_STRING;
}

// scripts/release on a copy of the tracked tree: every place gets the new version, the tarball holds
// the stamped tree under minigpt-VERSION/, its SHA512 is in the portfile, and CMake reads the version.
TEST(Package, ReleaseScriptStampsVersionAndSha) {
    if (run("git -C '" + k_source.string() + "' rev-parse --git-dir >/dev/null 2>&1") != 0) GTEST_SKIP() << "not a git checkout";
    const auto dir = minigpt::test::temp_dir("release");
    const fs::path copy = dir / "src";
    ASSERT_EQ(run("mkdir -p '" + copy.string() + "' && cd '" + k_source.string() + "' && git ls-files -z | xargs -0 cp --parents -t '" +
                  copy.string() + "' && cd '" + copy.string() +
                  "' && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm copy"),
              0);
    std::string out;
    ASSERT_EQ(run("cd '" + copy.string() + "' && DIST_DIR='" + (dir / "dist").string() + "' scripts/release 7.8.9 2>&1", &out), 0) << out;
    const std::string hdr = read_text((copy / "include/minigpt/version.hpp").string());
    EXPECT_NE(hdr.find("#define MINIGPT_VERSION_STRING \"7.8.9\""), std::string::npos);
    EXPECT_NE(hdr.find("#define MINIGPT_VERSION_MAJOR 7\n"), std::string::npos);
    EXPECT_NE(hdr.find("#define MINIGPT_VERSION_MINOR 8\n"), std::string::npos);
    EXPECT_NE(hdr.find("#define MINIGPT_VERSION_PATCH 9\n"), std::string::npos);
    EXPECT_EQ(read_json(copy / "ports/minigpt/vcpkg.json")["version"], "7.8.9");
    const fs::path tarball = dir / "dist/minigpt-7.8.9.tar.gz";
    ASSERT_TRUE(fs::exists(tarball)) << out;
    const std::string sha = sha512_of(tarball);
    ASSERT_EQ(sha.size(), 128u);
    EXPECT_NE(read_text((copy / "ports/minigpt/portfile.cmake").string()).find("    SHA512 " + sha + "\n"), std::string::npos);
    // The tarball holds the stamped header under minigpt-7.8.9/.
    std::string listed;
    ASSERT_EQ(run("tar -xzOf '" + tarball.string() + "' minigpt-7.8.9/include/minigpt/version.hpp", &listed), 0);
    EXPECT_NE(listed.find("\"7.8.9\""), std::string::npos);
    // Reproducible: the same tree gives the same bytes.
    ASSERT_EQ(run("cd '" + copy.string() + "' && git checkout -q -- . && DIST_DIR='" + (dir / "dist2").string() +
                  "' scripts/release 7.8.9 >/dev/null 2>&1"),
              0);
    EXPECT_EQ(sha512_of(dir / "dist2/minigpt-7.8.9.tar.gz"), sha);
    // CMake's project version comes from the stamped header.
    ASSERT_EQ(run("cmake -S '" + copy.string() + "' -B '" + (dir / "build").string() +
                  "' -DMINIGPT_BUILD_TESTS=OFF -DMINIGPT_BUILD_EXAMPLES=OFF -DMINIGPT_BUILD_BENCH=OFF >/dev/null 2>&1"),
              0);
    EXPECT_NE(read_text((dir / "build/minigptConfigVersion.cmake").string()).find("set(PACKAGE_VERSION \"7.8.9\")"), std::string::npos);
    EXPECT_NE(run("cd '" + copy.string() + "' && scripts/release 1.2 >/dev/null 2>&1"), 0);  // not MAJOR.MINOR.PATCH
    fs::remove_all(dir);
}

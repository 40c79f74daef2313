// Helpers shared by tests: locating ../shared, reading golden files, running the tool.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace minigpt::test {

inline std::string shared_path(const std::string& rel) {
    const char* env = std::getenv("MINIGPT_SHARED");
    return std::string(env ? env : MINIGPT_SHARED_DIR) + "/" + rel;
}

// n samples of N(0, scale^2) from mt19937(seed): the random inputs of the kernel and kNN tests.
inline std::vector<float> gaussian(std::int64_t n, std::uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, scale);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = g(rng);
    return v;
}

// The path "minigpt-PID-name" in the temporary folder. Every such file or folder is removed when the
// test program ends (temp_files_cleanup below).
inline std::string temp_name(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("minigpt-" + std::to_string(::getpid()) + "-" + name)).string();
}

// temp_name(name), with any file left there by an earlier test of this process, and SQLite's
// -wal/-shm companions, removed first.
inline std::string temp_path(const std::string& name) {
    const std::string p = temp_name(name);
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p + suffix, ec);
    return p;
}

class temp_files_cleanup : public ::testing::Environment {
public:
    void TearDown() override {
        namespace fs = std::filesystem;
        const std::string prefix = "minigpt-" + std::to_string(::getpid()) + "-";
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(fs::temp_directory_path(), ec))
            if (e.path().filename().string().rfind(prefix, 0) == 0) fs::remove_all(e.path(), ec);
    }
};
inline const auto* const k_temp_files_cleanup = ::testing::AddGlobalTestEnvironment(new temp_files_cleanup);

// The largest |a[i] - b[i]| (and a test failure when the sizes differ).
inline float max_abs_diff(std::span<const float> a, std::span<const float> b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

inline bool shared_exists(const std::string& rel) { return std::filesystem::exists(shared_path(rel)); }

#define MINIGPT_REQUIRE_SHARED(rel) \
    if (!::minigpt::test::shared_exists(rel)) GTEST_SKIP() << "reference data " << ::minigpt::test::shared_path(rel) << " is absent"

inline std::vector<std::int32_t> read_ids(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<std::int32_t> ids;
    long long v;
    while (in >> v) ids.push_back(static_cast<std::int32_t>(v));
    return ids;
}

inline std::vector<float> read_f32(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<float> out(bytes.size() / 4);
    std::memcpy(out.data(), bytes.data(), out.size() * 4);
    return out;
}

inline std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A fresh temporary directory for one test (temp_name("dir-" + name), so removed with its contents
// when the test program ends, whether or not the test removed it itself).
inline std::filesystem::path temp_dir(const std::string& name) {
    const std::filesystem::path p = temp_name("dir-" + name);
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p;
}

// Runs a shell command, returning its exit status and standard output.
inline int run(const std::string& cmd, std::string* out = nullptr) {
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return -1;
    std::string s;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
    int rc = ::pclose(p);
    if (out) *out = s;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace minigpt::test

// A `minigpt serve` process for the server tests: started on a free loopback port (no API key),
// requests sent with curl, killed at the end.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "test_data.hpp"

namespace minigpt::test {

using json = nlohmann::json;

inline const std::string k_tool = MINIGPT_TOOL;

// `minigpt serve` on a free port (no API key), killed at the end.
class serve_process {
public:
    serve_process(const std::string& model, const std::string& flags) {
        log_ = (std::filesystem::temp_directory_path() / ("minigpt-serve-helper-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++) + ".log")).string();
        const std::string cmd = "exec " + k_tool + " serve -m " + model + " --port 0 -t 1 " + flags + " 2>" + log_;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
        for (int i = 0; i < 300 && port_ == 0; ++i) {
            std::smatch m;
            const std::string log = minigpt::test::read_text(log_);
            if (std::regex_search(log, m, listening)) port_ = std::stoi(m[1]);
            else std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    ~serve_process() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        std::filesystem::remove(log_);
    }
    int port() const { return port_; }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    std::string log() const { return minigpt::test::read_text(log_); }
    // (status, body); thread-safe.
    std::pair<int, json> post(const std::string& path, const std::string& body) const {
        const std::string base = log_ + "." + std::to_string(calls()++), in = base + ".in", out = base + ".out";
        std::ofstream(in, std::ios::binary) << body;
        std::string code;
        run("curl -sS -o " + out + " -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @" + in + " " + url(path), &code);
        const std::string text = minigpt::test::read_text(out);
        std::filesystem::remove(in), std::filesystem::remove(out);
        return {std::atoi(code.c_str()), json::parse(text, nullptr, false)};
    }
    std::pair<int, json> get(const std::string& path) const {
        const std::string out = log_ + "." + std::to_string(calls()++) + ".out";
        std::string code;
        run("curl -sS -o " + out + " -w '%{http_code}' " + url(path), &code);
        const std::string text = minigpt::test::read_text(out);
        std::filesystem::remove(out);
        return {std::atoi(code.c_str()), json::parse(text, nullptr, false)};
    }

private:
    static int& counter() {
        static int c = 0;
        return c;
    }
    static std::atomic<int>& calls() {
        static std::atomic<int> c{0};
        return c;
    }
    pid_t pid_ = -1;
    int port_ = 0;
    std::string log_;
};

}  // namespace minigpt::test

// A `minigpt serve` process for the server tests, driven as clients drive it: started on a free
// loopback port (optionally with an API key), requests sent with curl (bodies through files, so any
// byte survives), SIGKILLed at the end if still running. Shared by server_test, server_cache_test,
// server_embeddings_test and server_lora_test (one merged translation unit in the CI build, so their
// helpers live here once).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_data.hpp"

namespace minigpt::test {

using json = nlohmann::json;

inline const std::string k_tool = MINIGPT_TOOL;

// s in single quotes for sh.
inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// The model the server tests run: stories260K when the shared data is there, else a random-weight
// model made here.
inline const std::string& serve_model() {
    static const std::string path = [] {
        if (shared_exists("models/stories260K.gguf")) return shared_path("models/stories260K.gguf");
        const auto dir = temp_dir("serve-model");
        const std::string p = (dir / "tiny.gguf").string();
        std::string out;
        if (run(k_tool + " synth --arch llama --preset tiny --type f32 -o " + p + " 2>&1", &out) != 0)
            throw std::runtime_error("minigpt synth failed: " + out);
        return p;
    }();
    return path;
}

// A greedy completion request for `n_tokens` tokens.
inline json greedy_completion(const std::string& prompt, int n_tokens) {
    return {{"model", "m"}, {"prompt", prompt}, {"max_tokens", n_tokens}, {"temperature", 0}};
}

// A scratch folder with the official `openai` npm package (openai@4) installed, kept between runs on
// one machine and shared by the tests that drive the server with it; "" with npm's output in *why
// when it cannot be fetched (offline). Tests running at once (ctest -j) install it once: npm runs
// under flock on the folder.
inline std::string openai_npm_dir(std::string* why) {
    const auto dir = std::filesystem::temp_directory_path() / "minigpt-openai-npm";
    std::filesystem::create_directories(dir);
    const std::string install = "test -f node_modules/openai/package.json || timeout 120 npm install --no-audit --no-fund --silent openai@4";
    std::string out;
    if (run("cd " + dir.string() + " && flock .lock sh -c " + shell_quote(install) + " 2>&1", &out) != 0) {
        *why = out;
        return {};
    }
    return dir.string();
}

struct serve_reply {
    int status = 0;
    std::string body;
    json parsed() const { return json::parse(body, nullptr, false); }
};

class serve_process {
public:
    // `minigpt serve -m model --port 0 -t 1 [--api-key api_key] flags`; port() is 0 when it did not
    // start listening (then exit_code() says how it ended, if it did).
    serve_process(const std::string& model, const std::string& flags, const std::string& api_key = {}) : api_key_(api_key) {
        log_ = (std::filesystem::temp_directory_path() /
                ("minigpt-serve-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++) + ".log")).string();
        const std::string key = api_key.empty() ? std::string() : " --api-key " + shell_quote(api_key);
        const std::string cmd = "exec " + k_tool + " serve -m " + model + " --port 0 -t 1" + key + " " + flags + " 2>" + log_;
        pid_ = ::fork();
        if (pid_ == 0) {
            ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
        for (int i = 0; i < 300 && port_ == 0; ++i) {
            std::smatch m;
            const std::string text = log();
            if (std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
            else std::this_thread::sleep_for(std::chrono::milliseconds(50));
            int status = 0;
            if (port_ == 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                break;
            }
        }
    }
    serve_process(const serve_process&) = delete;
    serve_process& operator=(const serve_process&) = delete;
    ~serve_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        std::filesystem::remove(log_);
    }
    // SIGTERM, as a service manager stops it, and wait for the exit.
    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    int port() const { return port_; }
    pid_t pid() const { return pid_; }
    void forget() { pid_ = -1; }  // the test reaped the process itself
    int exit_code() const { return exit_code_; }
    std::string log() const { return read_text(log_); }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

    // One curl request (with the API key, if any); thread-safe.
    serve_reply call(const std::string& method, const std::string& path, const std::string& body = {},
                     const std::string& extra_curl_args = {}) const {
        const std::string out_file = log_ + ".body" + std::to_string(calls()++);
        std::string cmd = "curl -sS -o " + out_file + " -w '%{http_code}' -X " + method;
        if (!api_key_.empty()) cmd += " -H " + shell_quote("Authorization: Bearer " + api_key_);
        cmd += " " + extra_curl_args;
        std::string in_file;
        if (!body.empty()) {
            in_file = out_file + ".in";
            std::ofstream(in_file, std::ios::binary) << body;
            cmd += " -H 'Content-Type: application/json' --data-binary @" + in_file;
        }
        cmd += " " + shell_quote(url(path));
        std::string code;
        run(cmd, &code);
        serve_reply r;
        r.status = code.empty() ? 0 : std::atoi(code.c_str());
        r.body = read_text(out_file);
        std::filesystem::remove(out_file);
        if (!in_file.empty()) std::filesystem::remove(in_file);
        return r;
    }
    // POST a JSON body and expect `want_status`; the parsed response (discarded JSON if not JSON).
    json post(const std::string& path, const json& body, int want_status = 200) const {
        const auto r = call("POST", path, body.dump());
        EXPECT_EQ(r.status, want_status) << r.body;
        return r.body.empty() ? json() : r.parsed();
    }
    // (status, parsed body) of a POST of raw body text, or of a GET.
    std::pair<int, json> post_text(const std::string& path, const std::string& body) const {
        const auto r = call("POST", path, body);
        return {r.status, r.parsed()};
    }
    std::pair<int, json> get(const std::string& path) const {
        const auto r = call("GET", path);
        return {r.status, r.parsed()};
    }
    // The `data:` payloads of a streamed response (the body asks for "stream": true).
    std::vector<std::string> stream(const std::string& path, const json& body) const {
        const auto r = call("POST", path, body.dump(), "-N");
        EXPECT_EQ(r.status, 200) << r.body;
        std::vector<std::string> events;
        std::istringstream in(r.body);
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("data: ", 0) == 0) events.push_back(line.substr(6));
        return events;
    }
    // A value from GET /metrics (full name, e.g. minigpt_requests_total); -1 when absent.
    double metric(const std::string& name) const {
        const auto r = call("GET", "/metrics");
        const std::regex re("\\n" + name + " ([0-9.e+]+)");
        std::smatch m;
        if (!std::regex_search(r.body, m, re)) return -1;
        return std::stod(m[1]);
    }

private:
    static std::atomic<int>& counter() {
        static std::atomic<int> c{0};
        return c;
    }
    static std::atomic<int>& calls() {
        static std::atomic<int> c{0};
        return c;
    }
    std::string api_key_;
    pid_t pid_ = -1;
    int port_ = 0;
    int exit_code_ = 0;
    std::string log_;
};

}  // namespace minigpt::test

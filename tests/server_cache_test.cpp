// `minigpt serve --cache`: the completion cache in the server, driven as clients drive it (curl
// against the real binary on a free loopback port). A second identical request is answered from the
// cache: the response equals the first, and the engine's counters in GET /metrics (requests, tokens
// generated, steps) do not move, so no forward pass ran; streamed and chat requests hit the same way;
// another seed or other parameters miss; sampling without a seed and logprobs requests bypass it;
// the entries survive a restart of the server (SQLite) and are shared by two servers (Redis, when
// redis-server is installed); a file that is not a cache stops the server with an error naming it.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_data.hpp"

using json = nlohmann::json;
using minigpt::test::run;

namespace {

const std::string k_tool = MINIGPT_TOOL;

std::string quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// stories260K when the shared data is there, else a random-weight model made here.
const std::string& model_path() {
    static std::string path = [] {
        if (minigpt::test::shared_exists("models/stories260K.gguf")) return minigpt::test::shared_path("models/stories260K.gguf");
        const auto dir = minigpt::test::temp_dir("server-cache-model");
        const std::string p = (dir / "tiny.gguf").string();
        std::string out;
        if (run(k_tool + " synth --arch llama --preset tiny --type f32 -o " + p + " 2>&1", &out) != 0)
            throw std::runtime_error("minigpt synth failed: " + out);
        return p;
    }();
    return path;
}

// One `minigpt serve` process; SIGKILLed at the end if still running.
class server {
public:
    explicit server(const std::string& flags) {
        static int counter = 0;
        log_ = (std::filesystem::temp_directory_path() /
                ("minigpt-serve-cache-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".log")).string();
        const std::string cmd = "exec " + k_tool + " serve -m " + model_path() + " --port 0 -t 1 -np 2 -c 1024 " + flags + " 2>" + log_;
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
    ~server() {
        stop();
        std::filesystem::remove(log_);
    }
    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    int port() const { return port_; }
    int exit_code() const { return exit_code_; }
    std::string log() const { return minigpt::test::read_text(log_); }

    // POST a JSON body; the raw response body (status checked).
    std::string post_raw(const std::string& path, const json& body) const {
        const std::string in = log_ + ".in", out = log_ + ".out";
        std::ofstream(in, std::ios::binary) << body.dump();
        std::string code;
        run("curl -sS -N -o " + out + " -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @" + in + " " +
                quote("http://127.0.0.1:" + std::to_string(port_) + path),
            &code);
        const std::string text = minigpt::test::read_text(out);
        EXPECT_EQ(code, "200") << text;
        std::filesystem::remove(in);
        std::filesystem::remove(out);
        return text;
    }
    json post(const std::string& path, const json& body) const { return json::parse(post_raw(path, body), nullptr, false); }
    // The concatenated text of a streamed response, and its finish reason.
    std::pair<std::string, std::string> stream(const std::string& path, json body) const {
        body["stream"] = true;
        std::istringstream in(post_raw(path, body));
        std::string line, text, finish;
        bool done = false;
        while (std::getline(in, line)) {
            if (line.rfind("data: ", 0) != 0) continue;
            const std::string payload = line.substr(6);
            if (payload == "[DONE]") { done = true; continue; }
            const auto c = json::parse(payload)["choices"][0];
            if (c.contains("text")) text += c["text"].get<std::string>();
            if (c.contains("delta") && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
            if (!c["finish_reason"].is_null()) finish = c["finish_reason"].get<std::string>();
        }
        EXPECT_TRUE(done) << "no [DONE]";
        return {text, finish};
    }
    double metric(const std::string& name) const {
        std::string body;
        run("curl -sS " + quote("http://127.0.0.1:" + std::to_string(port_) + "/metrics"), &body);
        const std::regex re("\\nminigpt_" + name + " ([0-9.e+]+)");
        std::smatch m;
        if (!std::regex_search(body, m, re)) return -1;
        return std::stod(m[1]);
    }
    // The engine's counters: any forward pass moves at least one of them.
    std::vector<double> engine_counters() const {
        return {metric("requests_total"), metric("tokens_generated_total"), metric("engine_steps_total"),
                metric("prompt_tokens_evaluated_total")};
    }

private:
    pid_t pid_ = -1;
    int port_ = 0;
    int exit_code_ = 0;
    std::string log_;
};

bool built_without(const server& s, const char* library) { return s.log().find(std::string("built without ") + library) != std::string::npos; }

json completion(const std::string& prompt, int n_tokens) {
    return {{"model", "m"}, {"prompt", prompt}, {"max_tokens", n_tokens}, {"temperature", 0}};
}

}  // namespace

TEST(ServerCache, SecondIdenticalRequestSkipsTheEngine) {
    const auto dir = minigpt::test::temp_dir("server-cache");
    const std::string file = (dir / "completions.sqlite").string();
    server s("--cache " + file);
    if (s.port() == 0 && built_without(s, "SQLite")) GTEST_SKIP() << "minigpt was built without SQLite";
    ASSERT_GT(s.port(), 0) << s.log();
    EXPECT_NE(s.log().find("completion cache " + file), std::string::npos) << s.log();

    // First request: a miss, generated and stored.
    const json req = completion("Once upon a time", 24);
    const auto first = s.post("/v1/completions", req);
    ASSERT_TRUE(first.contains("choices")) << first;
    EXPECT_EQ(s.metric("cache_misses_total"), 1);
    EXPECT_EQ(s.metric("cache_hits_total"), 0);
    EXPECT_EQ(s.metric("cache_stores_total"), 1);
    const auto engine_before = s.engine_counters();
    EXPECT_GT(engine_before[1], 0);

    // Same request: a hit with the same answer, and the engine did nothing.
    const auto second = s.post("/v1/completions", req);
    EXPECT_EQ(second["choices"][0]["text"], first["choices"][0]["text"]);
    EXPECT_EQ(second["choices"][0]["finish_reason"], first["choices"][0]["finish_reason"]);
    EXPECT_EQ(second["usage"], first["usage"]);
    EXPECT_EQ(s.metric("cache_hits_total"), 1);
    EXPECT_EQ(s.engine_counters(), engine_before);

    // Streamed, same parameters: also a hit; the chunks add up to the same text.
    const auto [streamed, finish] = s.stream("/v1/completions", req);
    EXPECT_EQ(streamed, first["choices"][0]["text"].get<std::string>());
    EXPECT_EQ(finish, first["choices"][0]["finish_reason"].get<std::string>());
    EXPECT_EQ(s.metric("cache_hits_total"), 2);
    EXPECT_EQ(s.engine_counters(), engine_before);

    // Other parameters miss: more tokens, a different prompt.
    s.post("/v1/completions", completion("Once upon a time", 25));
    s.post("/v1/completions", completion("Once upon a tim", 24));
    EXPECT_EQ(s.metric("cache_misses_total"), 3);
    EXPECT_EQ(s.metric("requests_total"), engine_before[0] + 2);

    // Sampling with a seed: the same seed hits, another seed misses.
    json sampled = completion("The little dog", 24);
    sampled["temperature"] = 1.0;
    sampled["seed"] = 7;
    const auto a = s.post("/v1/completions", sampled);
    const auto engine_sampled = s.engine_counters();
    EXPECT_EQ(s.post("/v1/completions", sampled)["choices"][0]["text"], a["choices"][0]["text"]);
    EXPECT_EQ(s.engine_counters(), engine_sampled);
    sampled["seed"] = 8;
    s.post("/v1/completions", sampled);
    EXPECT_EQ(s.metric("requests_total"), engine_sampled[0] + 1);
    EXPECT_EQ(s.metric("cache_hits_total"), 3);
    EXPECT_EQ(s.metric("cache_misses_total"), 5);

    // Sampling without a seed is not reproducible, and logprobs are not kept: both bypass the cache.
    sampled.erase("seed");
    s.post("/v1/completions", sampled);
    json with_logprobs = req;
    with_logprobs["logprobs"] = 2;
    const auto lp = s.post("/v1/completions", with_logprobs);
    EXPECT_FALSE(lp["choices"][0]["logprobs"]["tokens"].empty()) << lp;
    EXPECT_EQ(s.metric("cache_bypassed_total"), 2);

    // Chat: the second identical request is a hit, non-streamed and streamed.
    const json chat = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "Tell a story."}}}}, {"max_tokens", 16}, {"temperature", 0}};
    const auto c1 = s.post("/v1/chat/completions", chat);
    const auto engine_chat = s.engine_counters();
    const auto c2 = s.post("/v1/chat/completions", chat);
    EXPECT_EQ(c2["choices"][0]["message"]["content"], c1["choices"][0]["message"]["content"]);
    EXPECT_EQ(c2["object"], "chat.completion");
    EXPECT_EQ(s.stream("/v1/chat/completions", chat).first, c1["choices"][0]["message"]["content"].get<std::string>());
    EXPECT_EQ(s.engine_counters(), engine_chat);
    EXPECT_EQ(s.metric("cache_errors_total"), 0);

    // After a restart the entries are still there (one SQLite file).
    s.stop();
    server again("--cache " + file);
    ASSERT_GT(again.port(), 0) << again.log();
    EXPECT_EQ(again.post("/v1/completions", req)["choices"][0]["text"], first["choices"][0]["text"]);
    EXPECT_EQ(again.metric("cache_hits_total"), 1);
    EXPECT_EQ(again.metric("requests_total"), 0);
    EXPECT_EQ(again.metric("tokens_generated_total"), 0);
    again.stop();
    std::filesystem::remove_all(dir);
}

// With LoRA adapters loaded, the adapters a request runs with are part of its key: the same prompt
// at another adapter scale is a miss with its own answer, never the other scale's.
TEST(ServerCache, AdapterScalesAreKeptApart) {
    MINIGPT_REQUIRE_SHARED("models/lora/stories260K-lora.gguf");
    const auto dir = minigpt::test::temp_dir("server-cache-lora");
    const std::string file = (dir / "completions.sqlite").string();
    server s("--cache " + file + " --lora-scaled " + minigpt::test::shared_path("models/lora/stories260K-lora.gguf") + " 0.5");
    if (s.port() == 0 && built_without(s, "SQLite")) GTEST_SKIP() << "minigpt was built without SQLite";
    ASSERT_GT(s.port(), 0) << s.log();
    json at_1 = completion("Once upon a time", 24), at_0 = at_1;
    at_1["lora"] = json::array({{{"id", 0}, {"scale", 1.0}}});
    at_0["lora"] = json::array({{{"id", 0}, {"scale", 0.0}}});
    const auto default_scale = s.post("/v1/completions", completion("Once upon a time", 24));
    const auto scale_1 = s.post("/v1/completions", at_1);
    const auto scale_0 = s.post("/v1/completions", at_0);
    EXPECT_EQ(s.metric("cache_misses_total"), 3);
    EXPECT_EQ(s.metric("cache_hits_total"), 0);
    EXPECT_NE(scale_1["choices"][0]["text"], scale_0["choices"][0]["text"]);
    EXPECT_NE(scale_1["choices"][0]["text"], default_scale["choices"][0]["text"]);
    const auto engine_before = s.engine_counters();
    EXPECT_EQ(s.post("/v1/completions", at_1)["choices"][0]["text"], scale_1["choices"][0]["text"]);
    EXPECT_EQ(s.post("/v1/completions", at_0)["choices"][0]["text"], scale_0["choices"][0]["text"]);
    EXPECT_EQ(s.metric("cache_hits_total"), 2);
    EXPECT_EQ(s.engine_counters(), engine_before);
    s.stop();
    std::filesystem::remove_all(dir);
}

// A file that is not an SQLite database: the server does not start, and says which file.
TEST(ServerCache, GarbageCacheFileStopsTheServer) {
    const auto dir = minigpt::test::temp_dir("server-cache-garbage");
    const std::string file = (dir / "garbage.sqlite").string();
    std::ofstream(file, std::ios::binary) << std::string(4096, 'x');
    server s("--cache " + file);
    if (built_without(s, "SQLite")) GTEST_SKIP() << "minigpt was built without SQLite";
    EXPECT_EQ(s.port(), 0) << s.log();
    EXPECT_NE(s.exit_code(), 0);
    EXPECT_NE(s.log().find(file), std::string::npos) << s.log();
    std::filesystem::remove_all(dir);
}

namespace {

std::string find_redis_server() {
    for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"})
        if (std::filesystem::exists(p)) return p;
    return {};
}

int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

bool accepts(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    return ok;
}

// A redis-server child on a free loopback port, stopped (SIGTERM to its pid) at the end.
struct redis_process {
    pid_t pid = -1;
    int port = 0;
    explicit redis_process(const std::string& bin) : port(free_port()) {
        const std::string port_text = std::to_string(port);
        pid = fork();
        if (pid == 0) {
            execl(bin.c_str(), bin.c_str(), "--port", port_text.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", "/tmp", "--logfile", "/dev/null", static_cast<char*>(nullptr));
            _exit(127);
        }
        for (int i = 0; i < 200 && !accepts(port); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ~redis_process() {
        if (pid > 0) {
            kill(pid, SIGTERM);
            waitpid(pid, nullptr, 0);
        }
    }
};

}  // namespace

// Two servers (as on two machines) share one Redis: what one generated, the other serves.
TEST(ServerCache, TwoServersShareRedis) {
    const auto bin = find_redis_server();
    if (bin.empty()) GTEST_SKIP() << "redis-server is not installed (Debian: redis-server)";
    redis_process redis(bin);
    ASSERT_GT(redis.pid, 0);
    ASSERT_TRUE(accepts(redis.port)) << "redis-server did not start";
    const std::string url = "redis://127.0.0.1:" + std::to_string(redis.port);
    server one("--cache " + url);
    if (built_without(one, "hiredis")) GTEST_SKIP() << "minigpt was built without hiredis";
    server two("--cache " + url);
    ASSERT_GT(one.port(), 0) << one.log();
    ASSERT_GT(two.port(), 0) << two.log();
    const json req = completion("Once upon a time", 20);
    const auto a = one.post("/v1/completions", req);
    const auto b = two.post("/v1/completions", req);
    EXPECT_EQ(b["choices"][0]["text"], a["choices"][0]["text"]);
    EXPECT_EQ(two.metric("cache_hits_total"), 1);
    EXPECT_EQ(two.metric("requests_total"), 0);
    EXPECT_EQ(one.metric("cache_misses_total"), 1);
}

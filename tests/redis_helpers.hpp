// A real redis-server for the tests of the Redis completion cache (cache_redis_test) and of the
// server sharing it (server_cache_test): started as a child on a free loopback port with no
// persistence, stopped with SIGTERM at the end. Tests skip when redis-server is not installed.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>

namespace minigpt::test {

// The redis-server binary, or "" when it is not installed (Debian: redis-server).
inline std::string find_redis_server() {
    for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"})
        if (std::filesystem::exists(p)) return p;
    return {};
}

// A loopback port nothing listens on right now (the kernel's pick for a socket bound to port 0).
inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// Whether something accepts TCP connections on the loopback port.
inline bool accepts(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

// redis-server `bin` on a free loopback port; `ready()` once it accepts connections (waits up to 4 s).
class redis_process {
public:
    explicit redis_process(const std::string& bin) : port_(free_port()) {
        const std::string port_text = std::to_string(port_);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::execl(bin.c_str(), bin.c_str(), "--port", port_text.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", "/tmp", "--logfile", "/dev/null", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (int i = 0; i < 200 && pid_ > 0 && !accepts(port_); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    redis_process(const redis_process&) = delete;
    redis_process& operator=(const redis_process&) = delete;
    ~redis_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    bool ready() const { return pid_ > 0 && accepts(port_); }
    int port() const { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

private:
    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace minigpt::test

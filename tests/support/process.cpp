#include "support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace test {

child_process child_process::spawn(const std::vector<std::string>& argv,
                                   const std::vector<std::string>& env_extra,
                                   const std::string& log_path) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> env_store;
    for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
    for (const auto& e : env_extra) env_store.push_back(e);
    std::vector<char*> env;
    for (auto& e : env_store) env.push_back(e.data());
    env.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    child_process p;
    p._log_path = log_path;
    int rc = posix_spawn(&p._pid, args[0], &fa, &attr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
    return p;
}

child_process::child_process(child_process&& o) noexcept
    : _pid(std::exchange(o._pid, -1)), _status(o._status), _log_path(std::move(o._log_path)) {}

child_process& child_process::operator=(child_process&& o) noexcept {
    if (this != &o) {
        if (_pid > 0 && !_status) stop(SIGKILL, std::chrono::seconds(5));
        _pid = std::exchange(o._pid, -1);
        _status = o._status;
        _log_path = std::move(o._log_path);
    }
    return *this;
}

child_process::~child_process() {
    if (_pid > 0 && !_status) stop(SIGKILL, std::chrono::seconds(5));
}

std::optional<int> child_process::poll_exit() {
    if (_status || _pid <= 0) return _status;
    int st = 0;
    if (::waitpid(_pid, &st, WNOHANG) == _pid)
        _status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return _status;
}

std::optional<int> child_process::stop(int sig, std::chrono::milliseconds timeout) {
    if (poll_exit()) return _status;
    ::kill(_pid, sig);
    if (eventually([&] { return poll_exit().has_value(); }, timeout)) return _status;
    ::kill(_pid, SIGKILL);
    int st = 0;
    ::waitpid(_pid, &st, 0);
    _status = 128 + SIGKILL;
    return std::nullopt;
}

std::string child_process::log() const {
    std::ifstream in(_log_path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    ::close(fd);
    return ntohs(sa.sin_port);
}

std::string temp_dir() {
    char tmpl[] = "/tmp/jugglite-test-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (!d) throw std::runtime_error("mkdtemp failed");
    return d;
}

}  // namespace test

#include "support/servers.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace test {

namespace {

bool redis_answers(int port, const std::string& password) {
    timeval tv{0, 200'000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        if (!password.empty())
            if (auto* a = redisCommand(c, "AUTH %b", password.data(), password.size()))
                freeReplyObject(a);
        auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
}

bool port_accepts(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    ::close(fd);
    return ok;
}

// The binary under test: the build's own, unless JUGGLITE_TEST_BINARY names another (to
// run these tests against an older build and see which of them it fails).
std::string jugglite_binary() {
    const char* other = std::getenv("JUGGLITE_TEST_BINARY");
    return other && *other ? other : JUGGLITE_BINARY;
}

std::string find_redis_server() {
    for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"})
        if (::access(p, X_OK) == 0) return p;
    throw std::runtime_error("redis-server not found (scripts/test installs it)");
}

}  // namespace

redis_server::redis_server() : redis_server(free_port()) {}

redis_server::redis_server(int port, std::vector<std::string> extra, std::string password)
    : _port(port), _dir(temp_dir()), _extra(std::move(extra)), _password(std::move(password)) {
    start();
}

redis_server::~redis_server() { stop(); }

void redis_server::start() {
    std::vector<std::string> argv{find_redis_server(), "--port", std::to_string(_port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _dir};
    argv.insert(argv.end(), _extra.begin(), _extra.end());
    _proc = std::make_unique<child_process>(child_process::spawn(argv, {}, _dir + "/redis.log"));
    if (!eventually([&] { return redis_answers(_port, _password); }))
        throw std::runtime_error("redis-server did not start: " + _proc->log());
}

void redis_server::signal(int sig) {
    if (_proc) ::kill(_proc->pid(), sig);
}

void redis_server::stop() {
    if (_proc) _proc->stop(SIGKILL, 5s);
    _proc.reset();
}

redis_server& shared_redis() {
    static redis_server server;
    return server;
}

redis_client::redis_client(int port, const std::string& password) {
    _c = redisConnect("127.0.0.1", port);
    if (!_c || _c->err) throw std::runtime_error("cannot connect to redis");
    if (!password.empty()) command({"AUTH", password});
}

std::string redis_client::command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(_c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (!r) throw std::runtime_error("redis command failed");
    std::string out;
    if (r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
    else if (r->str) out.assign(r->str, static_cast<std::size_t>(r->len));
    freeReplyObject(r);
    return out;
}

redis_client::~redis_client() { redisFree(_c); }

void redis_client::subscribe(std::string_view channel) {
    auto* r = static_cast<redisReply*>(redisCommand(_c, "SUBSCRIBE %b", channel.data(), channel.size()));
    if (!r) throw std::runtime_error("SUBSCRIBE failed");
    freeReplyObject(r);
}

std::string redis_client::next_message(std::chrono::milliseconds timeout) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    redisSetTimeout(_c, tv);
    void* reply = nullptr;
    if (redisGetReply(_c, &reply) != REDIS_OK || !reply) {
        // A timed-out read leaves the context in error: start a fresh one is the caller's
        // business; report "no message".
        _c->err = 0;
        return {};
    }
    auto* r = static_cast<redisReply*>(reply);
    std::string out;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->str)
        out.assign(r->element[2]->str, static_cast<std::size_t>(r->element[2]->len));
    freeReplyObject(r);
    return out;
}

long long redis_client::publish(std::string_view channel, std::string_view payload) {
    auto* r = static_cast<redisReply*>(redisCommand(_c, "PUBLISH %b %b", channel.data(),
                                                    channel.size(), payload.data(), payload.size()));
    if (!r) throw std::runtime_error("PUBLISH failed");
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

long long redis_client::numsub(std::string_view channel) {
    auto* r = static_cast<redisReply*>(
        redisCommand(_c, "PUBSUB NUMSUB %b", channel.data(), channel.size()));
    if (!r) throw std::runtime_error("PUBSUB failed");
    long long n = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

jugglite_server::jugglite_server(std::vector<std::string> args, const std::string& redis_url,
                                 std::vector<std::string> env, int nofile)
    : _dir(temp_dir()) {
    auto has = [&](std::string_view flag) {
        for (const auto& a : args)
            if (a == flag || a.starts_with(std::string(flag) + "=")) return true;
        return false;
    };
    std::vector<std::string> argv{jugglite_binary()};
    if (nofile > 0)
        argv = {"/usr/bin/prlimit", "--nofile=" + std::to_string(nofile) + ":" + std::to_string(nofile),
                jugglite_binary()};
    if (!has("--redis") && !has("--redis-cluster")) argv.insert(argv.end(), {"--redis", redis_url});
    if (!has("--shards")) argv.insert(argv.end(), {"--shards", "2"});
    if (!has("--port") && !has("--socket")) {
        _port = free_port();
        argv.insert(argv.end(), {"--address", "127.0.0.1", "--port", std::to_string(_port)});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    _proc = std::make_unique<child_process>(child_process::spawn(argv, env, _dir + "/jugglite.log"));
    bool up = eventually([&] {
        return _proc->poll_exit().has_value() || _proc->log().find("accepting on") != std::string::npos;
    });
    if (auto st = _proc->poll_exit()) {
        std::string log = _proc->log();
        // No io_uring here (old kernel, seccomp, io_uring_disabled): skip, don't fail.
        if (log.find("io_uring_queue_init") != std::string::npos) {
            fprintf(stderr, "io_uring unavailable, skipping: %s\n", log.c_str());
            std::_Exit(77);
        }
        throw std::runtime_error("jugglite exited with " + std::to_string(*st) + ": " + log);
    }
    if (!up) throw std::runtime_error("jugglite did not start: " + _proc->log());
    if (_port && !eventually([&] { return port_accepts(_port); }))
        throw std::runtime_error("jugglite port never accepted");
}

jugglite_server::~jugglite_server() { _proc->stop(SIGKILL, 5s); }

int jugglite_server::terminate(std::chrono::milliseconds timeout) {
    auto st = _proc->stop(SIGTERM, timeout);
    return st ? *st : -1;
}

run_result run_jugglite(const std::vector<std::string>& args, const std::vector<std::string>& env) {
    std::string dir = temp_dir();
    std::vector<std::string> argv{jugglite_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = child_process::spawn(argv, env, dir + "/out.log");
    auto st = p.stop(0, 10s);  // signal 0: just wait
    return {st.value_or(-1), p.log()};
}

raw_client raw_client::tcp(int port, const char* address, int rcvbuf) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    ::inet_pton(AF_INET, address, &sa.sin_addr);
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        ::close(fd);
        throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
    return raw_client(fd);
}

raw_client raw_client::unix_socket(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        ::close(fd);
        throw std::runtime_error(std::string("connect unix: ") + std::strerror(errno));
    }
    return raw_client(fd);
}

raw_client::raw_client(raw_client&& o) noexcept
    : _fd(std::exchange(o._fd, -1)), _closed(o._closed), _buf(std::move(o._buf)) {}

raw_client::~raw_client() { close(); }

void raw_client::close() {
    if (_fd >= 0) ::close(_fd);
    _fd = -1;
}

void raw_client::send(std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(_fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
        bytes.remove_prefix(static_cast<size_t>(n));
    }
}

void raw_client::get(std::string_view target) {
    send("GET " + std::string(target) +
         " HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
}

bool raw_client::read_some(std::chrono::milliseconds timeout) {
    pollfd p{_fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buf[65536];
    ssize_t n = ::recv(_fd, buf, sizeof buf, 0);
    if (n <= 0) {
        _closed = true;
        return false;
    }
    _buf.append(buf, static_cast<size_t>(n));
    return true;
}

bool raw_client::read_until(std::string_view needle, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    // Search only the bytes that could hold a new match, so reading megabytes stays linear.
    std::size_t from = 0;
    while (_buf.find(needle, from) == std::string::npos) {
        from = _buf.size() >= needle.size() ? _buf.size() - needle.size() + 1 : 0;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0 || _closed) return false;
        read_some(left);
    }
    return true;
}

bool raw_client::read_until_closed(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!_closed) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        read_some(left);
    }
    return true;
}

std::string raw_client::body() const {
    auto p = _buf.find("\r\n\r\n");
    return p == std::string::npos ? std::string() : _buf.substr(p + 4);
}

}  // namespace test

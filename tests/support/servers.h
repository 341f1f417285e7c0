// The real parts an integration test talks to: redis-server, a Redis client, the
// jugglite binary, and a raw-socket SSE client.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/process.h"

struct redisContext;

namespace test {

using namespace std::chrono_literals;

// A redis-server on its own free port (no persistence), stopped on destruction.
class redis_server {
public:
    redis_server();
    // `extra` are more redis-server arguments (e.g. {"--user", "app on >pw ..."}); with a
    // password-only default user, pass `password` too so readiness checks can AUTH.
    explicit redis_server(int port, std::vector<std::string> extra = {}, std::string password = {});
    ~redis_server();
    void stop();
    void start();  // (re)start on the same port; waits until it answers PING
    // Sends `sig` (SIGSTOP freezes it, SIGCONT thaws it).
    void signal(int sig);
    [[nodiscard]] int port() const { return _port; }
    [[nodiscard]] std::string url() const { return "redis://127.0.0.1:" + std::to_string(_port); }

private:
    int _port;
    std::string _dir;
    std::vector<std::string> _extra;
    std::string _password;
    std::unique_ptr<child_process> _proc;
};

// The process-wide redis-server shared by tests that don't restart it.
redis_server& shared_redis();

// A synchronous hiredis connection.
class redis_client {
public:
    explicit redis_client(int port, const std::string& password = {});
    ~redis_client();
    // Runs a command given as arguments; returns its reply as text (an error as "ERR...").
    std::string command(const std::vector<std::string>& args);
    // PUBLISH; returns the number of Redis subscribers that received it.
    long long publish(std::string_view channel, std::string_view payload);
    // PUBSUB NUMSUB for one channel.
    long long numsub(std::string_view channel);
    // SUBSCRIBE to `channel`; the connection is then only for next_message().
    void subscribe(std::string_view channel);
    // The payload of the next message on a subscribed connection, or "" after `timeout`.
    std::string next_message(std::chrono::milliseconds timeout = 5s);

private:
    redisContext* _c;
};

// The jugglite binary under test. Listens on a free port unless args say otherwise.
class jugglite_server {
public:
    // `args` are extra flags; --redis, --port and --shards 2 are added unless present.
    // `nofile` > 0 runs it with that RLIMIT_NOFILE (soft and hard), through prlimit(1).
    explicit jugglite_server(std::vector<std::string> args = {},
                             const std::string& redis_url = shared_redis().url(),
                             std::vector<std::string> env = {}, int nofile = 0);
    ~jugglite_server();
    [[nodiscard]] int port() const { return _port; }
    // SIGTERM and wait; returns the exit status or -1 on timeout.
    int terminate(std::chrono::milliseconds timeout = 10s);
    [[nodiscard]] std::string log() const { return _proc->log(); }
    child_process& process() { return *_proc; }

private:
    int _port = 0;
    std::string _dir;
    std::unique_ptr<child_process> _proc;
};

// Runs jugglite with `args` to completion (for flag errors, --help); returns status and output.
struct run_result {
    int status;
    std::string output;
};
run_result run_jugglite(const std::vector<std::string>& args, const std::vector<std::string>& env = {});

// A raw socket to the server: write a request, read bytes with timeouts.
class raw_client {
public:
    // `rcvbuf` > 0 sets SO_RCVBUF before connecting (a small window for a stalled client).
    static raw_client tcp(int port, const char* address = "127.0.0.1", int rcvbuf = 0);
    static raw_client unix_socket(const std::string& path);
    raw_client(raw_client&& o) noexcept;
    ~raw_client();

    void send(std::string_view bytes);
    // GET `target` with Accept: text/event-stream.
    void get(std::string_view target);
    // Reads until `needle` appears in everything read so far, or timeout. True if found.
    bool read_until(std::string_view needle, std::chrono::milliseconds timeout = 5s);
    // Reads until the peer closes; true if it did within timeout.
    bool read_until_closed(std::chrono::milliseconds timeout = 5s);
    // Everything read so far.
    [[nodiscard]] const std::string& received() const { return _buf; }
    // The response body so far (after the blank line ending the head).
    [[nodiscard]] std::string body() const;
    [[nodiscard]] bool closed() const { return _closed; }
    [[nodiscard]] int fd() const { return _fd; }
    void close();

private:
    explicit raw_client(int fd) : _fd(fd) {}
    bool read_some(std::chrono::milliseconds timeout);
    int _fd = -1;
    bool _closed = false;
    std::string _buf;
};

}  // namespace test

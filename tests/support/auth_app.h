// A small application for the auth callback, run on a thread of the test: it reads the
// `session` cookie (the user's name) and answers like a Rails app's session check. A real
// HTTP/1.1 server on a real socket, with keep-alive, so that jugglite's client is tested
// against what it will meet.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace test {

class auth_app {
public:
    // Listens on a free loopback port (or on the unix socket `unix_path`).
    explicit auth_app(std::string unix_path = {});
    ~auth_app();

    [[nodiscard]] int port() const { return _port; }
    [[nodiscard]] std::string url(const std::string& path = "/auth") const {
        return "http://127.0.0.1:" + std::to_string(_port) + path;
    }
    // Each answer waits this long first.
    void set_delay(std::chrono::milliseconds d) { _delay_ms = d.count(); }
    // From now on `user` gets 403, as after a logout or a ban.
    void revoke(const std::string& user) {
        std::lock_guard lock(_mu);
        _revoked.push_back(user);
    }
    // Stops listening and drops every connection: the application is down.
    void stop();

    // Requests answered, and TCP connections accepted (keep-alive makes it much smaller).
    [[nodiscard]] int requests() const { return _requests; }
    [[nodiscard]] int connections() const { return _connections; }
    // The headers of the last request (lower-case names).
    [[nodiscard]] std::map<std::string, std::string> last_headers() const;

private:
    void accept_loop();
    void serve(int fd);
    std::string answer(const std::map<std::string, std::string>& headers);

    int _listen_fd = -1;
    int _port = 0;
    std::string _unix_path;
    std::atomic<bool> _stopping{false};
    std::atomic<long long> _delay_ms{0};
    std::atomic<int> _requests{0};
    std::atomic<int> _connections{0};
    mutable std::mutex _mu;
    std::map<std::string, std::string> _last;
    std::vector<int> _fds;
    std::vector<std::string> _revoked;
    std::vector<std::thread> _threads;
    std::thread _acceptor;
};

}  // namespace test

// Small helpers shared by the integration tests.
#pragma once

#include <sys/resource.h>

#include <atomic>
#include <vector>
#include <string>

#include "support/metric_text.h"
#include "support/servers.h"

namespace test {

// A channel name no other test uses.
inline std::string unique_channel(std::string_view stem = "ch") {
    static std::atomic<int> n{0};
    return std::string(stem) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

// Waits until Redis reports `count` subscribers of `channel` (jugglite subscribed).
inline bool wait_numsub(redis_client& redis, std::string_view channel, long long count = 1) {
    return eventually([&] { return redis.numsub(channel) == count; });
}

// GETs `target` on a fresh connection and returns everything until the server closes.
// With `event_stream` the request says Accept: text/event-stream, as an EventSource does.
inline std::string http_get(int port, std::string_view target, bool event_stream = false) {
    auto c = raw_client::tcp(port);
    if (event_stream) c.get(target);
    else c.send("GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    c.read_until_closed(5s);
    return c.received();
}

// The value of `name` in /metrics (see metric_in), or -1 if it is missing.
inline long long metric(int port, std::string_view name) {
    return metric_in(http_get(port, "/metrics"), name);
}

// True when GET `path` is answered 200 (health endpoints).
inline bool answers_200(int port, std::string_view path) {
    return http_get(port, path).starts_with("HTTP/1.1 200 OK\r\n");
}

// Raises this process's open-file soft limit to its hard limit, for tests with thousands
// of sockets; returns the limit.
inline rlim_t raise_nofile_limit() {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    return lim.rlim_cur;
}

// Sends `n` stream requests for `target`, all before any answer is read (a burst).
inline std::vector<raw_client> start_streams(int port, const std::string& target, int n) {
    std::vector<raw_client> clients;
    clients.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        clients.push_back(raw_client::tcp(port));
        clients.back().get(target);
    }
    return clients;
}

// How many of `clients` read `needle` within `timeout` each.
inline int count_reading(std::vector<raw_client>& clients, std::string_view needle,
                         std::chrono::milliseconds timeout = 5s) {
    int n = 0;
    for (auto& c : clients) n += c.read_until(needle, timeout) ? 1 : 0;
    return n;
}

// Opens a stream on `target` and waits for its registration comment.
inline raw_client open_stream(int port, std::string_view target) {
    auto c = raw_client::tcp(port);
    c.get(target);
    if (!c.read_until(": registered to channels: ")) throw std::runtime_error("no registration: " + c.received());
    return c;
}

}  // namespace test

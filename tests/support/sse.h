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

struct sse_event {
    std::string event, id, data;
};

// The events in an SSE body, comments left out.
inline std::vector<sse_event> events_of(std::string_view body) {
    std::vector<sse_event> out;
    std::size_t start = 0;
    while (true) {
        auto end = body.find("\n\n", start);
        if (end == std::string_view::npos) break;
        std::string_view block = body.substr(start, end - start);
        start = end + 2;
        sse_event e;
        bool any = false;
        std::size_t p = 0;
        while (p <= block.size()) {
            auto nl = block.find('\n', p);
            std::string_view line = block.substr(p, nl == std::string_view::npos ? std::string_view::npos : nl - p);
            p = nl == std::string_view::npos ? block.size() + 1 : nl + 1;
            auto field = [&](std::string_view name) { return line.starts_with(name) ? line.substr(name.size()) : std::string_view{}; };
            if (line.starts_with("data: ")) e.data += std::string(e.data.empty() ? "" : "\n") + std::string(field("data: ")), any = true;
            else if (line.starts_with("id: ")) e.id = field("id: "), any = true;
            else if (line.starts_with("event: ")) e.event = field("event: "), any = true;
        }
        if (any) out.push_back(std::move(e));
    }
    return out;
}

inline std::vector<std::string> data_of(const std::vector<sse_event>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.data);
    return out;
}

// A stream request that resumes after `last_id`.
inline raw_client resume(int port, std::string_view target, std::string_view last_id) {
    auto c = raw_client::tcp(port);
    c.send("GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" +
           "Last-Event-ID: " + std::string(last_id) + "\r\n\r\n");
    return c;
}

}  // namespace test

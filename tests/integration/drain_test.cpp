// The drain on SIGTERM: /readyz turns to draining, new streams are turned away to retry,
// the open ones end paced at --drain-rate with a jittered retry:, and their reconnects
// (close + retry:) spread out rather than land in the same second.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <thread>

#include "support/sse.h"

using namespace test;

namespace {

using clock_type = std::chrono::steady_clock;

// The most events of `times` (ms, sorted) inside any window of `width` ms.
std::size_t busiest_window(const std::vector<std::int64_t>& times, std::int64_t width) {
    std::size_t best = 0;
    for (std::size_t lo = 0, hi = 0; hi < times.size(); ++hi) {
        while (times[hi] - times[lo] >= width) ++lo;
        best = std::max(best, hi - lo + 1);
    }
    return best;
}

// The value of the last `retry: ` field in `text`, or -1.
long retry_of(const std::string& text) {
    const auto p = text.rfind("\nretry: ");
    if (p == std::string::npos) return -1;
    long v = -1;
    std::from_chars(text.data() + p + 8, text.data() + text.size(), v);
    return v;
}

}  // namespace

TEST_CASE("SIGTERM drains: readyz says draining, new streams retry, closes paced at --drain-rate, reconnects spread") {
    const rlim_t nofile = raise_nofile_limit();
    constexpr int n = 3'000;
    constexpr double rate = 1'000;
    REQUIRE(nofile > n + 200);
    jugglite_server server({"--shards", "2", "--drain-rate", "1000", "--drain-seconds", "30"});
    const auto ch = unique_channel("drain");
    auto clients = start_streams(server.port(), "/stream?channel=" + ch, n);
    REQUIRE(count_reading(clients, ": registered to channels: " + ch + "\n") == n);

    const auto start = clock_type::now();
    REQUIRE(::kill(server.process().pid(), SIGTERM) == 0);
    // The load balancer hears it first: /readyz is 503 "draining", /livez still 200.
    CHECK(eventually([&] { return http_get(server.port(), "/readyz").find("\r\n\r\ndraining\n") != std::string::npos; }, 2s));
    CHECK(http_get(server.port(), "/readyz").starts_with("HTTP/1.1 503"));
    CHECK(answers_200(server.port(), "/livez"));
    // A new stream is turned away with a retry (an EventSource follows it elsewhere).
    auto late = raw_client::tcp(server.port());
    late.get("/stream?channel=" + ch);
    CHECK(late.read_until_closed(5s));
    CHECK(late.received().find(": server is draining\nretry: ") != std::string::npos);

    // Every stream ends with a retry:; note when, and when it would come back.
    std::vector<std::int64_t> closes, reconnects;
    std::vector<pollfd> fds;
    for (auto& c : clients) fds.push_back({c.fd(), POLLIN, 0});
    int open = n, bad_retry = 0;
    const auto deadline = start + 40s;
    while (open > 0 && clock_type::now() < deadline) {
        if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            if (!clients[i].read_until_closed(20ms)) continue;  // data and FIN come together
            const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start).count();
            const long retry = retry_of(clients[i].received());
            if (retry < 1'000 || retry > 5'000) ++bad_retry;
            closes.push_back(at);
            reconnects.push_back(at + retry);
            fds[i].fd = -1;
            --open;
        }
    }
    REQUIRE(open == 0);
    CHECK(bad_retry == 0);
    std::sort(closes.begin(), closes.end());
    std::sort(reconnects.begin(), reconnects.end());
    const std::size_t close_peak = busiest_window(closes, 1'000);
    const std::size_t back_peak = busiest_window(reconnects, 1'000);
    MESSAGE("drain of " << n << " streams at " << rate << "/s: closes over "
            << closes.back() - closes.front() << " ms, busiest second " << close_peak
            << " closes; reconnects over " << reconnects.back() - reconnects.front()
            << " ms, busiest second " << back_peak);
    // Paced: 3,000 at 1,000/s take about 3 s; no second holds much more than the rate
    // (the slack is for this process reading late on 2 shared cores).
    CHECK(closes.back() - closes.front() >= 1'800);
    CHECK(close_peak <= static_cast<std::size_t>(rate * 1.5));
    CHECK(back_peak <= static_cast<std::size_t>(rate * 1.5));
    CHECK(server.process().stop(0, 10s) == 0);  // exits 0 by itself once drained
    const std::string log = server.log();
    CHECK(log.find("shard 0: drained") != std::string::npos);
    CHECK(log.find("shard 1: drained") != std::string::npos);
}

TEST_CASE("SIGTERM with few streams exits at once, though --drain-seconds is long") {
    jugglite_server server({"--drain-seconds", "60"});
    auto a = open_stream(server.port(), "/stream?channel=" + unique_channel());
    const auto start = clock_type::now();
    CHECK(server.terminate(10s) == 0);
    CHECK(clock_type::now() - start < 3s);
    CHECK(a.read_until_closed(1s));
    CHECK(a.received().find(": server draining\nretry: ") != std::string::npos);
}

TEST_CASE("a second signal during the drain stops at once") {
    jugglite_server server({"--drain-rate", "1", "--drain-seconds", "60"});
    const auto ch = unique_channel();
    std::vector<raw_client> streams;
    for (int i = 0; i < 5; ++i) streams.push_back(open_stream(server.port(), "/stream?channel=" + ch));
    REQUIRE(::kill(server.process().pid(), SIGTERM) == 0);
    CHECK(eventually([&] { return http_get(server.port(), "/readyz").starts_with("HTTP/1.1 503"); }, 2s));
    CHECK(!server.process().poll_exit());  // 5 streams at 1/s: still draining
    const auto start = clock_type::now();
    CHECK(server.process().stop(SIGINT, 10s) == 0);
    CHECK(clock_type::now() - start < 5s);
    CHECK(server.log().find("stopping without finishing the drain") != std::string::npos);
}

TEST_CASE("--drain-rate and --drain-seconds are checked") {
    CHECK(run_jugglite({"--drain-rate", "0"}).status == 2);
    CHECK(run_jugglite({"--drain-seconds", "-1"}).status == 2);
}

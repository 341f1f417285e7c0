// Resume from Last-Event-ID (--history) against a real redis-server and the real binary:
// messages published with FCALL jugglite_publish are replayed after the client's id, from
// memory or from Redis, exactly once and in order, across channels, restarts and a lost
// subscriber link; history that no longer reaches the id gives jugglite-reset.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <thread>

#include "core/history.h"
#include "core/stream_id.h"
#include "support/sse.h"

using namespace test;

namespace {

std::string fcall(redis_client& r, std::string_view channel, std::string_view payload) {
    return r.command({"FCALL", "jugglite_publish", "1", std::string(channel), std::string(payload)});
}

// Waits until jugglite has loaded its library into `redis` (FCALL works).
void wait_library(redis_client& redis) {
    REQUIRE(eventually([&] { return redis.command({"FCALL_RO", "jugglite_version", "0"}) == "1"; }));
}

// A fresh Redis per test: tests elsewhere load the library with other prefixes into the
// shared one.
struct history_setup {
    explicit history_setup(std::vector<std::string> extra = {})
        : redis(free_port()), server(with_history(std::move(extra)), redis.url()), client(redis.port()) {
        wait_library(client);
    }
    static std::vector<std::string> with_history(std::vector<std::string> extra) {
        extra.insert(extra.begin(), "--history");
        return extra;
    }
    redis_server redis;
    jugglite_server server;
    redis_client client;
};

std::vector<std::string> numbered(std::string_view stem, int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i <= to; ++i) out.push_back(fmt::format("{}{}", stem, i));
    return out;
}

}  // namespace

TEST_CASE("a stream resumes on one channel after its Last-Event-ID, then goes on live") {
    history_setup h;
    auto ch = unique_channel("news");
    std::vector<std::string> ids;
    for (int i = 1; i <= 5; ++i) ids.push_back(fcall(h.client, ch, fmt::format("m{}", i)));

    auto c = resume(h.server.port(), "/stream?channel=" + ch, ids[1]);
    REQUIRE(c.read_until("data: m5\n\n"));
    REQUIRE(wait_numsub(h.client, ch));
    std::string id6 = fcall(h.client, ch, "m6");
    REQUIRE(c.read_until("data: m6\n\n"));
    auto events = events_of(c.body());
    CHECK(data_of(events) == numbered("m", 3, 6));
    REQUIRE(events.size() == 4);
    CHECK(events[0].id == ids[2]);
    CHECK(events[3].id == id6);

    // A second client resumes from the same id: the window answers now.
    auto again = resume(h.server.port(), "/stream?channel=" + ch, ids[3]);
    REQUIRE(again.read_until("data: m6\n\n"));
    CHECK(data_of(events_of(again.body())) == numbered("m", 5, 6));
    CHECK(metric(h.server.port(), R"(jugglite_history_resumes_answered_total{source="memory"})") >= 1);
}

TEST_CASE("the lastEventId query parameter resumes as the header does") {
    history_setup h;
    auto ch = unique_channel("q");
    std::string first = fcall(h.client, ch, "one");
    fcall(h.client, ch, "two");
    auto c = raw_client::tcp(h.server.port());
    c.get("/stream?channel=" + ch + "&lastEventId=" + first);
    REQUIRE(c.read_until("data: two\n\n"));
    CHECK(data_of(events_of(c.body())) == std::vector<std::string>{"two"});
}

TEST_CASE("two channels published in one millisecond resume merged in publish order") {
    history_setup h;
    auto a = unique_channel("a"), b = unique_channel("b");
    auto live = open_stream(h.server.port(), "/stream?channel=" + a + "," + b);
    // One transaction: every id comes from the same millisecond.
    h.client.command({"MULTI"});
    for (int i = 0; i < 40; ++i) fcall(h.client, i % 2 ? a : b, fmt::format("x{}", i));
    h.client.command({"EXEC"});
    REQUIRE(live.read_until("data: x39\n\n"));
    auto events = events_of(live.body());
    REQUIRE(events.size() == 40);
    CHECK(data_of(events) == numbered("x", 0, 39));
    auto first = *jugglite::stream_id::parse(events[0].id);
    for (std::size_t i = 1; i < events.size(); ++i)
        CHECK(*jugglite::stream_id::parse(events[i - 1].id) < *jugglite::stream_id::parse(events[i].id));

    // From the middle: exactly the rest, on both channels.
    auto mid = resume(h.server.port(), "/stream?channel=" + b + "," + a, events[16].id);
    REQUIRE(mid.read_until("data: x39\n\n"));
    CHECK(data_of(events_of(mid.body())) == numbered("x", 17, 39));
    // From just before the first: all of them, merged.
    auto all = resume(h.server.port(), "/stream?channel=" + a + "," + b,
                      jugglite::stream_id{first.ms - 1, 0}.text());
    REQUIRE(all.read_until("data: x39\n\n"));
    CHECK(data_of(events_of(all.body())) == numbered("x", 0, 39));
}

TEST_CASE("messages published during the replay arrive once, after it, in order") {
    history_setup h({"--history-length", "3000"});
    auto ch = unique_channel("busy");
    std::string first = fcall(h.client, ch, "p0");
    for (int i = 1; i < 1500; ++i) fcall(h.client, ch, fmt::format("p{}", i));
    std::atomic<bool> go{false};
    std::thread publisher([&] {
        redis_client pub(h.redis.port());
        while (!go.load()) std::this_thread::yield();
        for (int i = 1500; i < 2000; ++i) fcall(pub, ch, fmt::format("p{}", i));
    });
    auto c = resume(h.server.port(), "/stream?channel=" + ch, first);
    go = true;
    publisher.join();
    REQUIRE(c.read_until("data: p1999\n\n", 10s));
    CHECK(data_of(events_of(c.body())) == numbered("p", 1, 1999));
}

TEST_CASE("after kill -9 and a restart, a stream resumes what was published while jugglite was down") {
    redis_server redis(free_port());
    redis_client client(redis.port());
    const int port = free_port();
    std::vector<std::string> flags{"--history", "--address", "127.0.0.1", "--port", std::to_string(port)};
    auto ch = unique_channel("restart");
    std::string last;
    {
        jugglite_server first(flags, redis.url());
        wait_library(client);
        auto c = open_stream(port, "/stream?channel=" + ch);
        for (int i = 1; i <= 3; ++i) fcall(client, ch, fmt::format("before{}", i));
        REQUIRE(c.read_until("data: before3\n\n"));
        last = events_of(c.body()).back().id;
        first.process().stop(SIGKILL, 5s);
    }
    for (int i = 1; i <= 5; ++i) fcall(client, ch, fmt::format("down{}", i));
    jugglite_server second(flags, redis.url());
    auto c = resume(port, "/stream?channel=" + ch, last);
    REQUIRE(c.read_until("data: down5\n\n"));
    CHECK(data_of(events_of(c.body())) == numbered("down", 1, 5));
    CHECK(metric(port, R"(jugglite_history_resumes_answered_total{source="redis"})") == 1);
}

TEST_CASE("streams that stay open across a killed subscriber link receive every message") {
    history_setup h;
    auto ch = unique_channel("cut");
    auto c = open_stream(h.server.port(), "/stream?channel=" + ch);
    std::thread publisher([&] {
        redis_client pub(h.redis.port());
        for (int i = 0; i < 400; ++i) {
            fcall(pub, ch, fmt::format("c{}", i));
            std::this_thread::sleep_for(2ms);
        }
    });
    std::this_thread::sleep_for(200ms);
    CHECK(h.client.command({"CLIENT", "KILL", "TYPE", "pubsub"}) != "0");
    publisher.join();
    REQUIRE(c.read_until("data: c399\n\n", 10s));
    CHECK(data_of(events_of(c.body())) == numbered("c", 0, 399));
    CHECK(metric(h.server.port(), "jugglite_history_catch_ups_total") >= 1);
    CHECK(metric(h.server.port(), "jugglite_redis_reconnects_total") >= 1);
}

TEST_CASE("history that no longer reaches the id gives jugglite-reset with the head, once") {
    history_setup h({"--history-length", "5"});
    auto ch = unique_channel("trim");
    std::string first = fcall(h.client, ch, "t0");
    std::string head;
    for (int i = 1; i < 200; ++i) head = fcall(h.client, ch, fmt::format("t{}", i));
    auto c = resume(h.server.port(), "/stream?channel=" + ch, first);
    REQUIRE(c.read_until("\n\n", 5s));
    REQUIRE(c.read_until("}\n\n"));
    auto events = events_of(c.body());
    REQUIRE(events.size() == 1);
    CHECK(events[0].event == "jugglite-reset");
    CHECK(events[0].id == head);
    CHECK(events[0].data.find("\"reason\":\"trimmed\"") != std::string::npos);
    // Reconnecting from the reset's id resumes without another reset.
    auto next = resume(h.server.port(), "/stream?channel=" + ch, events[0].id);
    REQUIRE(next.read_until(": registered"));
    fcall(h.client, ch, "after");
    REQUIRE(next.read_until("data: after\n\n"));
    CHECK(data_of(events_of(next.body())) == std::vector<std::string>{"after"});
}

TEST_CASE("a malformed or unknown id gives jugglite-reset") {
    history_setup h;
    auto ch = unique_channel("bad");
    std::string head = fcall(h.client, ch, "only");
    for (std::string_view bad : {"not-an-id", "12", "99999999999999-0"}) {
        CAPTURE(bad);
        auto c = resume(h.server.port(), "/stream?channel=" + ch, bad);
        REQUIRE(c.read_until("}\n\n"));
        auto events = events_of(c.body());
        REQUIRE(events.size() == 1);
        CHECK(events[0].event == "jugglite-reset");
        CHECK(events[0].id == head);
    }
    CHECK(metric(h.server.port(), R"(jugglite_history_resets_total{reason="malformed"})") == 2);
    CHECK(metric(h.server.port(), R"(jugglite_history_resets_total{reason="unknown"})") == 1);
}

TEST_CASE("plain PUBLISH mixed in is delivered without an id and is not replayed") {
    history_setup h;
    auto ch = unique_channel("mixed");
    auto c = open_stream(h.server.port(), "/stream?channel=" + ch);
    std::string first = fcall(h.client, ch, "{\"id\":\"app-1\",\"n\":1}");
    h.client.publish(ch, "{\"id\":\"app-2\",\"n\":2}");
    fcall(h.client, ch, "{\"n\":3}");
    REQUIRE(c.read_until("{\"n\":3}"));
    auto live = events_of(c.body());
    REQUIRE(live.size() == 3);
    CHECK(live[0].id == first);  // the entry id, not the JSON one
    CHECK(live[1].id.empty());   // with --history a JSON id is not an SSE id
    CHECK(!live[2].id.empty());
    CHECK(live[1].data == "{\"id\":\"app-2\",\"n\":2}");

    auto r = resume(h.server.port(), "/stream?channel=" + ch, first);
    REQUIRE(r.read_until("{\"n\":3}"));
    CHECK(data_of(events_of(r.body())) == std::vector<std::string>{"{\"n\":3}"});
}

TEST_CASE("a message published while the channel is in its unsubscribe grace is replayed") {
    history_setup h;
    auto ch = unique_channel("grace");
    std::string seen;
    {
        auto c = open_stream(h.server.port(), "/stream?channel=" + ch);
        seen = fcall(h.client, ch, "before");
        REQUIRE(c.read_until("data: before\n\n"));
    }
    // The page is gone (a reload); the channel stays subscribed for --unsubscribe-grace.
    REQUIRE(eventually([&] { return metric(h.server.port(), "jugglite_connections_open") == 0; }));
    CHECK(h.client.numsub(ch) == 1);
    fcall(h.client, ch, "during");
    auto back = resume(h.server.port(), "/stream?channel=" + ch, seen);
    REQUIRE(back.read_until("data: during\n\n"));
    CHECK(data_of(events_of(back.body())) == std::vector<std::string>{"during"});
}

TEST_CASE("a message over --max-message-bytes is neither delivered nor replayed, and leaves no gap") {
    history_setup h({"--max-message-bytes", "1024"});
    auto ch = unique_channel("big");
    auto c = open_stream(h.server.port(), "/stream?channel=" + ch);
    std::string first = fcall(h.client, ch, "small1");
    fcall(h.client, ch, std::string(4096, 'B'));
    fcall(h.client, ch, "small2");
    REQUIRE(c.read_until("data: small2\n\n"));
    CHECK(data_of(events_of(c.body())) == std::vector<std::string>{"small1", "small2"});
    auto r = resume(h.server.port(), "/stream?channel=" + ch, first);
    REQUIRE(r.read_until("data: small2\n\n"));
    CHECK(data_of(events_of(r.body())) == std::vector<std::string>{"small2"});
    CHECK(metric(h.server.port(), "jugglite_history_gaps_total") == 0);
    CHECK(metric(h.server.port(), R"(jugglite_messages_dropped_total{reason="too_large"})") == 1);
}

TEST_CASE("a library loaded with other settings is replaced with jugglite's own") {
    redis_server redis(free_port());
    redis_client client(redis.port());
    jugglite::history_settings other;
    other.length = 1000;
    REQUIRE(client.command({"FUNCTION", "LOAD", jugglite::history_library(other)}) == "jugglite");
    jugglite_server server({"--history", "--history-length", "7"}, redis.url());
    jugglite::history_settings ours;
    ours.length = 7;
    CHECK(eventually([&] {
        return client.command({"FCALL_RO", "jugglite_settings", "0"}) == jugglite::history_fingerprint(ours);
    }));
}

TEST_CASE("history is read with the URL's password and from its database") {
    const int port = free_port();
    redis_server redis(port, {"--requirepass", "s3cret"}, "s3cret");
    redis_client client(port, "s3cret");
    REQUIRE(client.command({"SELECT", "3"}) == "OK");
    jugglite_server server({"--history"}, "redis://:s3cret@127.0.0.1:" + std::to_string(port) + "/3");
    wait_library(client);
    auto ch = unique_channel("db3");
    std::string first = fcall(client, ch, "one");
    fcall(client, ch, "two");
    CHECK(client.command({"XLEN", jugglite::history_key({}, ch)}) == "2");
    auto c = resume(server.port(), "/stream?channel=" + ch, first);
    REQUIRE(c.read_until("data: two\n\n"));
    CHECK(data_of(events_of(c.body())) == std::vector<std::string>{"two"});
    CHECK(metric(server.port(), R"(jugglite_history_resumes_answered_total{source="redis"})") == 1);
}

// Whole-process behaviour: Redis outages, health, shutdown, flags, scale, slow consumers.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <thread>

#include "support/sse.h"

using namespace test;

TEST_CASE("Redis restarted mid-stream: streams stay open and later messages arrive") {
    redis_server own_redis;
    jugglite_server server({}, own_redis.url());
    auto ch = unique_channel();
    auto c = open_stream(server.port(), "/stream?channel=" + ch);
    {
        redis_client redis(own_redis.port());
        REQUIRE(wait_numsub(redis, ch));
        redis.publish(ch, "before");
        REQUIRE(c.read_until("data: before\n\n"));
    }
    CHECK(answers_200(server.port(), "/healthz"));

    own_redis.stop();
    CHECK(eventually([&] { return !answers_200(server.port(), "/healthz"); }));
    std::string health = http_get(server.port(), "/healthz");
    CHECK(health.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    CHECK(health.find("redis subscriber is ") != std::string::npos);
    CHECK_FALSE(c.read_until_closed(300ms));

    own_redis.start();
    redis_client redis(own_redis.port());
    REQUIRE(wait_numsub(redis, ch));  // re-subscribed after reconnecting
    CHECK(eventually([&] { return answers_200(server.port(), "/healthz"); }));
    CHECK(redis.publish(ch, "after") == 1);
    CHECK(c.read_until("data: after\n\n"));
    CHECK(server.log().find("reconnected to") != std::string::npos);
    INFO(server.log());
    CHECK(metric(server.port(), "jugglite_redis_reconnects_total") == 1);
}

TEST_CASE("Redis down at start: a stream waits, and registers once Redis appears") {
    int port = free_port();
    jugglite_server server({"--register-timeout", "60"}, "redis://127.0.0.1:" + std::to_string(port));
    auto ch = unique_channel();
    auto c = raw_client::tcp(server.port());
    c.get("/stream?channel=" + ch);
    CHECK_FALSE(answers_200(server.port(), "/healthz"));
    CHECK_FALSE(c.read_until("registered", 300ms));
    redis_server late(port);
    CHECK(c.read_until(": registered to channels: " + ch + "\n", 20s));
    redis_client redis(port);
    REQUIRE(wait_numsub(redis, ch));
    CHECK(redis.publish(ch, "late") == 1);
    CHECK(c.read_until("data: late\n\n"));
    CHECK(eventually([&] { return answers_200(server.port(), "/healthz"); }));
}

TEST_CASE("SIGTERM closes the streams and exits 0") {
    jugglite_server server;
    auto a = open_stream(server.port(), "/stream?channel=" + unique_channel());
    auto b = open_stream(server.port(), "/stream?channel=" + unique_channel());
    auto start = std::chrono::steady_clock::now();
    CHECK(server.terminate(5s) == 0);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(a.read_until_closed(1s));
    CHECK(b.read_until_closed(1s));
    std::string log = server.log();
    CHECK(log.find("received SIGTERM") != std::string::npos);
    CHECK(log.find("shard 0: opened=") != std::string::npos);
    CHECK(log.find("stopped") != std::string::npos);
}

TEST_CASE("SIGINT also exits 0") {
    jugglite_server server;
    CHECK(server.process().stop(SIGINT, 5s) == 0);
}

TEST_CASE("2,000 concurrent streams on 2 shards all receive a broadcast") {
    const rlim_t nofile = raise_nofile_limit();
    REQUIRE(nofile > 2100);

    jugglite_server server({"--shards", "2"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel("broadcast");
    constexpr int n = 2000;
    auto clients = start_streams(server.port(), "/stream?channel=" + ch, n);
    for (auto& c : clients) REQUIRE(c.read_until(": registered to channels: " + ch + "\n"));
    REQUIRE(wait_numsub(redis, ch));
    CHECK(redis.publish(ch, "to everyone") == 1);
    int got = count_reading(clients, "data: to everyone\n\n", 10s);
    CHECK(got == n);
    CHECK(metric(server.port(), "jugglite_connections_open") == n);
    clients.clear();
    CHECK(eventually([&] { return metric(server.port(), "jugglite_connections_open") == 0; }));
    CHECK(wait_numsub(redis, ch, 0));
}

TEST_CASE("a client that stops reading is dropped as a slow consumer while others get everything") {
    jugglite_server server({"--max-pending", "262144"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel("slow");
    // The stalled client: tiny receive buffer, never reads after the registration.
    auto stalled = raw_client::tcp(server.port(), "127.0.0.1", 4096);
    stalled.get("/stream?channel=" + ch);
    REQUIRE(stalled.read_until(": registered to channels: " + ch + "\n"));
    auto reader = open_stream(server.port(), "/stream?channel=" + ch);
    REQUIRE(wait_numsub(redis, ch));

    const std::string payload(50 * 1024, 'p');
    constexpr int messages = 200;  // 10 MB: far past the socket buffers and the 256 KiB cap
    std::thread drain([&] {
        // Paced (10 MB/s), so the reading client keeps up, even on 2 cores busy with other
        // tests, and only the stalled one falls behind.
        for (int i = 0; i < messages; ++i) {
            redis.publish(ch, payload + std::to_string(i));
            std::this_thread::sleep_for(5ms);
        }
    });
    std::size_t frames = 0;
    auto deadline = std::chrono::steady_clock::now() + 30s;
    std::string last = "data: " + payload + std::to_string(messages - 1) + "\n\n";
    while (std::chrono::steady_clock::now() < deadline && !reader.read_until(last, 1s)) {
    }
    drain.join();
    INFO("reader got " << reader.received().size() << " bytes, closed=" << reader.closed()
                       << "; metrics: " << http_get(server.port(), "/metrics"));
    REQUIRE(reader.read_until(last, 10s));
    for (std::size_t p = 0; (p = reader.received().find("data: ", p)) != std::string::npos; ++p) ++frames;
    CHECK(frames == messages);
    CHECK(eventually([&] { return metric(server.port(), "jugglite_slow_consumers_total") == 1; }));
    CHECK(stalled.read_until_closed(10s));  // after draining what the kernel held
}

TEST_CASE("flags: bad values exit 2 with one clear line - env variables - --version - --help") {
    auto r = run_jugglite({"--port", "70000"});
    CHECK(r.status == 2);
    CHECK(r.output == "jugglite: --port must be 0..65535 (got 70000) (see --help)\n");
    r = run_jugglite({"--shards", "0"});
    CHECK(r.status == 2);
    CHECK(r.output.find("--shards must be between 1 and 64") != std::string::npos);
    r = run_jugglite({"--redis", "http://x"});
    CHECK(r.status == 2);
    CHECK(r.output.find("redis URL must start with redis://") != std::string::npos);
    r = run_jugglite({"--bogus"});
    CHECK(r.status == 2);
    r = run_jugglite({"--port", "abc"});
    CHECK(r.status == 2);
    r = run_jugglite({}, {"JUGGLITE_KEEPALIVE=0"});
    CHECK(r.status == 2);
    CHECK(r.output.find("--keepalive must be between 1 and 3600 (got 0)") != std::string::npos);

    // A switch from the environment is on or off as its value says.
    r = run_jugglite({}, {"JUGGLITE_HISTORY=maybe"});
    CHECK(r.status == 2);
    CHECK(r.output.find("JUGGLITE_HISTORY=maybe must be true or false") != std::string::npos);
    {
        jugglite_server off({}, shared_redis().url(), {"JUGGLITE_HISTORY=false"});
        CHECK(off.log().find(" history=off") != std::string::npos);
        jugglite_server on({}, shared_redis().url(), {"JUGGLITE_HISTORY=true"});
        CHECK(on.log().find(" history=on(") != std::string::npos);
    }

    r = run_jugglite({"--version"});
    CHECK(r.status == 0);
    CHECK(r.output.starts_with("jugglite "));
    r = run_jugglite({"--help"});
    CHECK(r.status == 0);
    for (auto flag : {"--address", "--port", "--socket", "--max-conns", "--redis", "--namespace",
                      "--path", "--allowed-channels", "--keepalive", "--shards", "--max-pending"})
        CHECK_MESSAGE(r.output.find(flag) != std::string::npos, flag);
    CHECK(r.output.find("(default: 3000)") != std::string::npos);

    int port = free_port();
    {
        jugglite_server server({"--port", std::to_string(port), "--address", "127.0.0.1"},
                               shared_redis().url(), {"JUGGLITE_NAMESPACE=envns:"});
        CHECK(server.log().find("namespace='envns:'") != std::string::npos);
        CHECK(eventually([&] { return answers_200(port, "/healthz"); }));
    }
    {
        int env_port = free_port();
        jugglite_server server({"--address", "127.0.0.1", "--port", std::to_string(port)},
                               shared_redis().url(), {"JUGGLITE_PORT=" + std::to_string(env_port)});
        CHECK(server.log().find("listen=127.0.0.1:" + std::to_string(port)) != std::string::npos);
    }
}

TEST_CASE("--max-conns is reached when the open-file limit caps each ring's table far below it") {
    // RLIMIT_NOFILE 300 caps a ring's table at 236 slots: 1,200 streams over 2 shards need
    // several rings per shard, and the uneven SO_REUSEPORT spread must not refuse any.
    const rlim_t nofile = raise_nofile_limit();
    REQUIRE(nofile > 1300);
    jugglite_server server({"--shards", "2", "--max-conns", "1200"}, shared_redis().url(), {}, 300);
    INFO(server.log());
    CHECK(server.log().find("capacity 1200 connections") != std::string::npos);
    redis_client redis(shared_redis().port());
    auto ch = unique_channel("rings");
    constexpr int n = 1200;
    auto clients = start_streams(server.port(), "/stream?channel=" + ch, n);
    int registered = count_reading(clients, ": registered to channels: " + ch + "\n");
    INFO(http_get(server.port(), "/metrics"));
    CHECK(registered == n);
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="capacity"})") == 0);
    CHECK(redis.publish(ch, "to every ring") == 1);
    int got = count_reading(clients, "data: to every ring\n\n", 10s);
    CHECK(got == n);
    // Every connection counts; the next one is refused, and health is still answered.
    CHECK(metric(server.port(), "jugglite_connections_open") == n);
    clients.clear();
    CHECK(eventually([&] { return metric(server.port(), "jugglite_connections_open") == 0; }));
}

TEST_CASE("when the kernel refuses submissions, operations wait for the next loop turn and nothing is lost") {
    // JUGGLITE_FAILPOINT_SQE=3: every third SQE request fails as an -EAGAIN submission would.
    jugglite_server server({"--shards", "2"}, shared_redis().url(), {"JUGGLITE_FAILPOINT_SQE=3"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel("deferred");
    constexpr int n = 300, messages = 20;
    auto clients = start_streams(server.port(), "/stream?channel=" + ch, n);
    int registered = count_reading(clients, ": registered to channels: " + ch + "\n");
    CHECK(registered == n);
    for (int m = 0; m < messages; ++m) redis.publish(ch, "m" + std::to_string(m));
    int complete = count_reading(clients, "data: m" + std::to_string(messages - 1) + "\n\n");
    CHECK(complete == n);
    for (auto& c : clients) {
        std::size_t frames = 0;
        for (std::size_t p = 0; (p = c.received().find("data: m", p)) != std::string::npos; ++p) ++frames;
        CHECK(frames == messages);
    }
    CHECK(metric(server.port(), "jugglite_submissions_deferred_total") > 0);
    CHECK(http_get(server.port(), "/readyz").starts_with("HTTP/1.1 200 OK\r\n"));
    clients.clear();
    CHECK(eventually([&] { return metric(server.port(), "jugglite_connections_open") == 0; }));
    CHECK(server.process().poll_exit() == std::nullopt);  // never aborted
}

TEST_CASE("SIGTERM with 18,000 streams closes every one within the drain and exits 0") {
    // Closing must cost O(1) per connection: cancelling by descriptor scans every pending
    // request of the ring, and 9,000 connections per ring then outlast the 2 s drain.
    const rlim_t nofile = raise_nofile_limit();
    constexpr int n = 18'000;
    REQUIRE(nofile > n + 200);
    jugglite_server server({"--shards", "2"});
    auto ch = unique_channel("term");
    auto clients = start_streams(server.port(), "/stream?channel=" + ch, n);
    int registered = count_reading(clients, ": registered to channels: " + ch + "\n");
    REQUIRE(registered == n);
    CHECK(server.terminate(30s) == 0);
    std::string log = server.log();
    INFO(log.substr(log.size() > 2000 ? log.size() - 2000 : 0));
    CHECK(log.find("still closing at exit") == std::string::npos);
    int closed = 0;
    for (auto& c : clients) closed += c.read_until_closed(2s) ? 1 : 0;
    CHECK(closed == n);
}

TEST_CASE("--log-format json writes one JSON object per line, and repeated warnings are held back") {
    CHECK(run_jugglite({"--log-format", "xml"}).status == 2);
    jugglite_server server({"--log-format", "json", "--max-message-bytes", "1024"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel("log");
    auto c = open_stream(server.port(), "/stream?channel=" + ch);
    for (int i = 0; i < 20; ++i) redis.publish(ch, std::string(2000, 'x'));  // 20 drops, logged once
    redis.publish(ch, "after");
    REQUIRE(c.read_until("data: after\n\n"));
    CHECK(metric(server.port(), R"(jugglite_messages_dropped_total{reason="too_large"})") == 20);
    std::string log = server.log();
    std::size_t lines = 0, drops = 0, pos = 0;
    while (pos < log.size()) {
        auto nl = log.find('\n', pos);
        std::string_view line(log.data() + pos, (nl == std::string::npos ? log.size() : nl) - pos);
        pos = nl == std::string::npos ? log.size() : nl + 1;
        if (line.empty()) continue;
        ++lines;
        CHECK_MESSAGE(line.starts_with("{\"ts\":\""), line);
        CHECK_MESSAGE(line.ends_with("\"}"), line);
        CHECK(line.find("\"level\":\"") != std::string_view::npos);
        if (line.find("larger than --max-message-bytes") != std::string_view::npos) ++drops;
    }
    CHECK(lines >= 2);
    CHECK(drops == 1);
}

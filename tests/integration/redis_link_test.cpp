// The Redis link as an operator meets it: a frozen Redis, ACLs that forbid a channel,
// "registered" meaning subscribed, the unsubscribe grace period, the channel cap, and
// refusals that a browser retries by itself.
#include <doctest/doctest.h>
#include <signal.h>

#include <optional>
#include <thread>

#include "support/sse.h"

using namespace test;

namespace {

// An answer that an EventSource retries: 200, the stream's content type, `retry:`, close.
void check_retry_answer(const std::string& r, std::string_view reason) {
    CHECK(r.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(r.find("Content-Type: text/event-stream;charset=utf-8\r\n") != std::string::npos);
    CHECK(r.find(": " + std::string(reason) + "\n") != std::string::npos);
    auto p = r.find("\nretry: ");
    REQUIRE(p != std::string::npos);
    int ms = std::stoi(r.substr(p + 8));
    CHECK(ms >= 1000);
    CHECK(ms <= 5000);
    CHECK(r.find("registered to channels") == std::string::npos);
}

}  // namespace

TEST_CASE("a frozen Redis turns /readyz to 503 within seconds, /livez stays 200, and it recovers") {
    redis_server own_redis;
    jugglite_server server({}, own_redis.url());
    auto ch = unique_channel();
    auto c = open_stream(server.port(), "/stream?channel=" + ch);
    REQUIRE(eventually([&] { return answers_200(server.port(), "/readyz"); }));
    CHECK(answers_200(server.port(), "/healthz"));
    CHECK(answers_200(server.port(), "/livez"));

    own_redis.signal(SIGSTOP);  // the TCP link stays up; nothing answers
    auto frozen_at = std::chrono::steady_clock::now();
    CHECK(eventually([&] { return !answers_200(server.port(), "/readyz"); }, 15s));
    INFO("503 after " << std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - frozen_at).count() << " ms");
    CHECK_FALSE(answers_200(server.port(), "/healthz"));
    // The process and its loops are fine: an orchestrator must not restart it.
    CHECK(answers_200(server.port(), "/livez"));
    // Reconnects meet a Redis whose kernel completes the handshake and then nothing:
    // the thread must not hang in them, so liveness holds for longer than a reply timeout.
    for (int i = 0; i < 8; ++i) {
        CHECK(answers_200(server.port(), "/livez"));
        std::this_thread::sleep_for(500ms);
    }
    CHECK(metric(server.port(), "jugglite_redis_link_timeouts_total") >= 1);
    CHECK(server.log().find("no reply within") != std::string::npos);
    CHECK_FALSE(c.closed());

    own_redis.signal(SIGCONT);
    CHECK(eventually([&] { return answers_200(server.port(), "/readyz"); }, 15s));
    redis_client redis(own_redis.port());
    REQUIRE(wait_numsub(redis, ch));
    CHECK(redis.publish(ch, "thawed") == 1);
    CHECK(c.read_until("data: thawed\n\n"));
}

TEST_CASE("AUTH against a frozen Redis does not block the subscriber thread") {
    redis_server own_redis(free_port(), {"--requirepass", "sesame"}, "sesame");
    own_redis.signal(SIGSTOP);
    jugglite_server server({}, "redis://sesame@127.0.0.1:" + std::to_string(own_redis.port()));
    for (int i = 0; i < 10; ++i) {
        CHECK(answers_200(server.port(), "/livez"));
        CHECK_FALSE(answers_200(server.port(), "/readyz"));
        std::this_thread::sleep_for(500ms);
    }
    own_redis.signal(SIGCONT);
    CHECK(eventually([&] { return answers_200(server.port(), "/readyz"); }, 15s));
}

TEST_CASE("an ACL that forbids one channel: the others deliver, the stream is told, health is about the link") {
    redis_server own_redis(free_port(), {"--user", "jugg", "on", ">pw", "resetchannels", "&ok*",
                                         "+subscribe", "+unsubscribe", "+ping"});
    jugglite_server server({}, "redis://jugg:pw@127.0.0.1:" + std::to_string(own_redis.port()));
    auto ok_ch = unique_channel("ok");
    auto bad_ch = unique_channel("bad");
    auto c = raw_client::tcp(server.port());
    c.get("/stream?channel=" + ok_ch + "," + bad_ch);
    // Registered with the allowed channel only, once Redis confirmed it.
    REQUIRE(c.read_until(": registered to channels: " + ok_ch + "\n"));
    redis_client redis(own_redis.port());
    CHECK(redis.publish(ok_ch, "allowed") == 1);
    CHECK(c.read_until("data: allowed\n\n"));
    CHECK(metric(server.port(), "jugglite_redis_channels_refused_total") == 1);
    CHECK(metric(server.port(), "jugglite_stream_channels_dropped_total") == 1);
    CHECK(answers_200(server.port(), "/readyz"));
    CHECK(server.log().find("refused") != std::string::npos);

    // After a Redis restart the resubscription meets the same ACL: ready again, and the
    // allowed channel delivers again.
    own_redis.stop();
    own_redis.start();
    CHECK(eventually([&] { return answers_200(server.port(), "/readyz"); }, 15s));
    redis_client again(own_redis.port());
    REQUIRE(wait_numsub(again, ok_ch));
    CHECK(again.publish(ok_ch, "after restart") == 1);
    CHECK(c.read_until("data: after restart\n\n"));

    // A stream that asked only for forbidden channels opens with none.
    auto none = raw_client::tcp(server.port());
    none.get("/stream?channel=" + bad_ch);
    CHECK(none.read_until(": registered to channels: \n"));

    // The ACL shrinks while streams are open: Redis drops the link, the resubscription is
    // refused for one channel, and the stream that had it keeps the other, with a comment.
    auto ok2 = unique_channel("ok");
    auto two = raw_client::tcp(server.port());
    two.get("/stream?channel=" + ok_ch + "," + ok2);
    REQUIRE(two.read_until(": registered to channels: " + ok_ch + ", " + ok2 + "\n"));
    again.command({"ACL", "SETUSER", "jugg", "resetchannels", "&" + ok_ch});
    CHECK(two.read_until(": channel " + ok2 + " refused by redis\n\n", 15s));
    CHECK(eventually([&] { return answers_200(server.port(), "/readyz"); }, 15s));
    REQUIRE(wait_numsub(again, ok_ch));
    CHECK(again.publish(ok_ch, "still here") == 1);
    CHECK(two.read_until("data: still here\n\n"));
    CHECK_FALSE(two.closed());
}

TEST_CASE("registered means subscribed: a message published on seeing the comment arrives") {
    jugglite_server server;
    redis_client redis(shared_redis().port());
    int delivered = 0;
    constexpr int tries = 50;
    for (int i = 0; i < tries; ++i) {
        auto ch = unique_channel("reg");
        auto c = open_stream(server.port(), "/stream?channel=" + ch);
        if (redis.publish(ch, "first") == 1 && c.read_until("data: first\n\n", 2s)) ++delivered;
    }
    CHECK(delivered == tries);
}

TEST_CASE("a stream waiting for Redis is turned away with a retry an EventSource follows") {
    int port = free_port();  // nothing listens there
    jugglite_server server({"--register-timeout", "1"}, "redis://127.0.0.1:" + std::to_string(port));
    auto ch = unique_channel();
    check_retry_answer(http_get(server.port(), "/stream?channel=" + ch, true), "redis is not ready");
    std::string plain = http_get(server.port(), "/stream?channel=" + ch);
    CHECK(plain.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    CHECK(plain.find("Retry-After: ") != std::string::npos);
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="redis"})") == 2);
    // A stream that asked for no channel waits for nothing.
    auto none = raw_client::tcp(server.port());
    none.get("/stream");
    CHECK(none.read_until(": registered to channels: \n"));
}

TEST_CASE("a stream that waits while Redis restarts registers once it is back") {
    redis_server own_redis;
    jugglite_server server({"--register-timeout", "30"}, own_redis.url());
    auto ch = unique_channel();
    auto c = open_stream(server.port(), "/stream?channel=" + ch);
    own_redis.stop();
    REQUIRE(eventually([&] { return !answers_200(server.port(), "/readyz"); }));
    auto during = raw_client::tcp(server.port());
    during.get("/stream?channel=" + ch);
    CHECK_FALSE(during.read_until("registered", 500ms));  // not before Redis confirms
    own_redis.start();
    CHECK(during.read_until(": registered to channels: " + ch + "\n", 20s));
    redis_client redis(own_redis.port());
    CHECK(redis.publish(ch, "back") == 1);
    CHECK(c.read_until("data: back\n\n"));
    CHECK(during.read_until("data: back\n\n"));
}

TEST_CASE("unsubscribe waits out the grace period, so a reload costs no Redis command") {
    jugglite_server server({"--unsubscribe-grace", "2"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    {
        auto c = open_stream(server.port(), "/stream?channel=" + ch);
        REQUIRE(wait_numsub(redis, ch));
    }
    // The reload: gone and back within the grace period; the subscription never lapses.
    auto again = open_stream(server.port(), "/stream?channel=" + ch);
    CHECK_FALSE(eventually([&] { return redis.numsub(ch) == 0; }, 3s));
    again.close();
    CHECK_FALSE(eventually([&] { return redis.numsub(ch) == 0; }, 1s));
    CHECK(wait_numsub(redis, ch, 0));
}

TEST_CASE("--max-channels: a stream needing new channels past the cap is turned away to retry") {
    jugglite_server server({"--max-channels", "2", "--unsubscribe-grace", "0"});
    auto a = unique_channel(), b = unique_channel(), c = unique_channel();
    auto s1 = open_stream(server.port(), "/stream?channel=" + a + "," + b);
    check_retry_answer(http_get(server.port(), "/stream?channel=" + c, true), "channel limit reached");
    CHECK(http_get(server.port(), "/stream?channel=" + c).starts_with("HTTP/1.1 503"));
    // Known channels are fine.
    auto s2 = open_stream(server.port(), "/stream?channel=" + a);
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="channels"})") == 2);
    s1.close();
    s2.close();
    CHECK(eventually([&] {
        auto s3 = raw_client::tcp(server.port());
        s3.get("/stream?channel=" + c);
        return s3.read_until(": registered to channels: " + c + "\n", 1s);
    }));
}

TEST_CASE("--max-conns: an EventSource gets a retry, others 503, and /readyz still answers") {
    jugglite_server server({"--max-conns", "1"});
    // The harness's own readiness probe may still hold the one slot for a moment.
    auto ch = unique_channel();
    std::optional<raw_client> s;
    REQUIRE(eventually([&] {
        s.emplace(raw_client::tcp(server.port()));
        s->get("/stream?channel=" + ch);
        return s->read_until(": registered to channels: " + ch + "\n", 1s);
    }));
    auto base = metric(server.port(), R"(jugglite_connections_refused_total{reason="capacity"})");
    check_retry_answer(http_get(server.port(), "/stream?channel=x", true), "connection limit reached");
    CHECK(http_get(server.port(), "/stream?channel=x").starts_with("HTTP/1.1 503"));
    CHECK(answers_200(server.port(), "/readyz"));
    CHECK(answers_200(server.port(), "/livez"));
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="capacity"})") == base + 2);
}

TEST_CASE("a message over --max-message-bytes is dropped once at the redis thread and counted") {
    jugglite_server server({"--max-message-bytes", "4096"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto a = open_stream(server.port(), "/stream?channel=" + ch);
    auto b = open_stream(server.port(), "/stream?channel=" + ch);
    REQUIRE(wait_numsub(redis, ch));
    CHECK(redis.publish(ch, std::string(4097, 'x')) == 1);
    CHECK(redis.publish(ch, std::string(4096, 'y')) == 1);  // at the limit: delivered
    CHECK(a.read_until("data: " + std::string(4096, 'y') + "\n\n"));
    CHECK(b.read_until("data: " + std::string(4096, 'y') + "\n\n"));
    CHECK(a.received().find("xxxx") == std::string::npos);
    CHECK(metric(server.port(), R"(jugglite_messages_dropped_total{reason="too_large"})") == 1);
    CHECK(metric(server.port(), "jugglite_slow_consumers_total") == 0);
    CHECK(server.log().find("larger than --max-message-bytes") != std::string::npos);
}

TEST_CASE("after a Redis restart thousands of channels are subscribed again, in batches") {
    redis_server own_redis;
    jugglite_server server({}, own_redis.url());
    const std::string stem = unique_channel("many");
    constexpr int streams = 40, per = 64;  // 2,560 channels: three SUBSCRIBE batches
    std::vector<raw_client> clients;
    for (int i = 0; i < streams; ++i) {
        std::string list;
        for (int k = 0; k < per; ++k) list += (k ? "," : "") + stem + "-" + std::to_string(i * per + k);
        clients.push_back(open_stream(server.port(), "/stream?channel=" + list));
    }
    REQUIRE(eventually([&] { return metric(server.port(), "jugglite_redis_subscribed_channels") == streams * per; }));
    own_redis.stop();
    own_redis.start();
    CHECK(eventually([&] { return answers_200(server.port(), "/readyz"); }, 15s));
    CHECK(metric(server.port(), "jugglite_redis_subscribed_channels") == streams * per);
    redis_client redis(own_redis.port());
    const std::string last = stem + "-" + std::to_string(streams * per - 1);
    CHECK(redis.publish(last, "still there") == 1);
    CHECK(clients.back().read_until("data: still there\n\n"));
}

// The auth callback through the real binary, against a small application on a real socket
// (support/auth_app) that reads a session cookie, as a Rails app would.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "support/auth_app.h"
#include "support/sse.h"
#include "support/tokens.h"

using namespace test;

namespace {

raw_client request_as(int port, const std::string& target, const std::string& user,
                      bool event_stream = true, const std::string& more = {}) {
    auto c = raw_client::tcp(port);
    c.send("GET " + target + " HTTP/1.1\r\nHost: x\r\nUser-Agent: test-agent/1\r\n" +
           (user.empty() ? std::string() : "Cookie: a=1; session=" + user + "\r\n") +
           (event_stream ? "Accept: text/event-stream\r\n" : "") + more + "\r\n");
    return c;
}

std::string status_line(const std::string& response) {
    return response.substr(0, response.find("\r\n"));
}

}  // namespace

TEST_CASE("the callback grants a user their own channel and not another's") {
    auth_app app;
    jugglite_server server({"--auth-url", app.url()});
    redis_client redis(shared_redis().port());
    auto tag = unique_channel("");
    std::string alice = "alice" + tag, bob = "bob" + tag;
    auto c = request_as(server.port(),
                        "/s?channel=user_" + alice + ",user_" + bob + ",public_" + tag, alice);
    REQUIRE(c.read_until(": registered to channels: user_" + alice + ", public_" + tag + "\n"));
    auto seen = app.last_headers();
    CHECK(seen[":request"] == "GET /auth HTTP/1.1");
    CHECK(seen["cookie"] == "a=1; session=" + alice);
    CHECK(seen["user-agent"] == "test-agent/1");
    CHECK(seen["x-jugglite-channels"] == "user_" + alice + ",user_" + bob + ",public_" + tag);
    CHECK(seen["x-original-uri"] ==
          "/s?channel=user_" + alice + ",user_" + bob + ",public_" + tag);
    CHECK(seen.count("x-forwarded-for") == 0);  // the peer is no trusted proxy
    REQUIRE(wait_numsub(redis, "user_" + alice));
    CHECK(redis.numsub("user_" + bob) == 0);
    redis.publish("user_" + bob, "for bob");
    redis.publish("user_" + alice, "for alice");
    REQUIRE(c.read_until("data: for alice\n\n"));
    CHECK(c.received().find("for bob") == std::string::npos);
}

TEST_CASE("no session gets the application's 401, a banned user its 403") {
    auth_app app;
    jugglite_server server({"--auth-url", app.url()});
    auto anonymous = request_as(server.port(), "/s?channel=a", "");
    REQUIRE(anonymous.read_until_closed());
    CHECK(status_line(anonymous.received()) == "HTTP/1.1 401 Unauthorized");
    CHECK(anonymous.received().find("WWW-Authenticate: Bearer") != std::string::npos);
    auto banned = request_as(server.port(), "/s?channel=a", "banned");
    REQUIRE(banned.read_until_closed());
    CHECK(status_line(banned.received()) == "HTTP/1.1 403 Forbidden");
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="auth"})") == 2);
}

TEST_CASE("while the application is down, an EventSource is told to retry and others get 503") {
    auth_app app;
    jugglite_server server({"--auth-url", app.url()});
    app.stop();
    auto es = request_as(server.port(), "/s?channel=a", "alice");
    REQUIRE(es.read_until_closed());
    CHECK(status_line(es.received()) == "HTTP/1.1 200 OK");
    CHECK(es.body().find(": authorization is unavailable\nretry: ") != std::string::npos);
    auto plain = request_as(server.port(), "/s?channel=a", "alice", false);
    REQUIRE(plain.read_until_closed());
    CHECK(status_line(plain.received()) == "HTTP/1.1 503 Service Unavailable");
    CHECK(plain.received().find("Retry-After: ") != std::string::npos);
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="auth_unavailable"})") == 2);
    CHECK(metric(server.port(), "jugglite_connections_open") == 0);
}

TEST_CASE("past --auth-timeout the request fails closed") {
    auth_app app;
    app.set_delay(3s);
    jugglite_server server({"--auth-url", app.url(), "--auth-timeout", "0.5"});
    auto es = request_as(server.port(), "/s?channel=a", "alice");
    REQUIRE(es.read_until_closed(5s));
    CHECK(es.body().find(": authorization is unavailable\nretry: ") != std::string::npos);
    CHECK(metric(server.port(), "jugglite_auth_failed_total") == 1);
}

TEST_CASE("a slow callback does not hold back messages to open streams") {
    auth_app app;
    jugglite_server server({"--auth-url", app.url()});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel("public");
    auto open = request_as(server.port(), "/s?channel=" + ch, "alice");
    REQUIRE(open.read_until(": registered to channels: " + ch));
    REQUIRE(wait_numsub(redis, ch));
    app.set_delay(1500ms);
    std::vector<raw_client> waiting;
    for (int i = 0; i < 20; ++i)
        waiting.push_back(request_as(server.port(), "/s?channel=" + ch, fmt::format("u{}", i)));
    REQUIRE(eventually([&] { return metric(server.port(), "jugglite_auth_in_flight") == 20; }));
    redis.publish(ch, "while they wait");
    REQUIRE(open.read_until("data: while they wait\n\n"));
    // The message was written while every one of the 20 calls was still unanswered.
    CHECK(app.requests() == 1);
    CHECK(count_reading(waiting, ": registered to channels: ", 5s) == 20);
}

TEST_CASE("calls reuse keep-alive connections, and --auth-cache-seconds answers repeats") {
    auth_app app;
    jugglite_server server({"--auth-url", app.url(), "--shards", "1"});
    for (int i = 0; i < 30; ++i) {
        auto c = request_as(server.port(), "/s?channel=a", fmt::format("user{}", i));
        REQUIRE(c.read_until(": registered to channels: "));
    }
    CHECK(app.requests() == 30);
    CHECK(app.connections() < 5);

    auth_app cached_app;
    jugglite_server cached({"--auth-url", cached_app.url(), "--auth-cache-seconds", "60"});
    for (int i = 0; i < 5; ++i) {
        auto c = request_as(cached.port(), "/s?channel=a", "same-user");
        REQUIRE(c.read_until(": registered to channels: "));
    }
    auto other = request_as(cached.port(), "/s?channel=a", "another-user");
    REQUIRE(other.read_until(": registered to channels: "));
    CHECK(cached_app.requests() == 2);
    CHECK(metric(cached.port(), "jugglite_auth_cache_hits_total") == 4);
}

TEST_CASE("the callback over a unix socket, nginx's unix:/path:/uri form") {
    std::string dir = temp_dir();
    auth_app app(dir + "/app.sock");
    jugglite_server server({"--auth-url", "unix:" + dir + "/app.sock:/check"});
    auto c = request_as(server.port(), "/s?channel=user_carol", "carol");
    REQUIRE(c.read_until(": registered to channels: user_carol\n"));
    CHECK(app.last_headers()[":request"] == "GET /check HTTP/1.1");
}

TEST_CASE("with both a token key and a callback, a token decides and the callback serves the rest") {
    const std::string secret = "both-secret-0123456789";
    auth_app app;
    jugglite_server server({"--auth-url", app.url(), "--jwt-secret", secret});
    auto tok = sign_hs256(R"({"channels":["tok_*"],"exp":4102444800})", secret);
    auto by_token = request_as(server.port(), "/s?channel=tok_a,user_dave&token=" + tok, "dave");
    REQUIRE(by_token.read_until(": registered to channels: tok_a\n"));
    CHECK(app.requests() == 0);
    auto bad_token = request_as(server.port(), "/s?channel=tok_a&token=x.y.z", "dave");
    REQUIRE(bad_token.read_until_closed());
    CHECK(status_line(bad_token.received()) == "HTTP/1.1 401 Unauthorized");
    CHECK(app.requests() == 0);
    auto by_session = request_as(server.port(), "/s?channel=tok_a,user_dave", "dave");
    REQUIRE(by_session.read_until(": registered to channels: user_dave\n"));
    CHECK(app.requests() == 1);
}

TEST_CASE("X-Forwarded-For reaches the application only from a trusted proxy") {
    auth_app app;
    jugglite_server trusting({"--auth-url", app.url(), "--trusted-proxies", "10.9.9.9,127.0.0.1"});
    auto c = request_as(trusting.port(), "/s?channel=a", "erin", true, "X-Forwarded-For: 198.51.100.7\r\n");
    REQUIRE(c.read_until(": registered to channels: "));
    CHECK(app.last_headers()["x-forwarded-for"] == "198.51.100.7");
    jugglite_server wary({"--auth-url", app.url(), "--trusted-proxies", "10.9.9.9"});
    auto d = request_as(wary.port(), "/s?channel=a", "erin", true, "X-Forwarded-For: 198.51.100.7\r\n");
    REQUIRE(d.read_until(": registered to channels: "));
    CHECK(app.last_headers().count("x-forwarded-for") == 0);
}

TEST_CASE("--auth-revalidate ends a stream whose grant the application withdrew, and only it") {
    auth_app app;
    jugglite_server server({"--auth-url", app.url(), "--auth-revalidate", "1"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel("public");
    auto kept = request_as(server.port(), "/s?channel=" + ch, "frank");
    auto revoked = request_as(server.port(), "/s?channel=" + ch, "grace");
    REQUIRE(kept.read_until(": registered to channels: "));
    REQUIRE(revoked.read_until(": registered to channels: "));
    // Each stream is asked about again within 1 s (its tick slice) of the interval.
    REQUIRE(eventually([&] { return app.requests() >= 4; }));
    CHECK_FALSE(revoked.closed());
    app.revoke("grace");
    REQUIRE(revoked.read_until_closed(5s));
    CHECK(revoked.body().find(": access withdrawn\nretry: ") != std::string::npos);
    CHECK(metric(server.port(), "jugglite_streams_revoked_total") == 1);
    redis.publish(ch, "still for frank");
    CHECK(kept.read_until("data: still for frank\n\n"));
    CHECK_FALSE(kept.closed());
    // The application going down changes nothing for open streams.
    app.stop();
    std::this_thread::sleep_for(2500ms);
    redis.publish(ch, "after the app went down");
    CHECK(kept.read_until("data: after the app went down\n\n"));
}

TEST_CASE("a burst past the calls in flight waits its turn, and every stream gets in") {
    raise_nofile_limit();
    auth_app app;
    app.set_delay(100ms);  // so that the whole burst is asked at once
    jugglite_server server({"--auth-url", app.url(), "--shards", "1", "--auth-timeout", "20"});
    constexpr int n = 1500;  // past limits::auth_calls_per_shard (1024)
    std::vector<raw_client> clients;
    for (int i = 0; i < n; ++i)
        clients.push_back(request_as(server.port(), "/s?channel=public_burst", fmt::format("b{}", i)));
    CHECK(count_reading(clients, ": registered to channels: public_burst", 20s) == n);
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="auth_unavailable"})") == 0);
    CHECK(app.requests() == n);
}

TEST_CASE("at --max-conns a stream is turned away before the application is asked") {
    auth_app app;
    jugglite_server server({"--auth-url", app.url(), "--max-conns", "1", "--shards", "1"});
    // The server's own start-up probe may hold the one slot for a moment: try until the
    // first stream gets it.
    std::optional<raw_client> first;
    REQUIRE(eventually([&] {
        first.emplace(request_as(server.port(), "/s?channel=a", "henry"));
        return first->read_until(": registered to channels: ", 1s);
    }));
    auto second = request_as(server.port(), "/s?channel=a", "irene");
    REQUIRE(second.read_until_closed());
    CHECK(second.body().find(": connection limit reached\nretry: ") != std::string::npos);
    CHECK(app.requests() == 1);
}

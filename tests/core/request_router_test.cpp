// Tests for route_request (methods, reserved paths, --path, channel lists, --allowed-channels)
// and the exact bytes of stream_response and simple_response.
#include "core/request_router.h"

#include <doctest/doctest.h>

#include <string>
#include <variant>
#include <vector>

using namespace jugglite;

namespace {

http_request get(std::string_view path, std::string_view query = "") {
    return http_request{"GET", path, query, ""};
}

stream_route expect_stream(const route& r) {
    REQUIRE(std::holds_alternative<stream_route>(r));
    return std::get<stream_route>(r);
}

http_error expect_error(const route& r) {
    REQUIRE(std::holds_alternative<http_error>(r));
    return std::get<http_error>(r);
}

using names = std::vector<std::string>;

}  // namespace

TEST_CASE("GET and HEAD stream, other methods are 405") {
    config cfg;
    auto s = expect_stream(route_request(get("/", "channel=a,b"), cfg));
    CHECK(s.channels == names{"a", "b"});
    CHECK(!s.head_only);

    auto h = expect_stream(route_request({"HEAD", "/", "channel=a", ""}, cfg));
    CHECK(h.channels == names{"a"});
    CHECK(h.head_only);

    for (const char* m : {"POST", "PUT", "DELETE", "OPTIONS", "get", "Get"}) {
        CAPTURE(m);
        auto e = expect_error(route_request({m, "/", "channel=a", ""}, cfg));
        CHECK(e.status == 405);
        CHECK(e.reason == "only GET and HEAD are allowed");
    }
}

TEST_CASE("any path streams when --path is unset") {
    config cfg;
    CHECK(expect_stream(route_request(get("/anything/deep", "channel=x"), cfg)).channels ==
          names{"x"});
}

TEST_CASE("no channel parameter still opens a stream with no channels") {
    config cfg;
    auto s = expect_stream(route_request(get("/"), cfg));
    CHECK(s.channels.empty());
}

TEST_CASE("/healthz and /metrics are reserved, also under --path") {
    config cfg;
    CHECK(std::holds_alternative<health_route>(route_request(get("/healthz"), cfg)));
    CHECK(std::holds_alternative<metrics_route>(route_request(get("/metrics"), cfg)));
    CHECK(std::holds_alternative<health_route>(route_request({"HEAD", "/healthz", "", ""}, cfg)));
    cfg.path = "/events";
    CHECK(std::holds_alternative<health_route>(route_request(get("/healthz"), cfg)));
    CHECK(std::holds_alternative<metrics_route>(route_request(get("/metrics", "x=1"), cfg)));
    // Only the exact paths are reserved.
    CHECK(expect_error(route_request(get("/healthz/"), cfg)).status == 404);
    CHECK(expect_error(route_request({"POST", "/healthz", "", ""}, cfg)).status == 405);
}

TEST_CASE("/readyz and /healthz are readiness, /livez is liveness") {
    config cfg;
    cfg.path = "/stream";
    for (auto p : {"/healthz", "/readyz"}) {
        auto r = route_request(get(p), cfg);
        REQUIRE(std::holds_alternative<health_route>(r));
        CHECK(std::get<health_route>(r).kind == health_route::readiness);
    }
    auto r = route_request(get("/livez"), cfg);
    REQUIRE(std::holds_alternative<health_route>(r));
    CHECK(std::get<health_route>(r).kind == health_route::liveness);
}

TEST_CASE("retry_response: a 200 stream an EventSource retries after retry_ms") {
    // The stream head (pinned byte for byte by the stream_response tests), the reason, the retry.
    CHECK(retry_response(2500, "connection limit reached") ==
          stream_response({{}, true}) + ": connection limit reached\n" + "retry: 2500\n\n");
}

TEST_CASE("--path restricts streaming to one exact path") {
    config cfg;
    cfg.path = "/events";
    CHECK(expect_stream(route_request(get("/events", "channel=a"), cfg)).channels == names{"a"});
    for (const char* p : {"/", "/events/", "/Events", "/events2", "/other"}) {
        CAPTURE(p);
        auto e = expect_error(route_request(get(p, "channel=a"), cfg));
        CHECK(e.status == 404);
        CHECK(e.reason == "not found");
    }
}

TEST_CASE("a bad channel list is 400 with the matching description") {
    config cfg;
    auto e = expect_error(route_request(get("/", "channel[]=a"), cfg));
    CHECK(e.status == 400);
    CHECK(e.reason == "channel[] is not supported; use channel=a,b");
    CHECK(expect_error(route_request(get("/", "channel=%0A"), cfg)).reason ==
          "channel name contains a control character");
    CHECK(expect_error(route_request(get("/", "channel=%x"), cfg)).reason ==
          "bad percent escape in query");
    CHECK(expect_error(route_request(get("/", "channel=" + std::string(257, 'a')), cfg)).reason ==
          "channel name too long");
}

TEST_CASE("channels outside --allowed-channels are dropped, the order of the rest kept") {
    config cfg;
    cfg.allowed_channels = {"pub.*", "lobby"};
    auto s = expect_stream(route_request(get("/", "channel=secret,pub.b,lobby,pub.a,x"), cfg));
    CHECK(s.channels == names{"pub.b", "lobby", "pub.a"});
    auto none = expect_stream(route_request(get("/", "channel=secret"), cfg));
    CHECK(none.channels.empty());
}

TEST_CASE("stream_response: exact head plus the registration comment") {
    CHECK(stream_response({{"a", "b"}, false}) ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/event-stream;charset=utf-8\r\n"
          "Cache-Control: no-cache\r\n"
          "X-Accel-Buffering: no\r\n"
          "Connection: close\r\n"
          "\r\n"
          ": registered to channels: a, b\n");
    CHECK(stream_response({{}, false}).ends_with("\r\n\r\n: registered to channels: \n"));
}

TEST_CASE("stream_response for HEAD is the head alone") {
    CHECK(stream_response({{"a"}, true}) ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/event-stream;charset=utf-8\r\n"
          "Cache-Control: no-cache\r\n"
          "X-Accel-Buffering: no\r\n"
          "Connection: close\r\n"
          "\r\n");
}

TEST_CASE("simple_response: status line, one-line text body with its exact length, close") {
    CHECK(simple_response(404, "not found") ==
          "HTTP/1.1 404 Not Found\r\n"
          "Content-Type: text/plain;charset=utf-8\r\n"
          "Content-Length: 10\r\n"
          "Cache-Control: no-cache\r\n"
          "Connection: close\r\n"
          "\r\n"
          "not found\n");
    CHECK(simple_response(200, "ok") ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/plain;charset=utf-8\r\n"
          "Content-Length: 3\r\n"
          "Cache-Control: no-cache\r\n"
          "Connection: close\r\n"
          "\r\n"
          "ok\n");
}

TEST_CASE("simple_response: 503 carries Retry-After") {
    CHECK(simple_response(503, "too many connections") ==
          "HTTP/1.1 503 Service Unavailable\r\n"
          "Content-Type: text/plain;charset=utf-8\r\n"
          "Content-Length: 21\r\n"
          "Cache-Control: no-cache\r\n"
          "Retry-After: 5\r\n"
          "Connection: close\r\n"
          "\r\n"
          "too many connections\n");
}

TEST_CASE("simple_response: status texts of every status the server sends") {
    CHECK(simple_response(400, "x").starts_with("HTTP/1.1 400 Bad Request\r\n"));
    CHECK(simple_response(405, "x").starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(simple_response(408, "x").starts_with("HTTP/1.1 408 Request Timeout\r\n"));
    CHECK(
        simple_response(431, "x").starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    CHECK(simple_response(500, "x").starts_with("HTTP/1.1 500 Error\r\n"));
    CHECK(simple_response(400, "x").find("Retry-After") == std::string::npos);
}

TEST_CASE("with --history a stream resumes from Last-Event-ID, else from lastEventId") {
    config cfg;
    http_request req = get("/", "channel=a&lastEventId=5-0");
    CHECK_FALSE(expect_stream(route_request(req, cfg)).resume_from);  // no --history: ignored
    cfg.history_enabled = true;
    CHECK(expect_stream(route_request(req, cfg)).resume_from == "5-0");
    req.last_event_id = "7-1";
    CHECK(expect_stream(route_request(req, cfg)).resume_from == "7-1");
    CHECK_FALSE(expect_stream(route_request(get("/", "channel=a&lastEventId="), cfg)).resume_from);
}

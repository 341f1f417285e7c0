// Publish -> deliver through the real binary: framing, channels, namespace, payloads.
#include <doctest/doctest.h>

#include "support/sse.h"

using namespace test;

namespace {

// Opens a stream on `channel`, waits until jugglite subscribed in Redis, publishes
// `payload`, and returns the body read up to the end of that frame.
std::string roundtrip(jugglite_server& server, const std::string& channel, std::string_view payload,
                      std::string_view expect) {
    redis_client redis(shared_redis().port());
    auto c = open_stream(server.port(), "/stream?channel=" + channel);
    REQUIRE(wait_numsub(redis, channel));
    CHECK(redis.publish(channel, payload) == 1);
    CHECK(c.read_until(expect));
    return c.body();
}

}  // namespace

TEST_CASE("publish -> deliver: the exact frame bytes") {
    jugglite_server server;
    auto ch = unique_channel();
    std::string body = roundtrip(server, ch, "hello", "data: hello\n\n");
    CHECK(body == ": registered to channels: " + ch + "\ndata: hello\n\n");
}

TEST_CASE("several channels on one connection, each message once, in order") {
    jugglite_server server;
    redis_client redis(shared_redis().port());
    auto a = unique_channel(), b = unique_channel();
    auto c = open_stream(server.port(), "/stream?channel=" + a + "," + b);
    CHECK(c.body() == ": registered to channels: " + a + ", " + b + "\n");
    REQUIRE(wait_numsub(redis, a));
    REQUIRE(wait_numsub(redis, b));
    redis.publish(a, "one");
    redis.publish(b, "two");
    redis.publish(a, "three");
    REQUIRE(c.read_until("data: three\n\n"));
    CHECK(c.body().ends_with("data: one\n\ndata: two\n\ndata: three\n\n"));
}

TEST_CASE("channel list decoding: duplicates, empties and escapes") {
    jugglite_server server;
    auto c = open_stream(server.port(), "/stream?channel=a,b,a,,%2Cc,&channel=d+e");
    CHECK(c.body() == ": registered to channels: a, b, c, d e\n");
}

TEST_CASE("--namespace prefixes the Redis channel") {
    jugglite_server server({"--namespace", "app1:"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto c = open_stream(server.port(), "/stream?channel=" + ch);
    REQUIRE(wait_numsub(redis, "app1:" + ch));
    CHECK(redis.numsub(ch) == 0);
    CHECK(redis.publish(ch, "not for us") == 0);
    CHECK(redis.publish("app1:" + ch, "namespaced") == 1);
    REQUIRE(c.read_until("data: namespaced\n\n"));
    CHECK(c.body().find("not for us") == std::string::npos);
}

TEST_CASE("multi-line data: CRLF, LF and lone CR each start a data line") {
    jugglite_server server;
    std::string body = roundtrip(server, unique_channel(), "a\r\nb\rc\nd\n", "data: d\ndata: \n\n");
    CHECK(body.ends_with("data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"));
}

TEST_CASE("JSON event and id become event: and id: lines") {
    jugglite_server server;
    std::string payload = R"({"event":"update","id":42,"x":1})";
    std::string body = roundtrip(server, unique_channel(), payload, payload + "\n\n");
    CHECK(body.ends_with("event: update\nid: 42\ndata: " + payload + "\n\n"));
}

TEST_CASE("a JSON id containing a newline is dropped, the data is kept") {
    jugglite_server server;
    std::string payload = R"({"id":"1\nevent: evil","event":"ok"})";
    std::string body = roundtrip(server, unique_channel(), payload, payload + "\n\n");
    CHECK(body.ends_with("event: ok\ndata: " + payload + "\n\n"));
}

TEST_CASE("payloads the Ruby Jugglite crashed on are delivered as plain data") {
    jugglite_server server;
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto c = open_stream(server.port(), "/stream?channel=" + ch);
    REQUIRE(wait_numsub(redis, ch));
    const std::string binary("\x00\x01\xff\xfe bin", 8);
    const std::string bad_utf8 = "caf\xc3 \xe9t\xe9";
    for (const std::string& p : {binary, bad_utf8, std::string("[1,2,3]"), std::string("12.5"),
                                 std::string("null"), std::string("{\"event\":")})
        CHECK(redis.publish(ch, p) == 1);
    redis.publish(ch, "end");
    REQUIRE(c.read_until("data: end\n\n"));
    std::string expected = "data: " + binary + "\n\ndata: " + bad_utf8 +
                           "\n\ndata: [1,2,3]\n\ndata: 12.5\n\ndata: null\n\ndata: {\"event\":\n\n"
                           "data: end\n\n";
    CHECK(c.body().ends_with(expected));
}

TEST_CASE("a 100 KB message arrives whole") {
    jugglite_server server;
    std::string payload(100 * 1024, 'x');
    for (std::size_t i = 0; i < payload.size(); i += 97) payload[i] = static_cast<char>('a' + i % 26);
    std::string body = roundtrip(server, unique_channel(), payload, payload + "\n\n");
    CHECK(body.ends_with("data: " + payload + "\n\n"));
}

TEST_CASE("keepalive comments arrive every --keepalive seconds") {
    jugglite_server server({"--keepalive", "1"});
    auto c = open_stream(server.port(), "/stream?channel=" + unique_channel());
    CHECK(c.read_until(": keepalive 1\n\n", 4s));  // the count of open connections
}

TEST_CASE("the last disconnect sends UNSUBSCRIBE") {
    jugglite_server server;
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto a = open_stream(server.port(), "/stream?channel=" + ch);
    auto b = open_stream(server.port(), "/stream?channel=" + ch);
    REQUIRE(wait_numsub(redis, ch, 1));
    a.close();
    // One stream is still there: still subscribed.
    CHECK_FALSE(eventually([&] { return redis.numsub(ch) == 0; }, 500ms));
    b.close();
    CHECK(wait_numsub(redis, ch, 0));
}

TEST_CASE("HEAD answers the stream headers and closes") {
    jugglite_server server;
    auto c = raw_client::tcp(server.port());
    c.send("HEAD /stream?channel=x HTTP/1.1\r\nHost: a\r\n\r\n");
    REQUIRE(c.read_until_closed());
    CHECK(c.received().starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(c.body().empty());
}

TEST_CASE("--path restricts streaming to one path") {
    jugglite_server server({"--path", "/events"});
    auto ok = open_stream(server.port(), "/events?channel=a");
    auto c = raw_client::tcp(server.port());
    c.get("/stream?channel=a");
    REQUIRE(c.read_until_closed());
    CHECK(c.received().starts_with("HTTP/1.1 404 Not Found\r\n"));
}

TEST_CASE("--socket: streams over a unix socket") {
    std::string path = temp_dir() + "/jugglite.sock";
    jugglite_server server({"--socket", path});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    REQUIRE(eventually([&] { return ::access(path.c_str(), F_OK) == 0; }));
    auto c = raw_client::unix_socket(path);
    c.get("/stream?channel=" + ch);
    REQUIRE(c.read_until(": registered to channels: " + ch + "\n"));
    REQUIRE(wait_numsub(redis, ch));
    redis.publish(ch, "via unix");
    CHECK(c.read_until("data: via unix\n\n"));
}

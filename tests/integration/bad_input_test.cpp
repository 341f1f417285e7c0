// Bad requests each get the right status and a one-line text/plain body, and never
// disturb another connection.
#include <doctest/doctest.h>

#include "support/sse.h"

using namespace test;

namespace {

// Sends `request` on a fresh connection and returns everything until the server closes.
std::string answer(int port, std::string_view request) {
    auto c = raw_client::tcp(port);
    c.send(request);
    REQUIRE(c.read_until_closed(5s));
    return c.received();
}

void check_status(const std::string& response, std::string_view status_line, std::string_view body) {
    CHECK(response.starts_with(status_line));
    CHECK(response.find("Content-Type: text/plain;charset=utf-8\r\n") != std::string::npos);
    CHECK(response.find("Connection: close\r\n") != std::string::npos);
    CHECK(response.ends_with("\r\n\r\n" + std::string(body) + "\n"));
}

std::string get(std::string_view target) {
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n\r\n";
}

}  // namespace

TEST_CASE("each bad input gets its status while a healthy stream keeps flowing") {
    jugglite_server server;
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto watcher = open_stream(server.port(), "/stream?channel=" + ch);
    REQUIRE(wait_numsub(redis, ch));
    const int port = server.port();

    SUBCASE("malformed request line") {
        check_status(answer(port, "GARBAGE\r\n\r\n"), "HTTP/1.1 400 Bad Request\r\n", "malformed request line");
        check_status(answer(port, "GET /a b HTTP/1.1\r\n\r\n"), "HTTP/1.1 400 Bad Request\r\n",
                     "malformed request line");
        check_status(answer(port, "GET /a HTTP/2.0\r\n\r\n"), "HTTP/1.1 400 Bad Request\r\n",
                     "unsupported HTTP version");
    }
    SUBCASE("binary junk (a TLS hello on the plain port)") {
        check_status(answer(port, std::string("\x16\x03\x01\x02\x00\x01\x00", 7)),
                     "HTTP/1.1 400 Bad Request\r\n", "malformed request line");
    }
    SUBCASE("malformed header") {
        check_status(answer(port, "GET / HTTP/1.1\r\nno colon here\r\n\r\n"), "HTTP/1.1 400 Bad Request\r\n",
                     "malformed header");
    }
    SUBCASE("oversized headers") {
        std::string req = "GET /stream HTTP/1.1\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n";
        check_status(answer(port, req), "HTTP/1.1 431 Request Header Fields Too Large\r\n",
                     "request header fields too large");
    }
    SUBCASE("bad percent escapes") {
        check_status(answer(port, get("/stream?channel=%zz")), "HTTP/1.1 400 Bad Request\r\n",
                     "bad percent escape in query");
        check_status(answer(port, get("/stream?channel=abc%4")), "HTTP/1.1 400 Bad Request\r\n",
                     "bad percent escape in query");
    }
    SUBCASE("channel[]=x") {
        check_status(answer(port, get("/stream?channel[]=x")), "HTTP/1.1 400 Bad Request\r\n",
                     "channel[] is not supported; use channel=a,b");
        check_status(answer(port, get("/stream?channel%5B%5D=x")), "HTTP/1.1 400 Bad Request\r\n",
                     "channel[] is not supported; use channel=a,b");
    }
    SUBCASE("control characters in a channel name") {
        for (auto esc : {"%0A", "%0D", "%00", "%1B", "%7F"})
            check_status(answer(port, get(std::string("/stream?channel=a") + esc + "b")),
                         "HTTP/1.1 400 Bad Request\r\n", "channel name contains a control character");
    }
    SUBCASE("too many channels") {
        std::string list;
        for (int i = 0; i < 65; ++i) list += "c" + std::to_string(i) + ",";
        check_status(answer(port, get("/stream?channel=" + list)), "HTTP/1.1 400 Bad Request\r\n",
                     "too many channels");
    }
    SUBCASE("a channel name too long") {
        check_status(answer(port, get("/stream?channel=" + std::string(257, 'n'))),
                     "HTTP/1.1 400 Bad Request\r\n", "channel name too long");
    }
    SUBCASE("methods other than GET and HEAD") {
        check_status(answer(port, "POST /stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
                     "HTTP/1.1 405 Method Not Allowed\r\n", "only GET and HEAD are allowed");
        check_status(answer(port, "DELETE / HTTP/1.1\r\n\r\n"), "HTTP/1.1 405 Method Not Allowed\r\n",
                     "only GET and HEAD are allowed");
    }
    SUBCASE("a client that hangs up mid-request") {
        auto c = raw_client::tcp(port);
        c.send("GET /stream?chan");
        c.close();
    }

    // The healthy stream saw none of it and still receives.
    CHECK(redis.publish(ch, "still here") == 1);
    CHECK(watcher.read_until("data: still here\n\n"));
    CHECK(watcher.body() == ": registered to channels: " + ch + "\ndata: still here\n\n");
}

TEST_CASE("a request not complete within 10 s gets 408 and is closed (slowloris)") {
    jugglite_server server;
    auto c = raw_client::tcp(server.port());
    c.send("GET /stream?channel=slow HTTP/1.1\r\nHost: x\r\n");  // no blank line, ever
    CHECK_FALSE(c.read_until_closed(8s));                        // not before the limit
    REQUIRE(c.read_until_closed(5s));
    check_status(c.received(), "HTTP/1.1 408 Request Timeout\r\n", "request timeout");
}

TEST_CASE("connections that send nothing hold no slot: the kernel queues a connection with its request") {
    // TCP_DEFER_ACCEPT: until a client sends, its connection is the kernel's half-open
    // entry, not one of jugglite's. With --max-conns 1, silent ones would take the slot.
    jugglite_server server({"--max-conns", "1"});
    std::vector<raw_client> silent;
    for (int i = 0; i < 3; ++i) silent.push_back(raw_client::tcp(server.port()));
    ::usleep(300'000);
    auto stream = raw_client::tcp(server.port());
    stream.get("/stream?channel=silent");
    CHECK(stream.read_until(": registered to channels: silent\n"));
}

TEST_CASE("a request split across many small writes is assembled") {
    jugglite_server server;
    auto c = raw_client::tcp(server.port());
    std::string req = get("/stream?channel=pieces");
    for (char ch : req) {
        c.send(std::string_view(&ch, 1));
        ::usleep(1000);
    }
    CHECK(c.read_until(": registered to channels: pieces\n"));
}

TEST_CASE("--max-conns: the next client gets 503 with Retry-After, a slot frees on close") {
    jugglite_server server({"--max-conns", "3"});
    std::vector<raw_client> streams;
    for (int i = 0; i < 3; ++i) streams.push_back(open_stream(server.port(), "/stream?channel=m"));
    std::string refused = answer(server.port(), get("/stream?channel=m"));
    INFO(refused);
    check_status(refused, "HTTP/1.1 503 Service Unavailable\r\n", "connection limit reached");
    CHECK(refused.find("Retry-After: 5\r\n") != std::string::npos);
    streams.pop_back();
    CHECK(eventually([&] {
        auto c = raw_client::tcp(server.port());
        c.get("/stream?channel=m");
        return c.read_until(": registered to channels: m\n", 1s);
    }));
}

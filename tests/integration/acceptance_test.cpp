// The Ruby Jugglite's own acceptance specs (spec/acceptance/*), re-run as black-box tests.
#include <doctest/doctest.h>

#include "support/sse.h"

using namespace test;

TEST_CASE("stream_and_publish: a GET stays open and starts with the registration comment") {
    jugglite_server server;
    std::string channel = "randomized:test:" + unique_channel();
    auto c = raw_client::tcp(server.port());
    c.get("/?channel=" + channel);
    REQUIRE(c.read_until(": registered to channels: " + channel + "\n"));
    CHECK(c.received().starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(c.received().find("Content-Type: text/event-stream;charset=utf-8\r\n") != std::string::npos);
    // Still open a moment later.
    CHECK_FALSE(c.read_until_closed(300ms));
}

TEST_CASE("allowed_channels as an array: only registers to channel 1") {
    std::string ch1 = "randomized:test:" + unique_channel(), ch2 = "randomized:test:" + unique_channel();
    jugglite_server server({"--allowed-channels", ch1});
    auto c = raw_client::tcp(server.port());
    c.get("/?channel=" + ch1 + "," + ch2);
    REQUIRE(c.read_until(": registered to channels: " + ch1 + "\n"));
    CHECK(c.body().find(ch2) == std::string::npos);
}

TEST_CASE("allowed_channels with no channel requested: blank channel is allowed") {
    std::string ch1 = "randomized:test:" + unique_channel(), ch2 = "randomized:test:" + unique_channel();
    jugglite_server server({"--allowed-channels", ch2});
    auto c = raw_client::tcp(server.port());
    c.get("/");
    REQUIRE(c.read_until(": registered to channels: \n"));
    CHECK(c.body().find(ch1) == std::string::npos);
    CHECK_FALSE(c.closed());
}

TEST_CASE("allowed_channels as a pattern list: only registers to channel 2") {
    std::string ch1 = "randomized:test:" + unique_channel(), ch2 = "allowed:test:" + unique_channel();
    jugglite_server server({"--allowed-channels", "nomatch,allowed:*"});
    auto c = raw_client::tcp(server.port());
    c.get("/?channel=" + ch1 + "," + ch2);
    REQUIRE(c.read_until(": registered to channels: " + ch2 + "\n"));
    CHECK(c.body().find(ch1) == std::string::npos);
}

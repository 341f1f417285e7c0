#include <doctest/doctest.h>

#include "core/history.h"
#include "core/key_slot.h"

using namespace jugglite;

TEST_CASE("stream ids parse, print and order as Redis orders them") {
    auto a = stream_id::parse("1700000000000-0");
    auto b = stream_id::parse("1700000000000-12");
    auto c = stream_id::parse("1700000000001-0");
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(c);
    CHECK(*a < *b);
    CHECK(*b < *c);
    CHECK(b->text() == "1700000000000-12");
    for (const char* bad : {"", "-", "1-", "-1", "1", "a-1", "1-b", "1-2-3", " 1-2", "1-2 "})
        CHECK_FALSE(stream_id::parse(bad));
}

TEST_CASE("an enveloped message gives its id, previous id and payload, and anything else is plain") {
    auto e = parse_envelope("\x1fjugglite 1 1700000000000-3 1699999999999-0\nhello\nworld");
    REQUIRE(e);
    CHECK(e->version == 1);
    CHECK(e->id.text() == "1700000000000-3");
    REQUIRE(e->previous);
    CHECK(e->previous->text() == "1699999999999-0");
    CHECK(e->payload == "hello\nworld");
    auto first = parse_envelope("\x1fjugglite 1 5-0 \n{\"id\":7}");
    REQUIRE(first);
    CHECK_FALSE(first->previous);
    CHECK(first->payload == "{\"id\":7}");
    auto future = parse_envelope("\x1fjugglite 2 5-1 5-0 more fields\npayload");  // a newer library
    REQUIRE(future);
    CHECK(future->version == 2);
    CHECK(future->payload == "payload");
    for (const char* plain : {"hello", "", "\x1fjugglite", "\x1fjugglite 1 5-0", "\x1fjugglite x 5-0 \np",
                              "\x1fjugglite 1 bad \np", "\x1fjugglite 1 5-0 6-0\np",  // previous after id
                              "jugglite 1 5-0 \np"})
        CHECK_FALSE(parse_envelope(plain));
}

TEST_CASE("the library writes the key history_key names, in the channel's slot") {
    history_settings s;
    s.prefix = "app:";
    CHECK(history_key(s, "user:{42}:feed").starts_with("app:h{"));
    CHECK(key_slot(history_key(s, "user:{42}:feed")) == key_slot("user:{42}:feed"));
    std::string lua = history_library(s);
    CHECK(lua.starts_with("#!lua name=jugglite\n"));
    CHECK(lua.find("local PREFIX = \"app:\"") != std::string::npos);
    CHECK(lua.find("local MAXLEN = 1000") != std::string::npos);
    CHECK(lua.find("local TTL_MS = 3600000") != std::string::npos);
    s.prefix = "we\"ird\\";
    CHECK(history_library(s).find("local PREFIX = \"we\\\"ird\\\\\"") != std::string::npos);
}

TEST_CASE("on a cluster the clock is per slot, in the channel's slot, and the envelope goes by SPUBLISH") {
    history_settings s;
    CHECK(history_clock_key(s, "a") == "jugglite:clock");
    const std::string single = history_library(s);
    CHECK(single.find("local CLOCK_PER_SLOT = false") != std::string::npos);
    CHECK(single.find("local PUBLISH = \"PUBLISH\"") != std::string::npos);
    CHECK(history_fingerprint(s) == "prefix=jugglite: length=1000 ttl_ms=3600000");  // as loaded before

    s.clock_per_slot = true;
    s.sharded_publish = true;
    for (std::string_view channel : {"a", "user:{42}:feed", "x}y{"}) {
        const std::string clock = history_clock_key(s, channel);
        CHECK(clock.starts_with("jugglite:clock{"));
        CHECK(key_slot(clock) == key_slot(channel));
        CHECK(key_slot(clock) == key_slot(history_key(s, channel)));
    }
    const std::string cluster = history_library(s);
    CHECK(cluster.find("local CLOCK_PER_SLOT = true") != std::string::npos);
    CHECK(cluster.find("local PUBLISH = \"SPUBLISH\"") != std::string::npos);
    CHECK(history_fingerprint(s).ends_with(" clock=slot-us publish=spublish"));
}

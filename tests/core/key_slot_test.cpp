// Known values: the CRC16 check value of the XMODEM variant, and the hash-tag examples of
// the Redis Cluster specification. tests/integration/key_slot_test.cpp compares many more
// keys with a real redis-server's CLUSTER KEYSLOT.
#include <doctest/doctest.h>

#include "core/key_slot.h"

using namespace jugglite;

TEST_CASE("crc16 is the XMODEM variant Redis uses") {
    CHECK(crc16("123456789") == 0x31C3);  // the standard check value
    CHECK(crc16("") == 0);
    CHECK(key_slot("foo") == 12182);  // CLUSTER KEYSLOT foo
}

TEST_CASE("hash tags follow the Redis Cluster specification") {
    CHECK(hash_tag("{user1000}.following") == "user1000");
    CHECK(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
    CHECK(hash_tag("foo{}{bar}") == "foo{}{bar}");  // empty first tag: the whole key
    CHECK(hash_tag("foo{{bar}}zap") == "{bar");
    CHECK(hash_tag("foo{bar}{zap}") == "bar");
    CHECK(hash_tag("no tag") == "no tag");
    CHECK(hash_tag("open{only") == "open{only");
    CHECK(hash_tag("close}only") == "close}only");
    CHECK(hash_tag("a}b{c}") == "c");
    CHECK(key_slot("a{}b") == 13694);  // CLUSTER KEYSLOT a{}b
}

TEST_CASE("the slot of a namespace and a name is the slot of the two joined") {
    const char* parts[] = {"", "ns:", "{ns}:", "ns{", "{", "}", "{}", "a}b", "x{y}", "user:{42}:feed", "}{", "{z"};
    for (const char* prefix : parts)
        for (const char* name : parts) {
            CAPTURE(prefix);
            CAPTURE(name);
            CHECK(key_slot(prefix, name) == key_slot(std::string(prefix) + name));
        }
}

TEST_CASE("every slot has a short tag, and a history key lives in its channel's slot") {
    for (unsigned s = 0; s < cluster_slots; ++s) {
        auto tag = slot_tag(static_cast<std::uint16_t>(s));
        REQUIRE(!tag.empty());
        REQUIRE(tag.size() <= 4);
        REQUIRE(key_slot(tag) == s);
    }
    for (const char* channel : {"player_42", "user:{42}:feed", "a}b", "a{}b", "}{", "{", "", "x{y}"}) {
        CAPTURE(channel);
        auto key = history_stream_key("jugglite:h:", channel);
        CHECK(key_slot(key) == key_slot(channel));
        CHECK(key.ends_with(std::string("}:") + channel));
    }
    CHECK(history_stream_key("p:", "foo") == std::string("p:{") + std::string(slot_tag(key_slot("foo"))) + "}:foo");
}

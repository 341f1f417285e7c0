// Tests for percent_decode and parse_channels: decoding, splitting, de-duplication, limits.
#include "core/query.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/limits.h"

using namespace jugglite;

namespace {

using names = std::vector<std::string>;

names expect_channels(std::string_view query) {
    auto r = parse_channels(query);
    REQUIRE(r.has_value());
    return *r;
}

channel_error expect_channel_error(std::string_view query) {
    auto r = parse_channels(query);
    REQUIRE(!r.has_value());
    return r.error();
}

}  // namespace

TEST_CASE("percent_decode decodes escapes in either case and leaves other bytes alone") {
    CHECK(percent_decode("a%20b%2c%2C%7e", false).value() == "a b,,~");
    CHECK(percent_decode("%41%6a%4A", false).value() == "AjJ");
    CHECK(percent_decode("", false).value() == "");
    CHECK(percent_decode("%00", false).value() == std::string("\0", 1));
    CHECK(percent_decode("%ff", false).value() == "\xff");
    CHECK(percent_decode("%25", false).value() == "%");
    CHECK(percent_decode("%2525", false).value() == "%25");  // decoded once only
}

TEST_CASE("percent_decode turns '+' into a space only when asked") {
    CHECK(percent_decode("a+b", true).value() == "a b");
    CHECK(percent_decode("a+b", false).value() == "a+b");
    CHECK(percent_decode("%2B", true).value() == "+");
}

TEST_CASE("percent_decode refuses truncated and non-hex escapes") {
    for (const char* bad : {"%", "%2", "a%4", "%zz", "%g0", "%0g", "% 1", "%-1"}) {
        CAPTURE(bad);
        CHECK(!percent_decode(bad, false).has_value());
    }
    CHECK(percent_decode("%2", false).error() == "truncated percent escape");
    CHECK(percent_decode("%zz", false).error() == "bad percent escape");
}

TEST_CASE("no channel parameter gives an empty list") {
    CHECK(expect_channels("").empty());
    CHECK(expect_channels("foo=bar&x=1").empty());
    CHECK(expect_channels("channel").empty());   // no '=': not a channel list
    CHECK(expect_channels("channel=").empty());  // present but empty
    CHECK(expect_channels("channels=a&xchannel=b").empty());
    CHECK(expect_channels("&&").empty());
}

TEST_CASE("the channel list is split on commas, empty pieces dropped, duplicates removed") {
    CHECK(expect_channels("channel=a") == names{"a"});
    CHECK(expect_channels("channel=a,b") == names{"a", "b"});
    // %2C decodes to a comma before the split, so it separates names like a literal one.
    CHECK(expect_channels("channel=a,b,a,,%2Cc,") == names{"a", "b", "c"});
    CHECK(expect_channels("channel=,,,") == names{});
    CHECK(expect_channels("channel=b,a,b,a") == names{"b", "a"});
}

TEST_CASE("repeated channel parameters are merged in first-seen order") {
    CHECK(expect_channels("channel=a,b&x=1&channel=c,a") == names{"a", "b", "c"});
    CHECK(expect_channels("x=%zz-is-ignored&channel=a") == names{"a"});
}

TEST_CASE("channel values are percent-decoded and '+' is a space") {
    CHECK(expect_channels("channel=hello+world") == names{"hello world"});
    CHECK(expect_channels("channel=a%2Bb") == names{"a+b"});
    CHECK(expect_channels("channel=user%3A42%2Fnews") == names{"user:42/news"});
    CHECK(expect_channels("channel=%E2%9C%93") == names{"\xE2\x9C\x93"});
    CHECK(expect_channels("chan%6Eel=z") == names{"z"});  // the key is decoded too
    CHECK(expect_channels("channel=a=b") == names{"a=b"});
}

TEST_CASE("a bad escape in the key or the channel value is refused") {
    CHECK(expect_channel_error("channel=a%2") == channel_error::bad_escape);
    CHECK(expect_channel_error("channel=%zz") == channel_error::bad_escape);
    CHECK(expect_channel_error("%zz=1&channel=a") == channel_error::bad_escape);
}

TEST_CASE("channel[] syntax is refused") {
    CHECK(expect_channel_error("channel[]=x") == channel_error::array_syntax);
    CHECK(expect_channel_error("channel[0]=x") == channel_error::array_syntax);
    CHECK(expect_channel_error("channel%5B%5D=x") == channel_error::array_syntax);
    CHECK(expect_channel_error("channel=a&channel[]") == channel_error::array_syntax);
}

TEST_CASE("control characters in a channel name are refused") {
    for (const char* q : {"channel=a%0Ab", "channel=%0D", "channel=a%00", "channel=%7F",
                          "channel=%01", "channel=%1F", "channel=ok,%09tab"}) {
        CAPTURE(q);
        CHECK(expect_channel_error(q) == channel_error::control_character);
    }
    // 0x80 and above are not control characters here: UTF-8 names pass.
    CHECK(expect_channels("channel=%80%FF") == names{"\x80\xff"});
}

TEST_CASE("channel name length: 256 bytes pass, 257 are refused") {
    const std::string ok(limits::max_channel_name, 'n');
    CHECK(expect_channels("channel=" + ok) == names{ok});
    const std::string long_name(limits::max_channel_name + 1, 'n');
    CHECK(expect_channel_error("channel=" + long_name) == channel_error::name_too_long);
    // The limit applies after decoding: 256 escaped bytes are 768 raw characters.
    std::string escaped;
    for (std::size_t i = 0; i < limits::max_channel_name; ++i) escaped += "%41";
    CHECK(expect_channels("channel=" + escaped) == names{std::string(256, 'A')});
}

TEST_CASE("at most 64 distinct channels, duplicates do not count") {
    std::string q = "channel=";
    names expected;
    for (std::size_t i = 0; i < limits::max_channels_per_conn; ++i) {
        // Built by appending: GCC 12 warns falsely (-Wrestrict) on "c" + std::string.
        std::string name = std::to_string(i);
        name.insert(0, 1, 'c');
        q += name;
        q += ',';
        expected.push_back(name);
    }
    CHECK(expect_channels(q) == expected);
    CHECK(expect_channels(q + "c0,c63,c5") == expected);
    CHECK(expect_channel_error(q + "one-more") == channel_error::too_many);
    CHECK(expect_channel_error(q + "&channel=x") == channel_error::too_many);
}

TEST_CASE("every channel_error has its own description") {
    CHECK(describe(channel_error::bad_escape) == "bad percent escape in query");
    CHECK(describe(channel_error::array_syntax) == "channel[] is not supported; use channel=a,b");
    CHECK(describe(channel_error::control_character) ==
          "channel name contains a control character");
    CHECK(describe(channel_error::name_too_long) == "channel name too long");
    CHECK(describe(channel_error::too_many) == "too many channels");
}

TEST_CASE("a query parameter is found by name and decoded") {
    CHECK(query_param("channel=a&token=x%2By+z", "token") == "x+y z");
    CHECK(query_param("token=1&token=2", "token") == "1");
    CHECK(query_param("tok=1", "token") == std::nullopt);
    CHECK(query_param("token", "token") == "");
    CHECK(query_param("token=%zz", "token") == std::nullopt);
    CHECK(query_param("lastEventId=5-0", "lastEventId") == "5-0");
}

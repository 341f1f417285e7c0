// Tests for build_sse_frame and registration_comment: exact wire bytes for every framing rule.
#include "core/sse_frame.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace jugglite;
using namespace std::string_literals;

TEST_CASE("a plain payload is one data line and a blank line") {
    CHECK(build_sse_frame("hello") == "data: hello\n\n");
}

TEST_CASE("an empty payload is one empty data line") { CHECK(build_sse_frame("") == "data: \n\n"); }

TEST_CASE("payloads are split on CRLF, LF and lone CR") {
    CHECK(build_sse_frame("a\r\nb\rc\nd") == "data: a\ndata: b\ndata: c\ndata: d\n\n");
    CHECK(build_sse_frame("a\nb") == "data: a\ndata: b\n\n");
    CHECK(build_sse_frame("a\r\nb") == "data: a\ndata: b\n\n");
    CHECK(build_sse_frame("a\rb") == "data: a\ndata: b\n\n");
}

TEST_CASE("LF CR is two line ends, CR CR and LF LF give empty lines") {
    CHECK(build_sse_frame("a\n\rb") == "data: a\ndata: \ndata: b\n\n");
    CHECK(build_sse_frame("a\r\rb") == "data: a\ndata: \ndata: b\n\n");
    CHECK(build_sse_frame("a\n\nb") == "data: a\ndata: \ndata: b\n\n");
    CHECK(build_sse_frame("a\r\n\r\nb") == "data: a\ndata: \ndata: b\n\n");
}

TEST_CASE("a trailing line end gives an empty last data line") {
    CHECK(build_sse_frame("a\n") == "data: a\ndata: \n\n");
    CHECK(build_sse_frame("a\r\n") == "data: a\ndata: \n\n");
    CHECK(build_sse_frame("a\r") == "data: a\ndata: \n\n");
    CHECK(build_sse_frame("\n") == "data: \ndata: \n\n");
    CHECK(build_sse_frame("\r\n") == "data: \ndata: \n\n");
}

TEST_CASE("payload bytes are never altered: whitespace, NUL and invalid UTF-8 pass through") {
    CHECK(build_sse_frame("  padded \t") == "data:   padded \t\n\n");
    const std::string binary = "a\0b\xff\xfe\xc3"s;
    CHECK(build_sse_frame(binary) == "data: a\0b\xff\xfe\xc3\n\n"s);
    const std::string split = "\0\n\xff"s;
    CHECK(build_sse_frame(split) == "data: \0\ndata: \xff\n\n"s);
    CHECK(build_sse_frame("data: x") == "data: data: x\n\n");
    CHECK(build_sse_frame("\xE2\x9C\x93 ok") == "data: \xE2\x9C\x93 ok\n\n");
}

TEST_CASE("a JSON object with an event string gets an event line first") {
    CHECK(build_sse_frame(R"({"event":"update","x":1})") ==
          "event: update\n"
          "data: {\"event\":\"update\",\"x\":1}\n\n");
}

TEST_CASE("a JSON object with a numeric id gets an id line") {
    CHECK(build_sse_frame(R"({"id":5})") == "id: 5\ndata: {\"id\":5}\n\n");
    CHECK(build_sse_frame(R"({"id":-3})") == "id: -3\ndata: {\"id\":-3}\n\n");
    CHECK(build_sse_frame(R"({"id":18446744073709551615})") ==
          "id: 18446744073709551615\ndata: {\"id\":18446744073709551615}\n\n");
    CHECK(build_sse_frame(R"({"id":1.5})") == "id: 1.5\ndata: {\"id\":1.5}\n\n");
    CHECK(build_sse_frame(R"({"id":"abc-7"})") == "id: abc-7\ndata: {\"id\":\"abc-7\"}\n\n");
}

TEST_CASE("event comes before id whatever the member order") {
    const std::string expected_data = "data: {\"id\":5,\"event\":\"e\"}\n\n";
    CHECK(build_sse_frame(R"({"id":5,"event":"e"})") == "event: e\nid: 5\n" + expected_data);
    CHECK(build_sse_frame(R"({"event":"e","id":"5"})") ==
          "event: e\nid: 5\ndata: {\"event\":\"e\",\"id\":\"5\"}\n\n");
    CHECK(build_sse_frame(R"({"event":7})") == "event: 7\ndata: {\"event\":7}\n\n");
}

TEST_CASE("fields come before every data line of a multi-line JSON payload") {
    const std::string payload = "{\n  \"event\": \"e\",\n  \"id\": 2\n}";
    CHECK(build_sse_frame(payload) ==
          "event: e\nid: 2\n"
          "data: {\n"
          "data:   \"event\": \"e\",\n"
          "data:   \"id\": 2\n"
          "data: }\n\n");
    CHECK(build_sse_frame(" \t{\"event\":\"w\"}") == "event: w\ndata:  \t{\"event\":\"w\"}\n\n");
}

TEST_CASE("a field value containing CR, LF or NUL is dropped, the rest still applies") {
    // The payload text holds JSON escapes; the decoded values hold the raw bytes.
    CHECK(build_sse_frame(R"({"event":"a\nb"})") == "data: {\"event\":\"a\\nb\"}\n\n");
    CHECK(build_sse_frame(R"({"event":"a\rb"})") == "data: {\"event\":\"a\\rb\"}\n\n");
    CHECK(build_sse_frame(R"({"event":"a\u0000b"})") == "data: {\"event\":\"a\\u0000b\"}\n\n");
    CHECK(build_sse_frame(R"({"event":"ok","id":"x\ny"})") ==
          "event: ok\ndata: {\"event\":\"ok\",\"id\":\"x\\ny\"}\n\n");
    CHECK(build_sse_frame(R"({"event":"x\u000dy","id":3})") ==
          "id: 3\ndata: {\"event\":\"x\\u000dy\",\"id\":3}\n\n");
}

TEST_CASE("other escapes in a field value are written decoded") {
    CHECK(build_sse_frame(R"({"event":"a\tb\u00e9"})") ==
          "event: a\tb\xC3\xA9\ndata: {\"event\":\"a\\tb\\u00e9\"}\n\n");
    CHECK(build_sse_frame(R"({"event":""})") == "event: \ndata: {\"event\":\"\"}\n\n");
}

TEST_CASE("event and id values that are not strings or numbers are ignored") {
    for (const char* p :
         {R"({"event":{"a":1}})", R"({"event":true})", R"({"event":null})", R"({"event":["x"]})",
          R"({"id":false})", R"({"id":null})", R"({"id":{}})", R"({"id":[1]})"}) {
        CAPTURE(p);
        CHECK(build_sse_frame(p) == "data: "s + p + "\n\n");
    }
}

TEST_CASE("only top-level members count") {
    const char* p = R"({"data":{"event":"inner","id":1}})";
    CHECK(build_sse_frame(p) == "data: "s + p + "\n\n");
}

TEST_CASE("JSON that is not an object, and invalid JSON, are plain data") {
    for (const char* p : {R"(["event","x"])", R"([{"event":"x"}])", "5", "null", "true",
                          R"("event")", R"({"event":"x")", R"({"event":"x"} trailing)",
                          R"({event:"x"})", "{", "{}garbage", R"({"event":"x",})"}) {
        CAPTURE(p);
        CHECK(build_sse_frame(p) == "data: "s + p + "\n\n");
    }
    CHECK(build_sse_frame("{}") == "data: {}\n\n");
}

TEST_CASE("a JSON-looking payload with a NUL byte is plain data, bytes unchanged") {
    const std::string p = "{\"event\":\"x\"}\0"s;
    CHECK(build_sse_frame(p) == "data: {\"event\":\"x\"}\0\n\n"s);
}

TEST_CASE("a large payload is framed in full") {
    std::string big(100'000, 'z');
    big[50'000] = '\n';
    std::string expected =
        "data: " + std::string(50'000, 'z') + "\ndata: " + std::string(49'999, 'z') + "\n\n";
    CHECK(build_sse_frame(big) == expected);
}

TEST_CASE("registration_comment lists the channels joined by comma and space") {
    std::vector<std::string> two{"a", "b"};
    CHECK(registration_comment(two) == ": registered to channels: a, b\n");
    std::vector<std::string> one{"news"};
    CHECK(registration_comment(one) == ": registered to channels: news\n");
    std::vector<std::string> none;
    CHECK(registration_comment(none) == ": registered to channels: \n");
}

TEST_CASE("the keepalive is a comment followed by a blank line") {
    CHECK(keepalive_comment == ": keepalive\n\n");
}

// Tests for make_sse_frame, build_sse_frame and registration_comment: exact wire bytes for
// every framing rule, JSON field extraction against the DOM parser it replaced, large payloads.
#include "core/sse_frame.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include "core/limits.h"

using namespace jugglite;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {

// The frame as the DOM-parser implementation built it before On-Demand replaced it, kept
// as the reference for what a valid JSON payload yields.
std::optional<std::string> dom_scalar_text(simdjson::dom::element e) {
    switch (e.type()) {
        case simdjson::dom::element_type::STRING: return std::string(std::string_view(e));
        case simdjson::dom::element_type::INT64: return std::to_string(int64_t(e));
        case simdjson::dom::element_type::UINT64: return std::to_string(uint64_t(e));
        case simdjson::dom::element_type::DOUBLE: {
            char buf[32];
            auto [end, ec] = std::to_chars(buf, buf + sizeof buf, double(e));
            return std::string(buf, end);
        }
        default: return std::nullopt;
    }
}

std::string dom_reference_frame(std::string_view payload) {
    std::string fields;
    auto first = payload.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos && payload[first] == '{') {
        simdjson::dom::parser parser;
        simdjson::padded_string padded(payload);
        simdjson::dom::element doc;
        simdjson::dom::object obj;
        if (parser.parse(padded).get(doc) == simdjson::SUCCESS &&
            doc.get(obj) == simdjson::SUCCESS) {
            for (std::string_view key : {std::string_view("event"), std::string_view("id")}) {
                simdjson::dom::element value;
                if (obj.at_key(key).get(value) != simdjson::SUCCESS) continue;
                auto text = dom_scalar_text(value);
                if (!text ||
                    text->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
                    continue;
                fields.append(key).append(": ").append(*text).push_back('\n');
            }
        }
    }
    std::string out = fields + "data: ";
    for (std::size_t i = 0; i < payload.size(); ++i) {
        if (payload[i] != '\r' && payload[i] != '\n') {
            out.push_back(payload[i]);
            continue;
        }
        if (payload[i] == '\r' && i + 1 < payload.size() && payload[i + 1] == '\n') ++i;
        out.append("\ndata: ");
    }
    return out + "\n\n";
}

// `size` bytes of a JSON array of numbers, `[0,1,2,...]`, padded with spaces.
std::string big_array(std::size_t size) {
    std::string a = "[";
    for (std::size_t i = 0; a.size() + 16 < size; ++i) a.append(std::to_string(i)).push_back(',');
    a.append("0]");
    a.resize(size, ' ');
    return a;
}

}  // namespace

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

TEST_CASE("make_sse_frame writes the same bytes as build_sse_frame into a frame with its seq") {
    for (std::string_view p :
         {""sv, "hello"sv, "a\r\nb\rc\nd\n"sv, R"({"event":"update","id":7,"x":1})"sv,
          R"({"id":"x\ny","event":"e"})"sv, "{\n\"event\": \"e\"\n}\r\n"sv, "\0\n\xff"sv}) {
        CAPTURE(p);
        frame_ref f = make_sse_frame(p, 99);
        REQUIRE(f);
        CHECK(f->seq() == 99);
        CHECK(f->bytes() == build_sse_frame(p));
        CHECK(f->size() == build_sse_frame(p).size());
        CHECK(f.use_count() == 1);
    }
}

TEST_CASE("event and id values agree with the DOM parser for valid JSON") {
    // Numbers in every form the old code formatted, strings with escapes, duplicates,
    // escaped keys, nesting and whitespace.
    const char* payloads[] = {
        R"({"id":0})", R"({"id":-0})", R"({"id":-0.0})", R"({"id":1e2})", R"({"id":1E-7})",
        R"({"id":1.0})", R"({"id":0.1})", R"({"id":1.5e300})", R"({"id":2.2250738585072014e-308})",
        R"({"id":9223372036854775807})", R"({"id":9223372036854775808})",
        R"({"id":-9223372036854775808})", R"({"id":18446744073709551615})",
        R"({"id":123456789.123456789})", R"({"id":-12.5e-3})",
        R"({"event":"a\"b\\c\/d\b\f\t"})", R"({"event":"\ud83d\ude00 \u00e9"})",
        R"({"event":"x","event":"y"})", R"({"event":null,"event":"y"})", R"({"id":1,"id":2})",
        R"({"\u0065vent":"esc","id":"\u0031"})", R"({"Event":"x","ID":1})",
        R"({"a":{"event":"in"},"b":[{"id":1}],"event":"out"})",
        "{ \"event\" : \"s\" , \"id\" : 3 }",
        R"({"a":[1,2,{"b":[true,false,null]}],"c":"str","d":-1.5,"id":"last"})",
        R"({"event":"","id":""})", R"({"event":" spaced ","id":" 1 "})", "{}", " {} ",
        R"({"event":"a\nb","id":"ok"})", R"({"event":"a\u2028b"})",
        "\n{\"event\":\"lead\"}\n", "{\"event\":\"t\"}\t\r\n "};
    for (const char* p : payloads) {
        CAPTURE(p);
        CHECK(build_sse_frame(p) == dom_reference_frame(p));
    }
}

TEST_CASE("JSON broken at its top level is plain data, however the fields before it read") {
    for (const char* p :
         {R"({"event":"x", garbage)", R"({"event":"x", garbage})", R"({"event":"x"} trailing)",
          R"({"event":"x"}})", R"({"event":"x"}{"id":1})", R"({"event":"x"},)", R"({"event":"x"}])",
          R"({"event":"x",,"id":1})", R"({"event" "x"})", R"({"event":"x" "id":1})",
          R"({"event":"x"])", R"({"event":"x","id":1)", R"({"event":"x",)", R"({"event":"x":1})",
          R"({"event":"x",1:2})", R"({"event":"x",null})", R"({"event":"x","a")",
          R"({"event":"x","a":})",
          R"({"event":"x","a":1,})", R"({"ev\qent":"x"})", R"({"id":1,"event":"x","id":)"}) {
        CAPTURE(p);
        CHECK(build_sse_frame(p) == "data: "s + p + "\n\n");
        CHECK(dom_reference_frame(p) == "data: "s + p + "\n\n");
    }
}

TEST_CASE("a malformed event or id value makes the whole payload plain data") {
    for (const char* p :
         {R"({"event":"\q","id":1})", R"({"event":"x","id":"\u12"})", R"({"event":"x","id":01})",
          R"({"event":"x","id":1.})", R"({"event":"x","id":-})", R"({"event":"x","id":1e})",
          R"({"id":2,"event":tru})", R"({"id":2,"event":nul})",
          R"({"event":"x","id":123456789012345678901234567890})", R"({"event":"\ud800","id":1})"}) {
        CAPTURE(p);
        CHECK(build_sse_frame(p) == "data: "s + p + "\n\n");
        CHECK(dom_reference_frame(p) == "data: "s + p + "\n\n");
    }
}

TEST_CASE("bytes every JSON parse checks make any member's fault plain data") {
    // Invalid UTF-8, an unclosed string and a raw control character anywhere in the document.
    for (const std::string& p :
         {"{\"a\":\"\xff\",\"event\":\"x\"}"s, "{\"a\":[\"caf\xc3\"],\"event\":\"x\"}"s,
          "{\"event\":\"x\",\"a\":\"\x01\"}"s, "{\"event\":\"x\",\"a\":[\"open]}"s,
          "{\"event\":\"x\"}\0"s}) {
        CAPTURE(p);
        CHECK(build_sse_frame(p) == "data: " + p + "\n\n");
        CHECK(dom_reference_frame(p) == "data: " + p + "\n\n");
    }
}

TEST_CASE("values of other members are skipped unread, so faults inside them go unnoticed") {
    // Parsing only what finding event and id needs: the DOM parser refused these whole.
    for (const char* p : {R"({"a":tru,"event":"x"})", R"({"a":[1,,2],"event":"x"})",
                          R"({"a":"\q","event":"x"})", R"({"a":01,"event":"x"})"}) {
        CAPTURE(p);
        CHECK(build_sse_frame(p) == "event: x\ndata: "s + p + "\n\n");
        CHECK(dom_reference_frame(p) == "data: "s + p + "\n\n");
    }
}

TEST_CASE("a JSON payload larger than the reused parser's size still yields event and id") {
    const std::string body = big_array(limits::small_json_bytes * 3);
    const std::string p = R"({"data":)" + body + R"(,"event":"big","id":12345678901})";
    REQUIRE(p.size() > limits::small_json_bytes);
    CHECK(build_sse_frame(p) == "event: big\nid: 12345678901\ndata: " + p + "\n\n");
    frame_ref f = make_sse_frame(p, 3);
    CHECK(f->bytes() == "event: big\nid: 12345678901\ndata: " + p + "\n\n");
    // Sizes on both sides of the threshold, where the parser in use changes.
    for (std::size_t size : {limits::small_json_bytes - 1, limits::small_json_bytes,
                             limits::small_json_bytes + 1}) {
        std::string q = R"({"event":"edge","a":")";
        q.append(size - q.size() - 2, 'q').append("\"}");
        REQUIRE(q.size() == size);
        CAPTURE(size);
        CHECK(build_sse_frame(q) == "event: edge\ndata: " + q + "\n\n");
    }
    // After a large payload the small path still works (and the other way round).
    CHECK(build_sse_frame(R"({"id":1})") == "id: 1\ndata: {\"id\":1}\n\n");
    CHECK(build_sse_frame(p).starts_with("event: big\nid: 12345678901\ndata: {"));
}

TEST_CASE("a large JSON payload broken at its top level or after it is plain data") {
    const std::string body = big_array(limits::small_json_bytes * 2);
    for (const std::string& p :
         {R"({"event":"x","data":)" + body + R"(, garbage)",
          R"({"event":"x","data":)" + body + "} trailing", R"({"event":"x","data":)" + body,
          R"({"data":)" + body + R"(,"event":"x")", R"({"data":)" + body + R"(,"event":"x",})"}) {
        CAPTURE(p.substr(p.size() - 20));
        CHECK(build_sse_frame(p) == "data: " + p + "\n\n");
    }
}

TEST_CASE("a large multi-line JSON payload: fields first, then one data line per line") {
    std::string p = "{\n\"a\": [\n";
    for (int i = 0; i < 20'000; ++i) p.append(std::to_string(i)).append(i % 3 ? ",\n" : ",\r\n");
    p.append("0\r],\r\"id\": \"z\"\n}");
    REQUIRE(p.size() > limits::small_json_bytes);
    CHECK(build_sse_frame(p) == dom_reference_frame(p));
    CHECK(build_sse_frame(p).starts_with("id: z\ndata: {\ndata: \"a\": [\ndata: 0,\ndata: 1,\n"));
    CHECK(make_sse_frame(p, 1)->bytes() == dom_reference_frame(p));
}

TEST_CASE("registration_comment lists the channels joined by comma and space") {
    std::vector<std::string> two{"a", "b"};
    CHECK(registration_comment(two) == ": registered to channels: a, b\n");
    std::vector<std::string> one{"news"};
    CHECK(registration_comment(one) == ": registered to channels: news\n");
    std::vector<std::string> none;
    CHECK(registration_comment(none) == ": registered to channels: \n");
}

TEST_CASE("the keepalive is a comment with the open-connection count, then a blank line") {
    CHECK(keepalive_comment(1234) == ": keepalive 1234\n\n");
    CHECK(keepalive_comment(0) == ": keepalive 0\n\n");
}

TEST_CASE("an entry id is the frame's id, and with json ids off a JSON id stays in the data") {
    stream_id e{1700000000000, 3};
    CHECK(build_sse_frame("{\"id\":\"app\",\"event\":\"x\"}", {e, false}) ==
          "event: x\nid: 1700000000000-3\ndata: {\"id\":\"app\",\"event\":\"x\"}\n\n");
    CHECK(build_sse_frame("{\"id\":\"app\"}", {{}, false}) == "data: {\"id\":\"app\"}\n\n");
    CHECK(build_sse_frame("{\"id\":\"app\"}", {}) == "id: app\ndata: {\"id\":\"app\"}\n\n");
    frame_ref f = make_sse_frame("m", 7, {e, false});
    CHECK(f->id() == e);
    CHECK(make_sse_frame("m", 7)->id().empty());
}

TEST_CASE("a reset frame names its reason and carries the head as its id") {
    frame_ref f = make_reset_frame({5, 1}, "trimmed", stream_id{2, 0});
    CHECK(f->bytes() ==
          "event: jugglite-reset\nid: 5-1\ndata: {\"reason\":\"trimmed\",\"last_event_id\":\"2-0\"}\n\n");
    CHECK(f->id() == stream_id{5, 1});
    CHECK(make_reset_frame({}, "malformed", std::nullopt)->bytes() ==
          "event: jugglite-reset\ndata: {\"reason\":\"malformed\",\"last_event_id\":null}\n\n");
}

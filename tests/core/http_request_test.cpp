// Tests for parse_request: complete and split heads, bare LF, limits, malformed input.
#include "core/http_request.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <variant>

#include "core/limits.h"

using namespace jugglite;

namespace {

http_request expect_request(std::string_view buf) {
    parse_result r = parse_request(buf);
    REQUIRE(std::holds_alternative<http_request>(r));
    return std::get<http_request>(r);
}

http_error expect_error(std::string_view buf) {
    parse_result r = parse_request(buf);
    REQUIRE(std::holds_alternative<http_error>(r));
    return std::get<http_error>(r);
}

bool is_need_more(std::string_view buf) {
    return std::holds_alternative<need_more>(parse_request(buf));
}

// A GET head of exactly `total` bytes, padded with one X-Pad header, CRLF line ends.
std::string head_of_size(std::size_t total) {
    const std::string prefix = "GET /s?channel=a HTTP/1.1\r\nX-Pad: ";
    const std::string suffix = "\r\n\r\n";
    REQUIRE(total >= prefix.size() + suffix.size());
    return prefix + std::string(total - prefix.size() - suffix.size(), 'p') + suffix;
}

}  // namespace

TEST_CASE("a complete GET head is parsed into method, path, query") {
    auto req = expect_request("GET /events?channel=a,b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(req.method == "GET");
    CHECK(req.path == "/events");
    CHECK(req.query == "channel=a,b");
    CHECK(req.last_event_id == "");
}

TEST_CASE("no query gives an empty query and HEAD is kept as sent") {
    auto req = expect_request("HEAD / HTTP/1.0\r\n\r\n");
    CHECK(req.method == "HEAD");
    CHECK(req.path == "/");
    CHECK(req.query.empty());
}

TEST_CASE("other token methods parse, routing refuses them later") {
    auto req = expect_request("POST /x HTTP/1.1\r\n\r\n");
    CHECK(req.method == "POST");
}

TEST_CASE("the returned views point into the buffer") {
    std::string buf = "GET /p?q=1 HTTP/1.1\r\nLast-Event-ID: 9\r\n\r\n";
    auto req = expect_request(buf);
    CHECK(req.path.data() == buf.data() + 4);
    CHECK(req.query.data() == buf.data() + 7);
    CHECK(req.last_event_id.data() >= buf.data());
    CHECK(req.last_event_id.data() < buf.data() + buf.size());
}

TEST_CASE("every strict prefix of a head is need_more, the whole head parses") {
    const std::string crlf =
        "GET /sse?channel=news HTTP/1.1\r\nHost: example.com\r\nLast-Event-ID: 41\r\n\r\n";
    const std::string lf =
        "GET /sse?channel=news HTTP/1.1\nHost: example.com\nLast-Event-ID: 41\n\n";
    for (const std::string& full : {crlf, lf}) {
        CAPTURE(full);
        for (std::size_t i = 0; i < full.size(); ++i) {
            CAPTURE(i);
            CHECK(is_need_more(std::string_view(full).substr(0, i)));
        }
        auto req = expect_request(full);
        CHECK(req.path == "/sse");
        CHECK(req.query == "channel=news");
        CHECK(req.last_event_id == "41");
    }
}

TEST_CASE("bytes after the blank line are ignored") {
    auto req = expect_request("GET /a?channel=x HTTP/1.1\r\n\r\nGARBAGE\r\n\r\n");
    CHECK(req.path == "/a");
    CHECK(req.query == "channel=x");
}

TEST_CASE("bare LF line ends are accepted, also mixed with CRLF") {
    auto req = expect_request("GET /x?channel=a HTTP/1.1\nHost: h\nLast-Event-ID: 7\n\n");
    CHECK(req.path == "/x");
    CHECK(req.last_event_id == "7");

    auto mixed = expect_request("GET /y HTTP/1.1\r\nHost: h\nLast-Event-ID: 8\r\n\n");
    CHECK(mixed.path == "/y");
    CHECK(mixed.last_event_id == "8");

    auto no_headers = expect_request("GET /z HTTP/1.1\n\n");
    CHECK(no_headers.path == "/z");
}

TEST_CASE("one empty line before the request line is skipped") {
    auto req = expect_request("\r\nGET /a HTTP/1.1\r\n\r\n");
    CHECK(req.path == "/a");
    CHECK(is_need_more("\r\n"));
    CHECK(is_need_more("\n"));
}

TEST_CASE("Last-Event-ID is matched case-insensitively and trimmed") {
    CHECK(expect_request("GET / HTTP/1.1\r\nlast-event-id:   abc-1 \t\r\n\r\n").last_event_id ==
          "abc-1");
    CHECK(expect_request("GET / HTTP/1.1\r\nLAST-EVENT-ID:5\r\n\r\n").last_event_id == "5");
    CHECK(expect_request("GET / HTTP/1.1\r\nLast-Event-ID:\r\n\r\n").last_event_id == "");
    CHECK(expect_request("GET / HTTP/1.1\r\nLast-Event-IDs: 5\r\n\r\n").last_event_id == "");
    CHECK(expect_request("GET / HTTP/1.1\r\nX-Last-Event-ID: 5\r\n\r\n").last_event_id == "");
}

TEST_CASE("absolute-form targets are reduced to the path") {
    auto req = expect_request("GET http://example.com:3000/events?channel=a HTTP/1.1\r\n\r\n");
    CHECK(req.path == "/events");
    CHECK(req.query == "channel=a");
    CHECK(expect_request("GET https://example.com HTTP/1.1\r\n\r\n").path == "/");
    auto root_query = expect_request("GET http://example.com?channel=b HTTP/1.1\r\n\r\n");
    CHECK(root_query.path == "/");
    CHECK(root_query.query == "channel=b");
}

TEST_CASE("a fragment is cut from the query") {
    auto req = expect_request("GET /e?channel=a#frag HTTP/1.1\r\n\r\n");
    CHECK(req.query == "channel=a");
}

TEST_CASE("malformed request lines are 400") {
    const char* bad[] = {
        "GET /\r\n\r\n",                 // no version
        "GET\r\n\r\n",                   // method only
        "GET  / HTTP/1.1\r\n\r\n",       // two spaces
        "GET / HTTP/1.1 extra\r\n\r\n",  // three parts
        "G(T / HTTP/1.1\r\n\r\n",        // method is not a token
        " GET / HTTP/1.1\r\n\r\n",       // empty method
        "\r\n\r\n",                      // no request line at all
    };
    for (const char* b : bad) {
        CAPTURE(b);
        auto e = expect_error(b);
        CHECK(e.status == 400);
        CHECK(e.reason == "malformed request line");
    }
}

TEST_CASE("unsupported versions are 400") {
    for (const char* b :
         {"GET / HTTP/2.0\r\n\r\n", "GET / HTTP/1.1x\r\n\r\n", "GET / http/1.1\r\n\r\n"}) {
        CAPTURE(b);
        auto e = expect_error(b);
        CHECK(e.status == 400);
        CHECK(e.reason == "unsupported HTTP version");
    }
}

TEST_CASE("targets that are not origin- or absolute-form, or hold control bytes, are 400") {
    for (std::string_view b : {std::string_view("GET events HTTP/1.1\r\n\r\n"),
                               std::string_view("GET * HTTP/1.1\r\n\r\n"),
                               std::string_view("GET /a\x01 HTTP/1.1\r\n\r\n"),
                               std::string_view("GET /a\x7f HTTP/1.1\r\n\r\n"),
                               std::string_view("GET /a\tb HTTP/1.1\r\n\r\n")}) {
        CAPTURE(b);
        auto e = expect_error(b);
        CHECK(e.status == 400);
        CHECK(e.reason == "malformed request target");
    }
}

TEST_CASE("malformed header lines are 400") {
    for (const char* b :
         {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
          "GET / HTTP/1.1\r\nHost : x\r\n\r\n", "GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
          "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"}) {
        CAPTURE(b);
        auto e = expect_error(b);
        CHECK(e.status == 400);
        CHECK(e.reason == "malformed header");
    }
}

TEST_CASE("binary junk is refused on the first byte instead of waiting") {
    auto e = expect_error(std::string_view("\x16\x03\x01\x02\x00", 5));
    CHECK(e.status == 400);
    CHECK(expect_error("{").status == 400);
    CHECK(is_need_more("G"));
}

TEST_CASE("oversized heads are 431") {
    SUBCASE("no blank line within the limit") {
        std::string buf = "GET / HTTP/1.1\r\nX-Pad: " + std::string(limits::max_request_bytes, 'a');
        auto e = expect_error(buf);
        CHECK(e.status == 431);
        CHECK(e.reason == "request header fields too large");
    }
    SUBCASE("a complete head past the limit") {
        auto e = expect_error(head_of_size(limits::max_request_bytes + 100));
        CHECK(e.status == 431);
    }
    SUBCASE("exactly max_request_bytes without a blank line still waits") {
        std::string buf = "GET / HTTP/1.1\r\nX: " + std::string(limits::max_request_bytes, 'a');
        buf.resize(limits::max_request_bytes);
        CHECK(is_need_more(buf));
    }
    SUBCASE("a complete head of exactly max_request_bytes is accepted") {
        const std::string head = head_of_size(limits::max_request_bytes);
        auto req = expect_request(head);
        CHECK(req.path == "/s");
    }
}

TEST_CASE("the size verdict does not depend on how the head was split across reads") {
    // The shard keeps appending reads until it holds more than max_request_bytes; whether a
    // head is accepted must not depend on where the segment boundaries fell.
    for (std::size_t total = limits::max_request_bytes - 2; total <= limits::max_request_bytes + 6;
         ++total) {
        CAPTURE(total);
        const std::string full = head_of_size(total);
        const bool whole_ok = std::holds_alternative<http_request>(parse_request(full));
        for (std::size_t cut = full.size() - 4; cut < full.size(); ++cut) {
            CAPTURE(cut);
            parse_result part = parse_request(std::string_view(full).substr(0, cut));
            if (whole_ok) {
                CHECK(std::holds_alternative<need_more>(part));
            } else {
                CHECK(!std::holds_alternative<http_request>(part));
            }
        }
        CHECK(whole_ok == (total <= limits::max_request_bytes));
    }
}

TEST_CASE("Accept: text/event-stream is recognised in any case and among other types") {
    CHECK(expect_request("GET / HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n").wants_event_stream());
    CHECK(expect_request("GET / HTTP/1.1\r\naccept:  Text/Event-Stream \r\n\r\n").wants_event_stream());
    CHECK(expect_request("GET / HTTP/1.1\r\nAccept: text/html, text/event-stream;q=0.9\r\n\r\n")
              .wants_event_stream());
    CHECK_FALSE(expect_request("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n").wants_event_stream());
    CHECK_FALSE(expect_request("GET / HTTP/1.1\r\n\r\n").wants_event_stream());
    CHECK_FALSE(expect_request("GET / HTTP/1.1\r\nX-Accept: text/event-stream\r\n\r\n").wants_event_stream());
}

TEST_CASE("the headers authorization, CORS and long-poll read are kept") {
    auto r = parse_request(
        "GET /s?channel=a&token=t HTTP/1.1\r\nAuthorization: Bearer abc.def.ghi \r\n"
        "Cookie: a=1; jugglite_token=\"tok\" ; b=2\r\nOrigin: https://app.example\r\n"
        "User-Agent: UA/1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Requested-With: XMLHttpRequest\r\n\r\n");
    auto& req = std::get<http_request>(r);
    CHECK(req.bearer_token() == "abc.def.ghi");
    CHECK(req.cookie_value("jugglite_token") == "tok");
    CHECK(req.cookie_value("a") == "1");
    CHECK(req.cookie_value("b") == "2");
    CHECK(req.cookie_value("c").empty());
    CHECK(req.origin == "https://app.example");
    CHECK(req.user_agent == "UA/1");
    CHECK(req.forwarded_for == "10.0.0.1");
    CHECK(req.is_xhr());
    CHECK(req.target == "/s?channel=a&token=t");
    auto basic = std::get<http_request>(
        parse_request("GET / HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n"));
    CHECK(basic.bearer_token().empty());
    CHECK_FALSE(basic.is_xhr());
    auto lower = std::get<http_request>(
        parse_request("GET / HTTP/1.1\r\nauthorization: bearer  t1\r\n\r\n"));
    CHECK(lower.bearer_token() == "t1");
}

TEST_CASE("the token comes from the Authorization header, then the cookie, then the query") {
    auto all = std::get<http_request>(parse_request(
        "GET /?token=q HTTP/1.1\r\nAuthorization: Bearer h\r\nCookie: jt=c\r\n\r\n"));
    CHECK(all.token("jt") == "h");
    auto cookie_query = std::get<http_request>(
        parse_request("GET /?token=q HTTP/1.1\r\nCookie: jt=c\r\n\r\n"));
    CHECK(cookie_query.token("jt") == "c");
    CHECK(cookie_query.token("other") == "q");
    auto none = std::get<http_request>(parse_request("GET /?channel=a HTTP/1.1\r\n\r\n"));
    CHECK(none.token("jt").empty());
}

TEST_CASE("control bytes in a header value or anywhere in the target are 400") {
    // A lone CR would end the line at the auth callback and forge a header there.
    for (const char* head : {"GET / HTTP/1.1\r\nCookie: a=b\rX-Forwarded-For: 10.0.0.1\r\n\r\n",
                             "GET / HTTP/1.1\r\nUser-Agent: a\x01z\r\n\r\n",
                             "GET / HTTP/1.1\r\nOrigin: a\x7f\r\n\r\n",
                             "GET http://a\rX:y/ HTTP/1.1\r\n\r\n"}) {
        CAPTURE(head);
        auto r = parse_request(head);
        REQUIRE(std::holds_alternative<http_error>(r));
        CHECK(std::get<http_error>(r).status == 400);
    }
    auto tab = parse_request("GET / HTTP/1.1\r\nUser-Agent: a\tb\r\n\r\n");
    REQUIRE(std::holds_alternative<http_request>(tab));
    CHECK(std::get<http_request>(tab).user_agent == "a\tb");
}

#include <doctest/doctest.h>

#include "core/auth_call.h"
#include "core/grant.h"

using namespace jugglite;

TEST_CASE("a grant keeps the requested channels it allows, by name or glob") {
    grant g{{"player_42", "news.*"}, "u", 0};
    std::vector<std::string> req{"player_42", "player_43", "news.sport", "news", "x"};
    g.filter(req);
    CHECK(req == std::vector<std::string>{"player_42", "news.sport"});
    CHECK(grant{{"*"}, "", 0}.allows("anything"));
    CHECK_FALSE(grant{}.allows("anything"));
    CHECK(glob_match("a?c", "abc"));
    CHECK_FALSE(glob_match("abc", "abcd"));
}

TEST_CASE("the callback's answer is read as a grant") {
    auto g = parse_grant_json(R"({"channels":["a","b*"],"sub":"u1","extra":{"x":[1]}})");
    REQUIRE(g.has_value());
    CHECK(g->channels == std::vector<std::string>{"a", "b*"});
    CHECK(g->sub == "u1");
    CHECK(parse_grant_json(R"({"channels":[],"sub":42})")->sub == "42");
    CHECK(parse_grant_json(R"({"channels":[]})")->channels.empty());
    for (const char* bad : {"", "[]", "{}", R"({"channels":"a"})", R"({"channels":[1]})",
                            R"({"channels":["a"]} x)", R"({"channels":["a")", "null"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_grant_json(bad).has_value());
    }
}

TEST_CASE("X-Jugglite-Channels percent-encodes each channel and joins them with commas") {
    CHECK(encode_channel_list({"a", "b.c_d-e~"}) == "a,b.c_d-e~");
    CHECK(encode_channel_list({"x,y", "sp ace", "ü"}) == "x%2Cy,sp%20ace,%C3%BC");
    CHECK(encode_channel_list({}).empty());
}

TEST_CASE("the auth URL is http:// or nginx's unix:/socket:/path") {
    auto http = auth_endpoint::parse("http://127.0.0.1:8080/auth");
    REQUIRE(http.has_value());
    CHECK(http->url == "http://127.0.0.1:8080/auth");
    CHECK(http->unix_socket.empty());
    auto unix_ep = auth_endpoint::parse("unix:/run/app.sock:/jugglite/auth");
    REQUIRE(unix_ep.has_value());
    CHECK(unix_ep->unix_socket == "/run/app.sock");
    CHECK(unix_ep->url == "http://localhost/jugglite/auth");
    for (const char* bad : {"https://x/auth", "ftp://x", "http://", "http:///x", "unix:", "unix:/s.sock",
                            "unix:relative.sock:/x", "unix:/s.sock:nopath"}) {
        CAPTURE(bad);
        CHECK_FALSE(auth_endpoint::parse(bad).has_value());
    }
}

TEST_CASE("the decision cache keeps grants and denials for its TTL, never failures") {
    auth_cache cache(1000, 2);
    auth_answer granted{0, 0, auth_answer::granted, 0, grant{{"a"}, "u", 0}, {}};
    auth_answer failed{0, 0, auth_answer::failed, 0, {}, "timeout"};
    cache.store("k1", granted, 0);
    cache.store("k2", failed, 0);
    REQUIRE(cache.find("k1", 500) != nullptr);
    CHECK(cache.find("k1", 500)->g.sub == "u");
    CHECK(cache.find("k2", 500) == nullptr);
    CHECK(cache.find("k1", 1000) == nullptr);  // expired
    cache.store("k3", granted, 0);
    cache.store("k4", granted, 0);  // over the bound: not kept
    CHECK(cache.find("k4", 10) == nullptr);
    cache.purge(2000);
    CHECK(cache.size() == 0);
    auth_call a, b;
    a.cookie = "s=1";
    b.authorization = "s=1";
    CHECK(a.cache_key() != b.cache_key());
}

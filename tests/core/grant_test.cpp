#include <doctest/doctest.h>

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

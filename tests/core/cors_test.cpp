#include <doctest/doctest.h>

#include "core/cors.h"

using namespace jugglite;

TEST_CASE("a listed origin is echoed with credentials, others get nothing") {
    cors_policy p({"https://a.example", "https://b.example"});
    auto d = p.decide("https://b.example");
    CHECK(p.headers(d) ==
          "Access-Control-Allow-Origin: https://b.example\r\n"
          "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n");
    auto other = p.decide("https://evil.example");
    CHECK(other == cors_policy::none);
    CHECK(p.headers(other) == "Vary: Origin\r\n");
    CHECK(p.decide("") == cors_policy::none);
    CHECK(p.decide("https://a.example.evil") == cors_policy::none);
}

TEST_CASE("* gives a literal * and never credentials, but a listed origin keeps them") {
    cors_policy p({"*", "https://a.example"});
    CHECK(p.headers(p.decide("https://evil.example")) ==
          "Access-Control-Allow-Origin: *\r\nVary: Origin\r\n");
    CHECK(p.headers(p.decide("https://a.example")).find("Credentials: true") != std::string::npos);
    CHECK(p.headers(p.decide("")).find("Allow-Origin: *") != std::string::npos);
}

TEST_CASE("no --cors-origins: no CORS headers at all") {
    cors_policy p;
    CHECK_FALSE(p.enabled());
    CHECK(p.headers(p.decide("https://a.example")).empty());
}

TEST_CASE("the preflight allows the polyfills' headers for an allowed origin only") {
    cors_policy p({"https://a.example"});
    std::string ok = p.preflight_response(p.decide("https://a.example"));
    CHECK(ok.starts_with("HTTP/1.1 204 No Content\r\n"));
    for (const char* h : {"Authorization", "Last-Event-ID", "X-Requested-With", "Cache-Control",
                          "Accept", "Access-Control-Max-Age: 600", "Allow-Methods: GET, HEAD"})
        CHECK(ok.find(h) != std::string::npos);
    std::string no = p.preflight_response(p.decide("https://evil.example"));
    CHECK(no.find("Access-Control-Allow") == std::string::npos);
    CHECK(no.find("Vary: Origin") != std::string::npos);
}

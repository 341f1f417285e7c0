// Tests for redis_endpoint::parse / display and config::channel_allowed glob matching.
#include "core/config.h"
#include "core/log.h"

#include <doctest/doctest.h>

#include <string>

using namespace jugglite;

namespace {

redis_endpoint expect_endpoint(std::string_view url) {
    auto r = redis_endpoint::parse(url);
    if (!r) FAIL_CHECK("unexpected error: " << r.error());
    REQUIRE(r.has_value());
    return *r;
}

std::string expect_url_error(std::string_view url) {
    auto r = redis_endpoint::parse(url);
    REQUIRE(!r.has_value());
    return r.error();
}

}  // namespace

TEST_CASE("redis_endpoint defaults: host 127.0.0.1, port 6379, no auth, db 0") {
    redis_endpoint ep;
    CHECK(ep.host == "127.0.0.1");
    CHECK(ep.port == 6379);
    CHECK(ep.user.empty());
    CHECK(ep.password.empty());
    CHECK(ep.db == 0);
}

TEST_CASE("redis_endpoint::parse host and port") {
    auto ep = expect_endpoint("redis://localhost");
    CHECK(ep.host == "localhost");
    CHECK(ep.port == 6379);
    CHECK(ep.db == 0);
    CHECK(ep.user.empty());
    CHECK(ep.password.empty());

    auto ep2 = expect_endpoint("redis://10.0.0.5:6380");
    CHECK(ep2.host == "10.0.0.5");
    CHECK(ep2.port == 6380);

    CHECK(expect_endpoint("redis://h:65535").port == 65535);
    CHECK(expect_endpoint("redis://h:1").port == 1);
}

TEST_CASE("redis_endpoint::parse a password alone") {
    auto ep = expect_endpoint("redis://secret@redis.internal:6390");
    CHECK(ep.user.empty());
    CHECK(ep.password == "secret");
    CHECK(ep.host == "redis.internal");
    CHECK(ep.port == 6390);

    auto empty_user = expect_endpoint("redis://:secret@h");
    CHECK(empty_user.user.empty());
    CHECK(empty_user.password == "secret");
}

TEST_CASE("redis_endpoint::parse user:password") {
    auto ep = expect_endpoint("redis://alice:s3cr3t@h:7000/3");
    CHECK(ep.user == "alice");
    CHECK(ep.password == "s3cr3t");
    CHECK(ep.host == "h");
    CHECK(ep.port == 7000);
    CHECK(ep.db == 3);

    // Only the first colon separates user and password; the last '@' ends the credentials.
    auto odd = expect_endpoint("redis://bob:pa:ss@w@h");
    CHECK(odd.user == "bob");
    CHECK(odd.password == "pa:ss@w");
    CHECK(odd.host == "h");

    // Credentials are percent-decoded, and '+' stays a plus.
    auto esc = expect_endpoint("redis://b%6Fb:p%40ss+w%3A@h");
    CHECK(esc.user == "bob");
    CHECK(esc.password == "p@ss+w:");
}

TEST_CASE("redis_endpoint::parse database numbers") {
    CHECK(expect_endpoint("redis://h/0").db == 0);
    CHECK(expect_endpoint("redis://h/15").db == 15);
    CHECK(expect_endpoint("redis://h:6379/2").db == 2);
    CHECK(expect_endpoint("redis://h/").db == 0);
    CHECK(expect_url_error("redis://h/x") == "redis URL: bad database number 'x'");
    CHECK(expect_url_error("redis://h/-1") == "redis URL: bad database number '-1'");
    CHECK(expect_url_error("redis://h/1x") == "redis URL: bad database number '1x'");
}

TEST_CASE("redis_endpoint::parse bracketed IPv6 hosts") {
    auto ep = expect_endpoint("redis://[::1]:6380");
    CHECK(ep.host == "::1");
    CHECK(ep.port == 6380);
    CHECK(ep.display() == "[::1]:6380");

    auto no_port = expect_endpoint("redis://[fe80::1]");
    CHECK(no_port.host == "fe80::1");
    CHECK(no_port.port == 6379);

    auto full = expect_endpoint("redis://u:p@[::1]:6381/4");
    CHECK(full.user == "u");
    CHECK(full.password == "p");
    CHECK(full.host == "::1");
    CHECK(full.port == 6381);
    CHECK(full.db == 4);

    CHECK(expect_url_error("redis://[::1") == "redis URL: unclosed '['");
    CHECK(expect_url_error("redis://[::1]6380") == "redis URL: junk after ']'");
    CHECK(expect_url_error("redis://[]:6379") == "redis URL: missing host");
}

TEST_CASE("redis_endpoint::parse refuses bad ports") {
    CHECK(expect_url_error("redis://h:abc") == "redis URL: bad port 'abc'");
    CHECK(expect_url_error("redis://h:0") == "redis URL: bad port '0'");
    CHECK(expect_url_error("redis://h:65536") == "redis URL: bad port '65536'");
    CHECK(expect_url_error("redis://h:-1") == "redis URL: bad port '-1'");
    CHECK(expect_url_error("redis://h:") == "redis URL: bad port ''");
    CHECK(expect_url_error("redis://h:63 79") == "redis URL: bad port '63 79'");
    CHECK(expect_url_error("redis://[::1]:x") == "redis URL: bad port 'x'");
}

TEST_CASE("redis_endpoint::parse refuses other schemes, missing hosts and bad escapes") {
    CHECK(expect_url_error("localhost:6379") == "redis URL must start with redis://");
    CHECK(expect_url_error("rediss://h") == "redis URL must start with redis://");
    CHECK(expect_url_error("REDIS://h") == "redis URL must start with redis://");
    CHECK(expect_url_error("redis://") == "redis URL: missing host");
    CHECK(expect_url_error("redis://:6379") == "redis URL: missing host");
    CHECK(expect_url_error("redis://pw@") == "redis URL: missing host");
    CHECK(expect_url_error("redis://u%zz:p@h") == "redis URL: bad percent escape in user name");
    CHECK(expect_url_error("redis://u:p%4@h") == "redis URL: bad percent escape in password");
}

TEST_CASE("redis_endpoint::display shows host:port and never credentials") {
    auto ep = expect_endpoint("redis://user:hunter2@cache:6400/1");
    CHECK(ep.display() == "cache:6400");
    CHECK(redis_endpoint{}.display() == "127.0.0.1:6379");
}

TEST_CASE("config::channel_allowed: an empty list allows everything") {
    config cfg;
    CHECK(cfg.channel_allowed("anything"));
    CHECK(cfg.channel_allowed(""));
}

TEST_CASE("config::channel_allowed matches shell globs") {
    config cfg;
    cfg.allowed_channels = {"news.*", "user-[0-9]*", "exact", "room?"};
    CHECK(cfg.channel_allowed("news.sports"));
    CHECK(cfg.channel_allowed("news."));
    CHECK(cfg.channel_allowed("news.a/b"));  // '*' crosses '/' (no FNM_PATHNAME)
    CHECK(!cfg.channel_allowed("news"));
    CHECK(!cfg.channel_allowed("xnews.sports"));
    CHECK(cfg.channel_allowed("user-7"));
    CHECK(cfg.channel_allowed("user-42abc"));
    CHECK(!cfg.channel_allowed("user-x"));
    CHECK(cfg.channel_allowed("exact"));
    CHECK(!cfg.channel_allowed("exactly"));
    CHECK(!cfg.channel_allowed("Exact"));  // case-sensitive
    CHECK(cfg.channel_allowed("room1"));
    CHECK(!cfg.channel_allowed("room"));
    CHECK(!cfg.channel_allowed("room12"));
}

TEST_CASE("config::channel_allowed matches the view's extent, not the buffer behind it") {
    config cfg;
    cfg.allowed_channels = {"ok"};
    CHECK(cfg.channel_allowed(std::string_view("ok")));
    CHECK(cfg.channel_allowed(std::string_view("okay").substr(0, 2)));
}

TEST_CASE("a log limiter lets one line through per interval and counts the rest") {
    jugglite::log::limiter l(1000);
    std::uint64_t held = 99;
    CHECK(l.allow(5000, held));
    CHECK(held == 0);
    CHECK_FALSE(l.allow(5100, held));
    CHECK_FALSE(l.allow(5999, held));
    CHECK(l.allow(6000, held));
    CHECK(held == 2);
    CHECK(l.allow(9000, held));
    CHECK(held == 0);
}

// Signed tokens, CORS and the XHR long-poll through the real binary: what a browser with a
// token hears, what a bad token gets, and that nobody else notices.
#include <doctest/doctest.h>

#include <fstream>

#include "support/jwt_fixtures.h"
#include "support/sse.h"
#include "support/tokens.h"

using namespace test;

namespace {

const std::string secret = "integration-secret-0123456789";

std::string token_for(const std::string& channels_json, std::int64_t exp, std::string extra = {}) {
    return sign_hs256(R"({"sub":"user-42","channels":)" + channels_json +
                          R"(,"exp":)" + std::to_string(exp) + extra + "}",
                      secret);
}

// Sends a GET with `headers` (each ending CRLF) and reads the whole answer.
std::string get_with(int port, const std::string& target, const std::string& headers) {
    auto c = raw_client::tcp(port);
    c.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n");
    c.read_until_closed(5s);
    return c.received();
}

// An XHR long-poll on `channel`, once its registration comment has arrived.
raw_client open_longpoll(int port, const std::string& channel) {
    auto c = raw_client::tcp(port);
    c.send("GET /s?channel=" + channel + " HTTP/1.1\r\nX-Requested-With: XMLHttpRequest\r\n\r\n");
    REQUIRE(c.read_until(": registered to channels: "));
    return c;
}

std::string status_line(const std::string& response) {
    return response.substr(0, response.find("\r\n"));
}

}  // namespace

TEST_CASE("a token narrows the stream to its grant, from the header, the cookie or the query") {
    jugglite_server server({"--jwt-secret", secret});
    redis_client redis(shared_redis().port());
    auto mine = unique_channel("player"), theirs = unique_channel("player");
    auto news = unique_channel("news");
    std::string tok = token_for(R"([")" + mine + R"(", "news*"])", unix_now() + 3600);
    std::string target = "/stream?channel=" + mine + "," + theirs + "," + news;

    auto by_header = raw_client::tcp(server.port());
    by_header.send("GET " + target + " HTTP/1.1\r\nAuthorization: Bearer " + tok + "\r\n\r\n");
    REQUIRE(by_header.read_until("\n", 5s));
    auto by_cookie = raw_client::tcp(server.port());
    by_cookie.send("GET " + target + " HTTP/1.1\r\nCookie: x=1; jugglite_token=" + tok + "\r\n\r\n");
    auto by_query = open_stream(server.port(), target + "&token=" + tok);
    for (auto* c : {&by_header, &by_cookie, &by_query}) {
        REQUIRE(c->read_until(": registered to channels: " + mine + ", " + news + "\n"));
        CHECK(c->received().starts_with("HTTP/1.1 200 OK\r\n"));
    }
    REQUIRE(wait_numsub(redis, mine, 1));
    REQUIRE(wait_numsub(redis, news, 1));
    CHECK(redis.numsub(theirs) == 0);  // never subscribed: nobody was allowed it
    redis.publish(theirs, "not yours");
    redis.publish(mine, "yours");
    for (auto* c : {&by_header, &by_cookie, &by_query}) {
        REQUIRE(c->read_until("data: yours\n\n"));
        CHECK(c->received().find("not yours") == std::string::npos);
    }
    CHECK(server.log().find(tok) == std::string::npos);  // tokens never reach the log
}

TEST_CASE("bad tokens get 401 or 431 with a reason, and open streams never notice") {
    jugglite_server server({"--jwt-secret", secret});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto good = token_for(R"([")" + ch + R"("])", unix_now() + 3600);
    auto open = open_stream(server.port(), "/s?channel=" + ch + "&token=" + good);
    REQUIRE(wait_numsub(redis, ch));

    auto none = get_with(server.port(), "/s?channel=" + ch, "");
    CHECK(status_line(none) == "HTTP/1.1 401 Unauthorized");
    CHECK(none.find("WWW-Authenticate: Bearer") != std::string::npos);
    CHECK(none.ends_with("no token\n"));

    const std::string forged = sign_hs256(R"({"channels":["*"],"exp":4102444800})", "wrong-key");
    const std::string alg_none =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJjaGFubmVscyI6WyIqIl0sImV4cCI6NDEwMjQ0NDgwMH0.";
    struct bad_case {
        std::string name, token, reason;
    } cases[] = {
        {"truncated", good.substr(0, good.size() - 10), "bad token signature"},
        {"forged", forged, "bad token signature"},
        {"alg none", alg_none, "token algorithm not accepted"},
        {"expired", token_for(R"(["*"])", unix_now() - 3600), "token expired"},
        {"not yet valid", token_for(R"(["*"])", unix_now() + 3600, R"(,"nbf":)" + std::to_string(unix_now() + 600)),
         "token not yet valid (nbf)"},
        {"channels not an array", sign_hs256(R"({"channels":"*","exp":4102444800})", secret),
         "token has no channels array"},
        {"garbage", "not-a-token", "malformed token"},
    };
    for (const auto& bad : cases) {
        CAPTURE(bad.name);
        auto answer = get_with(server.port(), "/s?channel=" + ch,
                               "Authorization: Bearer " + bad.token + "\r\n");
        CHECK(status_line(answer) == "HTTP/1.1 401 Unauthorized");
        CHECK(answer.ends_with(bad.reason + "\n"));
    }
    // A 100 KB cookie is past the request head's limit.
    auto huge = get_with(server.port(), "/s", "Cookie: jugglite_token=" + std::string(100'000, 'a') + "\r\n");
    CHECK(status_line(huge) == "HTTP/1.1 431 Request Header Fields Too Large");
    // A token just under the head limit but over the token limit.
    auto big = get_with(server.port(), "/s", "Authorization: Bearer " + std::string(6000, 'a') + "\r\n");
    CHECK(status_line(big) == "HTTP/1.1 431 Request Header Fields Too Large");
    CHECK(big.ends_with("token too large\n"));

    // Every refusal above but the 100 KB cookie, which the request parser refused first.
    CHECK(metric(server.port(), R"(jugglite_connections_refused_total{reason="auth"})") == 9);
    redis.publish(ch, "still here");
    CHECK(open.read_until("data: still here\n\n"));
    CHECK(answers_200(server.port(), "/livez"));
}

TEST_CASE("a stream ends with a retry when its token expires") {
    jugglite_server server({"--jwt-secret", secret, "--keepalive", "1"});
    auto ch = unique_channel();
    // The 5 s leeway that admits a just-expired token also ends the stream: exp + 5 s.
    auto c = open_stream(server.port(), "/s?channel=" + ch + "&token=" +
                                            token_for(R"([")" + ch + R"("])", unix_now() - 3));
    REQUIRE(c.read_until_closed(8s));
    CHECK(c.body().find(": token expired\nretry: ") != std::string::npos);
    CHECK(c.body().ends_with("\n\n"));
    CHECK(metric(server.port(), "jugglite_streams_expired_total") == 1);
    CHECK(metric(server.port(), "jugglite_connections_open") == 0);
}

TEST_CASE("CORS: a listed origin gets credentials, * never does, others get nothing") {
    jugglite_server server({"--cors-origins", "https://app.example,*", "--jwt-secret", secret});
    auto ch = unique_channel();
    auto tok = token_for(R"(["*"])", unix_now() + 3600);
    auto listed = raw_client::tcp(server.port());
    listed.send("GET /s?channel=" + ch + " HTTP/1.1\r\nOrigin: https://app.example\r\n"
                "Cookie: jugglite_token=" + tok + "\r\n\r\n");
    REQUIRE(listed.read_until(": registered to channels: "));
    CHECK(listed.received().find("Access-Control-Allow-Origin: https://app.example\r\n"
                                 "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n") !=
          std::string::npos);
    auto other = raw_client::tcp(server.port());
    other.send("GET /s?channel=" + ch + "&token=" + tok +
               " HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
    REQUIRE(other.read_until(": registered to channels: "));
    CHECK(other.received().find("Access-Control-Allow-Origin: *\r\nVary: Origin\r\n") != std::string::npos);
    CHECK(other.received().find("Credentials") == std::string::npos);
    // The refusal carries the CORS headers too, so a fetch-based client can read its status.
    auto refused = get_with(server.port(), "/s", "Origin: https://app.example\r\n");
    CHECK(status_line(refused) == "HTTP/1.1 401 Unauthorized");
    CHECK(refused.find("Access-Control-Allow-Origin: https://app.example\r\n") != std::string::npos);
    auto preflight = raw_client::tcp(server.port());
    preflight.send("OPTIONS /s HTTP/1.1\r\nOrigin: https://app.example\r\n"
                   "Access-Control-Request-Headers: authorization,last-event-id\r\n\r\n");
    REQUIRE(preflight.read_until_closed());
    CHECK(status_line(preflight.received()) == "HTTP/1.1 204 No Content");
    CHECK(preflight.received().find("Access-Control-Allow-Headers: Authorization, Last-Event-ID, "
                                    "X-Requested-With, Cache-Control, Accept\r\n") != std::string::npos);
}

TEST_CASE("no --cors-origins: no CORS headers, and OPTIONS is 405") {
    jugglite_server server;
    auto ch = unique_channel();
    auto c = raw_client::tcp(server.port());
    c.send("GET /s?channel=" + ch + " HTTP/1.1\r\nOrigin: https://app.example\r\n\r\n");
    REQUIRE(c.read_until(": registered to channels: "));
    CHECK(c.received().find("Access-Control") == std::string::npos);
    auto options = raw_client::tcp(server.port());
    options.send("OPTIONS /s HTTP/1.1\r\n\r\n");
    REQUIRE(options.read_until_closed());
    CHECK(status_line(options.received()) == "HTTP/1.1 405 Method Not Allowed");
}

TEST_CASE("an XHR long-poll ends after a message, and after --longpoll-max without one") {
    jugglite_server server({"--longpoll-max", "1"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto poll = open_longpoll(server.port(), ch);
    REQUIRE(wait_numsub(redis, ch));
    auto plain = open_stream(server.port(), "/s?channel=" + ch);
    redis.publish(ch, "one");
    redis.publish(ch, "two");
    REQUIRE(poll.read_until_closed(3s));
    CHECK(poll.body().ends_with("data: one\n\ndata: two\n\n"));
    // An EventSource on the same channel stays open.
    redis.publish(ch, "three");
    CHECK(plain.read_until("data: three\n\n"));
    CHECK_FALSE(plain.closed());

    auto idle = open_longpoll(server.port(), ch);
    CHECK(idle.read_until_closed(4s));
    CHECK(metric(server.port(), "jugglite_longpolls_ended_total") == 2);
}

TEST_CASE("keys come from the environment, secret files with a kid, and PEM files") {
    std::string dir = temp_dir();
    {
        std::ofstream(dir + "/a.secret") << "secret-a-0123456789\n";  // the newline is dropped
    }
    jugglite_server server({"--jwt-secret-file", "a=" + dir + "/a.secret", "--jwt-public-key",
                            jwt_fixture_path("rsa_public.pem") + ",other=" +
                                jwt_fixture_path("ec_public.pem")},
                           shared_redis().url(), {"JUGGLITE_JWT_SECRET=" + secret});
    auto ch = unique_channel();
    auto opens = [&](const std::string& token) {
        auto c = raw_client::tcp(server.port());
        c.send("GET /s?channel=" + ch + "&token=" + token + " HTTP/1.1\r\n\r\n");
        return c.read_until(": registered to channels: ", 5s);
    };
    const auto node_tokens = jwt_fixture_tokens();  // made by Node's crypto
    CHECK(opens(token_for(R"(["*"])", unix_now() + 60)));  // $JUGGLITE_JWT_SECRET
    CHECK(opens(node_tokens.at("hs256_kid_a")));           // the file named a
    CHECK(opens(node_tokens.at("rs256")));
    CHECK(opens(node_tokens.at("es256")));
    CHECK_FALSE(opens(node_tokens.at("hs256_kid_b")));
    CHECK_FALSE(opens(node_tokens.at("hs256_with_rsa_public_key")));
    CHECK_FALSE(opens(node_tokens.at("alg_none")));
    CHECK(server.log().find(secret) == std::string::npos);
}

TEST_CASE("a key that can't work stops the server at start with one clear line") {
    auto r = run_jugglite({"--jwt-public-key", jwt_fixture_path("rsa_private.pem")});
    CHECK(r.status == 2);
    CHECK(r.output.find("not a PEM public key") != std::string::npos);
    r = run_jugglite({"--jwt-audience", "x"});
    CHECK(r.status == 2);
    CHECK(r.output.find("--jwt-audience needs a key") != std::string::npos);
}

TEST_CASE("a long-poll on a channel busier than 250 ms ends at --longpoll-max") {
    jugglite_server server({"--longpoll-max", "1"});
    redis_client redis(shared_redis().port());
    auto ch = unique_channel();
    auto poll = open_longpoll(server.port(), ch);
    REQUIRE(wait_numsub(redis, ch));
    auto until = std::chrono::steady_clock::now() + 4s;
    while (!poll.closed() && std::chrono::steady_clock::now() < until) {
        redis.publish(ch, "tick");
        poll.read_until("never", 100ms);
    }
    CHECK(poll.closed());
    CHECK(poll.body().find("data: tick\n\n") != std::string::npos);
}

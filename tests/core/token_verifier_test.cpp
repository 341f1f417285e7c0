// Token verification against tokens signed by Node's crypto (tests/fixtures/jwt/make.mjs),
// an implementation independent of the cpp-jwt that jugglite verifies with, and against
// tokens made here for the time-dependent cases.
#include <doctest/doctest.h>

#include <chrono>
#include <jwt/jwt.hpp>
#include <map>

#include "core/limits.h"
#include "core/token_verifier.h"
#include "support/jwt_fixtures.h"

using namespace jugglite;

namespace {

std::string fixture(const std::string& name) {
    auto text = test::read_jwt_fixture(name);
    REQUIRE(text.has_value());
    return *text;
}

const std::map<std::string, std::string>& tokens() {
    static const std::map<std::string, std::string> all = test::jwt_fixture_tokens();
    return all;
}

token_verifier make(std::vector<jwt_key_source> keys, bool allow_no_exp = false,
                    std::string aud = {}, std::string iss = {}) {
    jwt_settings s;
    s.keys = std::move(keys);
    s.allow_no_exp = allow_no_exp;
    s.audience = std::move(aud);
    s.issuer = std::move(iss);
    auto v = token_verifier::make(std::move(s));
    REQUIRE(v.has_value());
    return std::move(*v);
}

jwt_key_source secret_key() { return {"", fixture("secret.txt"), false}; }
jwt_key_source rsa_key() { return {"", fixture("rsa_public.pem"), true}; }
jwt_key_source ec_key() { return {"", fixture("ec_public.pem"), true}; }

std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// An HS256 token over `claims` (a JSON object text), signed here.
std::string hs256(const std::string& claims_json, const std::string& key) {
    auto claims = nlohmann::json::parse(claims_json);
    jwt::jwt_object obj{jwt::params::algorithm("HS256"), jwt::params::secret(key)};
    for (auto& [k, v] : claims.items()) obj.payload().add_claim(k, v);
    return obj.signature();
}

std::string reason_of(const token_verifier& v, const std::string& token) {
    auto r = v.verify(token);
    REQUIRE_FALSE(r.has_value());
    return r.error().reason;
}

}  // namespace

TEST_CASE("tokens signed by another implementation verify with each algorithm") {
    auto hmac = make({secret_key()});
    for (const char* name : {"hs256", "hs384", "hs512"}) {
        CAPTURE(name);
        auto g = hmac.verify(tokens().at(name));
        REQUIRE(g.has_value());
        CHECK(g->sub == "user-42");
        CHECK(g->channels == std::vector<std::string>{"player_42", "news.*"});
        CHECK(g->expires_at == 4102444800);
    }
    auto rsa = make({rsa_key()});
    auto g = rsa.verify(tokens().at("rs256"));
    REQUIRE(g.has_value());
    CHECK(g->sub == "user-42");
    auto ec = make({ec_key()});
    CHECK(ec.verify(tokens().at("es256")).has_value());
}

TEST_CASE("a key accepts only its own algorithms") {
    auto rsa = make({rsa_key()});
    CHECK(reason_of(rsa, tokens().at("alg_none")) == "token algorithm not accepted");
    // HS256 "signed" with the RSA public key as the secret: no HMAC key is configured, so
    // the PEM is never used as one.
    CHECK(reason_of(rsa, tokens().at("hs256_with_rsa_public_key")) ==
          "no key for the token's algorithm");
    CHECK(reason_of(rsa, tokens().at("es256")) == "no key for the token's algorithm");
    CHECK(reason_of(rsa, tokens().at("rs256_other_key")) == "bad token signature");
    // Both kinds configured: the HMAC secret is not the PEM, so the forgery still fails.
    auto both = make({rsa_key(), secret_key()});
    CHECK(reason_of(both, tokens().at("hs256_with_rsa_public_key")) == "bad token signature");
    CHECK(both.verify(tokens().at("rs256")).has_value());
    CHECK(both.verify(tokens().at("hs256")).has_value());
    auto hmac = make({secret_key()});
    CHECK(reason_of(hmac, tokens().at("alg_none")) == "token algorithm not accepted");
    CHECK(reason_of(hmac, tokens().at("rs256")) == "no key for the token's algorithm");
}

TEST_CASE("keys are picked by kid, and rotation without kid tries each key") {
    jwt_key_source a{"a", "secret-a-0123456789", false};
    jwt_key_source b{"b", "secret-b-0123456789", false};
    auto v = make({a, b});
    CHECK(v.verify(tokens().at("hs256_kid_a")).has_value());
    CHECK(v.verify(tokens().at("hs256_kid_b")).has_value());
    auto only_a = make({a});
    CHECK(reason_of(only_a, tokens().at("hs256_kid_b")) == "unknown token key id");
    // Without a kid in the token, every HMAC key is tried: old and new secrets both work.
    std::string claims = R"({"channels":["x"],"exp":4102444800})";
    auto rotated = make({{"", "old-secret-0123456789", false}, {"", "new-secret-0123456789", false}});
    CHECK(rotated.verify(hs256(claims, "old-secret-0123456789")).has_value());
    CHECK(rotated.verify(hs256(claims, "new-secret-0123456789")).has_value());
    CHECK(reason_of(rotated, hs256(claims, "another-secret-0123")) == "bad token signature");
}

TEST_CASE("exp, nbf, aud and iss are checked") {
    const std::string key = fixture("secret.txt");
    auto v = make({secret_key()});
    auto at = [&](std::int64_t t) { return std::to_string(t); };
    std::int64_t now = now_s();
    CHECK(reason_of(v, hs256(R"({"channels":["x"],"exp":)" + at(now - 60) + "}", key)) ==
          "token expired");
    // Within the leeway an expired token still passes.
    CHECK(v.verify(hs256(R"({"channels":["x"],"exp":)" + at(now - 2) + "}", key)).has_value());
    CHECK(reason_of(v, hs256(R"({"channels":["x"],"exp":4102444800,"nbf":)" + at(now + 60) + "}",
                             key)) == "token not yet valid (nbf)");
    CHECK(reason_of(v, hs256(R"({"channels":["x"]})", key)) == "token has no exp");
    CHECK(make({secret_key()}, true).verify(hs256(R"({"channels":["x"]})", key)).has_value());

    auto aud = make({secret_key()}, false, "jugglite");
    CHECK(aud.verify(hs256(R"({"channels":[],"exp":4102444800,"aud":"jugglite"})", key)).has_value());
    CHECK(aud.verify(hs256(R"({"channels":[],"exp":4102444800,"aud":["x","jugglite"]})", key))
              .has_value());
    CHECK(reason_of(aud, hs256(R"({"channels":[],"exp":4102444800,"aud":"other"})", key)) ==
          "token audience not accepted");
    CHECK(reason_of(aud, hs256(R"({"channels":[],"exp":4102444800})", key)) ==
          "token audience not accepted");
    auto iss = make({secret_key()}, false, "", "https://app.example");
    CHECK(iss.verify(hs256(R"({"channels":[],"exp":4102444800,"iss":"https://app.example"})", key))
              .has_value());
    CHECK(reason_of(iss, hs256(R"({"channels":[],"exp":4102444800,"iss":"evil"})", key)) ==
          "token issuer not accepted");
}

TEST_CASE("claims of the wrong shape and malformed tokens are refused, never thrown") {
    const std::string key = fixture("secret.txt");
    auto v = make({secret_key()});
    CHECK(reason_of(v, hs256(R"({"exp":4102444800})", key)) == "token has no channels array");
    CHECK(reason_of(v, hs256(R"({"channels":"x","exp":4102444800})", key)) ==
          "token has no channels array");
    CHECK(reason_of(v, hs256(R"({"channels":["x",1],"exp":4102444800})", key)) ==
          "token channels must be strings");
    CHECK(reason_of(v, hs256(R"({"channels":["x"],"exp":"tomorrow"})", key)) ==
          "token claim of the wrong type");
    CHECK(v.verify(hs256(R"({"channels":[],"exp":4102444800,"sub":42})", key))->sub == "42");

    const std::string good = tokens().at("hs256");
    for (std::string bad : {std::string(), std::string("."), std::string(".."), std::string("abc"),
                            good.substr(0, good.size() / 2), good.substr(0, good.rfind('.')),
                            good + ".extra", std::string("e30.e30.e30"),
                            std::string("eyJhbGciOjF9.e30.AAAA"),  // "alg": 1
                            std::string("!!!.???.***"),
                            // a byte past 0x7f in the header (found by tests/fuzz/token_fuzz.cpp:
                            // cpp-jwt's base64 decoder read before its table)
                            std::string("eyJhbGc\xff\xff\xff\xff\xff\xff\xffZiOiJub2:lIn0.eyJzdWIiOiJ4In0."),
                            good.substr(0, 10) + "\x80" + good.substr(11)}) {
        CAPTURE(bad);
        auto r = v.verify(bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == 401);
    }
    auto big = v.verify(std::string(limits::max_token_bytes + 1, 'a'));
    REQUIRE_FALSE(big.has_value());
    CHECK(big.error().status == 431);
    // A flipped signature byte.
    std::string flipped = good;
    flipped[flipped.size() - 3] = flipped[flipped.size() - 3] == 'A' ? 'B' : 'A';
    CHECK(reason_of(v, flipped) == "bad token signature");
}

TEST_CASE("keys that can't work are refused at start with a reason") {
    jwt_settings s;
    s.keys = {{"", "", false}};
    auto empty = token_verifier::make(s);
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().find("empty") != std::string::npos);
    s.keys = {{"k1", "not a pem", true}};
    auto junk = token_verifier::make(s);
    REQUIRE_FALSE(junk.has_value());
    CHECK(junk.error().find("key 'k1'") != std::string::npos);
    s.keys = {{"", fixture("rsa_private.pem"), true}};
    CHECK_FALSE(token_verifier::make(s).has_value());
}

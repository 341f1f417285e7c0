// Signed tokens for tests, made with cpp-jwt (the fixtures in tests/fixtures/jwt were made
// by Node's crypto instead, to check interoperability).
#pragma once

#include <chrono>
#include <jwt/jwt.hpp>
#include <string>

namespace test {

inline std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// An HS256 token over `claims_json` (a JSON object), signed with `key`.
inline std::string sign_hs256(const std::string& claims_json, const std::string& key) {
    auto claims = nlohmann::json::parse(claims_json);
    jwt::jwt_object obj{jwt::params::algorithm("HS256"), jwt::params::secret(key)};
    for (auto& [k, v] : claims.items()) obj.payload().add_claim(k, v);
    return obj.signature();
}

}  // namespace test

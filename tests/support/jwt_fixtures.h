// The JWT fixtures in tests/fixtures/jwt, made by Node's crypto (make.mjs): the keys as
// files and the named tokens of tokens.txt. For unit and integration tests and the token
// benchmark; the including target defines JUGGLITE_FIXTURES.
#pragma once

#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace test {

inline std::string jwt_fixture_path(const std::string& name) {
    return std::string(JUGGLITE_FIXTURES) + "/jwt/" + name;
}

// The contents of fixture `name`, or nullopt if it can't be read.
inline std::optional<std::string> read_jwt_fixture(const std::string& name) {
    std::ifstream in(jwt_fixture_path(name), std::ios::binary);
    if (!in) return std::nullopt;
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// tokens.txt as name -> token (empty if the file can't be read).
inline std::map<std::string, std::string> jwt_fixture_tokens() {
    std::map<std::string, std::string> m;
    std::istringstream in(read_jwt_fixture("tokens.txt").value_or(""));
    for (std::string name, tok; in >> name >> tok;) m[name] = tok;
    return m;
}

}  // namespace test

// Verifies signed tokens (JWS compact form, HS256/384/512, RS256, ES256) with cpp-jwt over
// OpenSSL, and turns their claims into a grant. Pure computation: no I/O after make().
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "core/grant.h"
#include "core/limits.h"

namespace jugglite {

// One configured key, as the flags give it.
struct jwt_key_source {
    std::string kid;       // empty: the key has no id and is tried for tokens of its type
    std::string material;  // an HMAC secret, or a PEM public key (RSA or EC P-256)
    bool is_public_key = false;
};

struct jwt_settings {
    std::vector<jwt_key_source> keys;
    std::string audience;  // non-empty: `aud` must name it (a string, or an array holding it)
    std::string issuer;    // non-empty: `iss` must equal it
    bool allow_no_exp = false;
    std::uint32_t leeway_seconds = limits::token_leeway_seconds;
};

// Why a token was refused, for the 401's one-line reason. Never contains the token.
struct token_error {
    int status;  // 401, or 431 for a token past limits::max_token_bytes
    std::string reason;
};

class token_verifier {
public:
    // Loads and classifies the keys: a PEM must be an RSA or an EC P-256 public key, and a
    // secret must not be empty. Each key then accepts only its own algorithms (HS* for a
    // secret, RS256 for RSA, ES256 for EC), so a token can't pick how it is checked.
    [[nodiscard]] static std::expected<token_verifier, std::string> make(jwt_settings settings);

    // Checks `token`'s signature, algorithm, `exp` (required unless allow_no_exp), `nbf`,
    // `aud` and `iss`, and returns its grant: the `channels` claim (an array of strings,
    // required) and `sub`. With a `kid` in its header, only the keys with that id (or, if
    // none has it, those without an id) are tried. Never throws.
    [[nodiscard]] std::expected<grant, token_error> verify(std::string_view token) const noexcept;

    [[nodiscard]] bool empty() const noexcept { return _keys.empty(); }

private:
    enum class key_type : std::uint8_t { hmac, rsa, ec };
    struct key {
        std::string kid;
        std::string material;
        key_type type;
    };
    [[nodiscard]] std::expected<grant, token_error> verify_with(std::string_view token,
                                                                const key& k,
                                                                std::string_view alg) const;

    std::vector<key> _keys;
    jwt_settings _settings;
};

}  // namespace jugglite

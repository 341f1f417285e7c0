#include "core/token_verifier.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <jwt/jwt.hpp>
#include <memory>

#include "core/limits.h"

namespace jugglite {

namespace {

// Classifies a PEM public key: RSA, or EC on P-256 (the one curve ES256 names).
std::expected<bool /*is_rsa*/, std::string> classify_pem(const std::string& pem) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    if (!bio) return std::unexpected("out of memory");
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
        PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
    if (!pkey) return std::unexpected("not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    switch (EVP_PKEY_base_id(pkey.get())) {
        case EVP_PKEY_RSA: return true;
        case EVP_PKEY_EC: {
            char curve[64] = {};
            size_t len = 0;
            if (EVP_PKEY_get_utf8_string_param(pkey.get(), "group", curve, sizeof curve, &len) !=
                    1 ||
                std::string_view(curve, len) != "prime256v1")
                return std::unexpected("an EC key must be on P-256 (prime256v1) for ES256");
            return false;
        }
        default: return std::unexpected("only RSA and EC P-256 public keys are supported");
    }
}

// The one refusal after which the next key of the token's type is tried (rotation).
constexpr std::string_view bad_signature = "bad token signature";

bool is_hmac_alg(std::string_view alg) {
    return alg == "HS256" || alg == "HS384" || alg == "HS512";
}

// The one reason a client is told; the library's messages name claims, never values.
std::string describe(const std::error_code& ec) {
    if (ec == jwt::VerificationErrc::TokenExpired) return "token expired";
    if (ec == jwt::VerificationErrc::ImmatureSignature) return "token not yet valid (nbf)";
    if (ec == jwt::VerificationErrc::InvalidSignature || ec == jwt::AlgorithmErrc::VerificationErr)
        return std::string(bad_signature);
    if (ec == jwt::VerificationErrc::InvalidIssuer) return "token issuer not accepted";
    if (ec == jwt::VerificationErrc::InvalidAlgorithm) return "token algorithm not accepted";
    if (ec == jwt::AlgorithmErrc::NoneAlgorithmUsed) return "token algorithm not accepted";
    if (ec == jwt::VerificationErrc::TypeConversionError) return "token claim of the wrong type";
    return "malformed token";
}

}  // namespace

std::expected<token_verifier, std::string> token_verifier::make(jwt_settings settings) {
    token_verifier v;
    for (auto& src : settings.keys) {
        std::string label = src.kid.empty() ? std::string("a key") : "key '" + src.kid + "'";
        key k{src.kid, src.material, key_type::hmac};
        if (src.is_public_key) {
            auto rsa = classify_pem(src.material);
            if (!rsa) return std::unexpected(label + ": " + rsa.error());
            k.type = *rsa ? key_type::rsa : key_type::ec;
        } else if (src.material.empty()) {
            return std::unexpected(label + ": the JWT secret is empty");
        }
        v._keys.push_back(std::move(k));
    }
    settings.keys.clear();  // the material lives in _keys only
    v._settings = std::move(settings);
    return v;
}

std::expected<grant, token_error> token_verifier::verify(std::string_view token) const noexcept {
    if (token.size() > limits::max_token_bytes) return std::unexpected(token_error{431, "token too large"});
    try {
        // The header names the algorithm and maybe a key id; both only pick which keys are
        // tried. Each key then checks the signature with its own algorithms alone.
        // A compact JWT is base64url and dots. cpp-jwt's base64 decoder indexes its table
        // with a plain (signed) char, so a byte past 0x7f would read before the table
        // (found by tests/fuzz/token_fuzz.cpp): nothing else reaches it.
        auto base64url = [](unsigned char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '=';
        };
        if (!std::all_of(token.begin(), token.end(), base64url))
            return std::unexpected(token_error{401, "malformed token"});
        auto dot = token.find('.');
        if (dot == std::string_view::npos)
            return std::unexpected(token_error{401, "malformed token"});
        jwt::jwt_header header;
        std::error_code ec;
        header.decode(jwt::string_view(token.data(), dot), ec);
        if (ec) return std::unexpected(token_error{401, "malformed token"});
        const auto& fields = header.create_json_obj();
        std::string alg = fields.at("alg").get<std::string>();
        std::string kid;
        if (auto it = fields.find("kid"); it != fields.end()) {
            if (!it->is_string()) return std::unexpected(token_error{401, "malformed token"});
            kid = it->get<std::string>();
        }
        key_type wanted;
        if (is_hmac_alg(alg)) wanted = key_type::hmac;
        else if (alg == "RS256") wanted = key_type::rsa;
        else if (alg == "ES256") wanted = key_type::ec;
        else return std::unexpected(token_error{401, "token algorithm not accepted"});

        bool kid_known = !kid.empty() && std::any_of(_keys.begin(), _keys.end(),
                                                     [&](const key& k) { return k.kid == kid; });
        std::expected<grant, token_error> last =
            std::unexpected(token_error{401, kid.empty() || kid_known
                                                 ? "no key for the token's algorithm"
                                                 : "unknown token key id"});
        for (const key& k : _keys) {
            if (k.type != wanted) continue;
            if (kid_known ? k.kid != kid : (!kid.empty() && !k.kid.empty())) continue;
            last = verify_with(token, k, alg);
            if (last || last.error().reason != bad_signature) return last;
        }
        return last;
    } catch (const std::bad_alloc&) {
        return std::unexpected(token_error{401, "out of memory"});
    } catch (const std::exception&) {
        return std::unexpected(token_error{401, "malformed token"});
    }
}

std::expected<grant, token_error> token_verifier::verify_with(std::string_view token,
                                                              const key& k,
                                                              std::string_view alg) const {
    using namespace jwt::params;
    std::error_code ec;
    // The allow-list is the token's own algorithm only once it matched the key's type above.
    std::vector<std::string> allowed{std::string(alg)};
    jwt::jwt_object obj =
        _settings.issuer.empty()
            ? jwt::decode(jwt::string_view(token.data(), token.size()), algorithms(allowed), ec,
                          secret(k.material), leeway(_settings.leeway_seconds), jwt::params::verify(true))
            : jwt::decode(jwt::string_view(token.data(), token.size()), algorithms(allowed), ec,
                          secret(k.material), leeway(_settings.leeway_seconds), jwt::params::verify(true),
                          issuer(_settings.issuer));
    if (ec) return std::unexpected(token_error{401, describe(ec)});

    const auto& claims = obj.payload().create_json_obj();
    grant g;
    if (auto exp = claims.find("exp"); exp != claims.end()) {
        // Positive: cpp-jwt reads exp as unsigned, so -10 would pass its check as far future.
        if (!exp->is_number() || exp->get<double>() < 1)
            return std::unexpected(token_error{401, "token claim of the wrong type"});
        g.expires_at = exp->get<std::int64_t>();
    } else if (!_settings.allow_no_exp) {
        return std::unexpected(token_error{401, "token has no exp"});
    }
    if (!_settings.audience.empty()) {
        auto aud = claims.find("aud");
        bool ok = false;
        if (aud != claims.end() && aud->is_string()) ok = aud->get<std::string>() == _settings.audience;
        if (aud != claims.end() && aud->is_array())
            for (const auto& a : *aud) ok = ok || (a.is_string() && a.get<std::string>() == _settings.audience);
        if (!ok) return std::unexpected(token_error{401, "token audience not accepted"});
    }
    auto channels = claims.find("channels");
    if (channels == claims.end() || !channels->is_array())
        return std::unexpected(token_error{401, "token has no channels array"});
    for (const auto& c : *channels) {
        if (!c.is_string()) return std::unexpected(token_error{401, "token channels must be strings"});
        g.channels.push_back(c.get<std::string>());
    }
    if (auto sub = claims.find("sub"); sub != claims.end()) {
        if (sub->is_string()) g.sub = sub->get<std::string>();
        else if (sub->is_number()) g.sub = sub->dump();
    }
    return g;
}

}  // namespace jugglite

// Token verification on any bytes, with an HMAC secret and an RSA key configured that no
// seed was signed with (the seeds are the test fixtures' tokens): nothing may pass.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "core/token_verifier.h"

using namespace jugglite;

namespace {

std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

const token_verifier& verifier() {
    static const token_verifier v = [] {
        jwt_settings s;
        s.keys.push_back({"", "fuzz-secret-0123456789abcdef0123", false});
        s.keys.push_back({"rsa", read(JUGGLITE_FIXTURES "/jwt/other_rsa_public.pem"), true});
        s.audience = "jugglite";
        auto made = token_verifier::make(std::move(s));
        if (!made) __builtin_trap();
        return std::move(*made);
    }();
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string token(reinterpret_cast<const char*>(data), size);
    auto g = verifier().verify(token);
    if (g) {
        // A forged token passed: neither key signed anything the fuzzer has.
        __builtin_trap();
    }
    return 0;
}

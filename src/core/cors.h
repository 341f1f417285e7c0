// The CORS decision (--cors-origins): which headers a response to a given Origin carries.
// A listed origin is echoed with credentials, so cookie-authorized streams work with
// `withCredentials`; `*` is answered with a literal `*` and never credentials, or any site
// could read a logged-in user's private streams.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jugglite {

class cors_policy {
public:
    cors_policy() = default;
    // `origins`: exact origins ("https://app.example") and/or "*".
    explicit cors_policy(std::vector<std::string> origins);

    // What a response to `origin` gets, small enough to keep per connection:
    // none (no CORS headers), any (`*`), or 2 + i for origins()[i] echoed with credentials.
    using decision = std::uint16_t;
    static constexpr decision none = 0;
    static constexpr decision any = 1;
    [[nodiscard]] decision decide(std::string_view origin) const noexcept;

    // The header lines (each ending CRLF) for `d`, `Vary: Origin` included whenever CORS is
    // configured; empty when it is not.
    [[nodiscard]] std::string headers(decision d) const;

    // The complete answer to an OPTIONS preflight from an origin decided `d`: 204, the
    // allowed methods and request headers, and Access-Control-Max-Age.
    [[nodiscard]] std::string preflight_response(decision d) const;

    [[nodiscard]] bool enabled() const noexcept { return !_origins.empty() || _any; }
    [[nodiscard]] const std::vector<std::string>& origins() const noexcept { return _origins; }

private:
    std::vector<std::string> _origins;  // exact origins, without "*"
    bool _any = false;
};

}  // namespace jugglite

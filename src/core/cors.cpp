#include "core/cors.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/limits.h"

namespace jugglite {

cors_policy::cors_policy(std::vector<std::string> origins) {
    for (auto& o : origins) {
        if (o == "*") _any = true;
        else if (std::find(_origins.begin(), _origins.end(), o) == _origins.end())
            _origins.push_back(std::move(o));
    }
    if (_origins.size() > 0xffff - 2) _origins.resize(0xffff - 2);
}

cors_policy::decision cors_policy::decide(std::string_view origin) const noexcept {
    if (!origin.empty()) {
        auto it = std::find(_origins.begin(), _origins.end(), origin);
        if (it != _origins.end()) return static_cast<decision>(2 + (it - _origins.begin()));
    }
    return _any ? any : none;
}

std::string cors_policy::headers(decision d) const {
    if (!enabled()) return {};
    if (d == any) return "Access-Control-Allow-Origin: *\r\nVary: Origin\r\n";
    if (d >= 2 && d - 2u < _origins.size())
        return fmt::format(
            "Access-Control-Allow-Origin: {}\r\nAccess-Control-Allow-Credentials: true\r\n"
            "Vary: Origin\r\n",
            _origins[d - 2]);
    return "Vary: Origin\r\n";
}

std::string cors_policy::preflight_response(decision d) const {
    std::string allow;
    if (d != none)
        allow = fmt::format(
            "Access-Control-Allow-Methods: GET, HEAD\r\n"
            "Access-Control-Allow-Headers: Authorization, Last-Event-ID, X-Requested-With, "
            "Cache-Control, Accept\r\n"
            "Access-Control-Max-Age: {}\r\n",
            limits::cors_max_age_seconds);
    return fmt::format(
        "HTTP/1.1 204 No Content\r\n{}{}Content-Length: 0\r\nConnection: close\r\n\r\n",
        headers(d), allow);
}

}  // namespace jugglite

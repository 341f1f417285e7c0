#include "core/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "core/grant.h"
#include "core/query.h"

namespace jugglite {

namespace {

template <class Int>
bool parse_int(std::string_view s, Int& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

std::expected<redis_endpoint, std::string> redis_endpoint::parse(std::string_view url) {
    constexpr std::string_view scheme = "redis://";
    if (!url.starts_with(scheme)) return std::unexpected("redis URL must start with redis://");
    url.remove_prefix(scheme.size());

    redis_endpoint ep;
    if (auto at = url.rfind('@'); at != std::string_view::npos) {
        std::string_view cred = url.substr(0, at);
        url.remove_prefix(at + 1);
        auto colon = cred.find(':');
        auto user = percent_decode(cred.substr(0, colon), false);
        if (!user) return std::unexpected("redis URL: bad percent escape in user name");
        ep.user = std::move(*user);
        if (colon != std::string_view::npos) {
            auto pass = percent_decode(cred.substr(colon + 1), false);
            if (!pass) return std::unexpected("redis URL: bad percent escape in password");
            ep.password = std::move(*pass);
        } else {
            // redis://secret@host is the password alone, as redis-cli -u reads it.
            ep.password = std::move(ep.user);
            ep.user.clear();
        }
    }
    std::string_view hostport = url.substr(0, url.find('/'));
    if (hostport.size() < url.size()) {
        std::string_view db = url.substr(hostport.size() + 1);
        if (!db.empty() && (!parse_int(db, ep.db) || ep.db < 0))
            return std::unexpected(fmt::format("redis URL: bad database number '{}'", db));
    }
    if (hostport.starts_with('[')) {  // [::1]:6379
        auto close = hostport.find(']');
        if (close == std::string_view::npos) return std::unexpected("redis URL: unclosed '['");
        ep.host = std::string(hostport.substr(1, close - 1));
        hostport.remove_prefix(close + 1);
        if (!hostport.empty() && hostport[0] != ':')
            return std::unexpected("redis URL: junk after ']'");
    } else {
        auto colon = hostport.find(':');
        ep.host = std::string(hostport.substr(0, colon));
        hostport.remove_prefix(colon == std::string_view::npos ? hostport.size() : colon);
    }
    if (!hostport.empty()) {
        hostport.remove_prefix(1);
        if (!parse_int(hostport, ep.port) || ep.port == 0)
            return std::unexpected(fmt::format("redis URL: bad port '{}'", hostport));
    }
    if (ep.host.empty()) return std::unexpected("redis URL: missing host");
    return ep;
}

std::string redis_endpoint::display() const {
    return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                               : fmt::format("{}:{}", host, port);
}

bool config::channel_allowed(std::string_view channel) const {
    return allowed_channels.empty() ||
           std::any_of(allowed_channels.begin(), allowed_channels.end(),
                       [&](const std::string& pattern) { return glob_match(pattern, channel); });
}

bool config::trusted_proxy(std::string_view peer) const noexcept {
    if (peer.empty()) return false;
    for (const auto& p : trusted_proxies)
        if (p == peer) return true;
    return false;
}

}  // namespace jugglite

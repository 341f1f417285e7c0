#include "core/auth_call.h"

#include <fmt/format.h>

namespace jugglite {

std::string auth_call::cache_key() const {
    std::string key;
    key.reserve(cookie.size() + authorization.size() + origin.size() + 2);
    key += cookie;
    key += '\n';  // can't occur in a header value, so the fields are unambiguous
    key += authorization;
    key += '\n';
    key += origin;
    return key;
}

std::expected<auth_endpoint, std::string> auth_endpoint::parse(std::string_view spec) {
    auth_endpoint ep;
    if (spec.starts_with("unix:")) {
        // unix:/run/app.sock:/auth, as nginx writes it; the path after the last ':'.
        std::string_view rest = spec.substr(5);
        auto colon = rest.find(':');
        if (rest.empty() || rest.front() != '/' || colon == std::string_view::npos)
            return std::unexpected("--auth-url unix:/path/to.sock:/path needs a socket and a path");
        std::string_view path = rest.substr(colon + 1);
        if (!path.starts_with('/')) return std::unexpected("--auth-url: the path must start with '/'");
        ep.unix_socket = std::string(rest.substr(0, colon));
        ep.url = "http://localhost" + std::string(path);
        return ep;
    }
    if (!spec.starts_with("http://"))
        return std::unexpected("--auth-url must be http://host:port/path or unix:/path.sock:/path");
    std::string_view rest = spec.substr(7);
    if (rest.empty() || rest.front() == '/') return std::unexpected("--auth-url: missing host");
    ep.url = std::string(spec);
    return ep;
}

std::string encode_channel_list(const std::vector<std::string>& channels) {
    std::string out;
    for (const auto& c : channels) {
        if (!out.empty()) out += ',';
        for (unsigned char ch : c) {
            bool unreserved = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                              (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
                              ch == '~';
            if (unreserved) out += static_cast<char>(ch);
            else out += fmt::format("%{:02X}", ch);
        }
    }
    return out;
}

const auth_answer* auth_cache::find(const std::string& key, std::int64_t now_ms) const {
    auto it = _entries.find(key);
    if (it == _entries.end() || it->second.expires_ms <= now_ms) return nullptr;
    return &it->second.answer;
}

void auth_cache::store(std::string key, const auth_answer& answer, std::int64_t now_ms) {
    if (_ttl_ms <= 0 || answer.outcome == auth_answer::failed) return;
    auto it = _entries.find(key);
    if (it == _entries.end() && _entries.size() >= _max) return;
    entry e{answer, now_ms + _ttl_ms};
    if (it == _entries.end()) _entries.emplace(std::move(key), std::move(e));
    else it->second = std::move(e);
}

void auth_cache::purge(std::int64_t now_ms) {
    std::erase_if(_entries, [&](const auto& kv) { return kv.second.expires_ms <= now_ms; });
}

}  // namespace jugglite

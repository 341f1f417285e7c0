#include "core/http_request.h"

#include <algorithm>

#include "core/limits.h"
#include "core/query.h"

namespace jugglite {

namespace {

// RFC 9110 token characters, for the method and header names.
bool is_token(std::string_view s) {
    if (s.empty()) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) return false;
        return std::string_view("\"(),/:;<=>?@[\\]{}").find(c) == std::string_view::npos;
    });
}

// Returns the offset just past the blank line that ends the head, or npos.
std::size_t head_end(std::string_view buf) {
    for (std::size_t i = 0; i < buf.size(); ++i) {
        if (buf[i] != '\n') continue;
        if (i + 1 < buf.size() && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return std::string_view::npos;
}

// Splits off one line (without its CR LF or LF).
std::string_view next_line(std::string_view& rest) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    return line;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return (x | 0x20) == (y | 0x20);
           });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

parse_result parse_request(std::string_view buffered) {
    auto end = head_end(buffered);
    if (end == std::string_view::npos) {
        if (buffered.size() > limits::max_request_bytes)
            return http_error{431, "request header fields too large"};
        // A request line can only start with a token character; fail fast on binary junk
        // (a TLS ClientHello sent to a plain port) instead of waiting for 8 KiB or a timeout.
        if (!buffered.empty() && !is_token(buffered.substr(0, 1)) && buffered[0] != '\r' &&
            buffered[0] != '\n')
            return http_error{400, "malformed request line"};
        return need_more{};
    }
    // The limit counts the whole head, blank line included, as the need_more branch above
    // does: the verdict must not depend on where the reads happened to split the head.
    if (end > limits::max_request_bytes) return http_error{431, "request header fields too large"};

    std::string_view rest = buffered.substr(0, end);
    std::string_view line = next_line(rest);
    // RFC 9112 2.2: a server should ignore at least one empty line before the request line.
    if (line.empty()) line = next_line(rest);

    http_request req;
    auto sp1 = line.find(' ');
    auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return http_error{400, "malformed request line"};
    req.method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    // The whole target, an absolute form's host included, since it is passed on as it is
    // (X-Original-URI to the auth callback).
    if (std::any_of(target.begin(), target.end(),
                    [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
        return http_error{400, "malformed request target"};
    req.target = target;
    std::string_view version = line.substr(sp2 + 1);
    if (!is_token(req.method)) return http_error{400, "malformed request line"};
    if (version != "HTTP/1.1" && version != "HTTP/1.0")
        return http_error{400, "unsupported HTTP version"};

    bool absolute_root = false;  // http://host or http://host?query: the path is "/"
    if (target.starts_with("http://") || target.starts_with("https://")) {
        target.remove_prefix(target.find("//") + 2);
        auto split = target.find_first_of("/?");
        absolute_root = split == std::string_view::npos || target[split] == '?';
        target = split == std::string_view::npos ? std::string_view() : target.substr(split);
    }
    if (!absolute_root && !target.starts_with('/'))
        return http_error{400, "malformed request target"};
    auto q = target.find('?');
    req.path = absolute_root ? std::string_view("/") : target.substr(0, q);
    if (q != std::string_view::npos) req.query = target.substr(q + 1);
    if (auto hash = req.query.find('#'); hash != std::string_view::npos)
        req.query = req.query.substr(0, hash);

    while (!rest.empty()) {
        std::string_view header = next_line(rest);
        if (header.empty()) break;
        auto colon = header.find(':');
        if (colon == std::string_view::npos || !is_token(header.substr(0, colon)))
            return http_error{400, "malformed header"};
        std::string_view name = header.substr(0, colon);
        std::string_view value = trim(header.substr(colon + 1));
        // A lone CR (or any other control byte but tab) in a value is refused: values are
        // passed on to the auth callback, where it could end the line and forge a header.
        if (std::any_of(value.begin(), value.end(), [](char c) {
                auto u = static_cast<unsigned char>(c);
                return (u < 0x20 && c != '\t') || u == 0x7f;
            }))
            return http_error{400, "malformed header"};
        if (iequals(name, "last-event-id")) req.last_event_id = value;
        else if (iequals(name, "accept")) req.accept = value;
        else if (iequals(name, "authorization")) req.authorization = value;
        else if (iequals(name, "cookie")) req.cookie = value;
        else if (iequals(name, "origin")) req.origin = value;
        else if (iequals(name, "user-agent")) req.user_agent = value;
        else if (iequals(name, "x-forwarded-for")) req.forwarded_for = value;
        else if (iequals(name, "x-requested-with")) req.requested_with = value;
    }
    return req;
}

bool http_request::wants_event_stream() const noexcept {
    // Case-insensitive search for the media type among the listed ones.
    constexpr std::string_view type = "text/event-stream";
    for (std::size_t i = 0; i + type.size() <= accept.size(); ++i)
        if (iequals(accept.substr(i, type.size()), type)) return true;
    return false;
}

std::string http_request::token(std::string_view cookie_name) const {
    if (auto t = bearer_token(); !t.empty()) return std::string(t);
    if (auto t = cookie_value(cookie_name); !t.empty()) return std::string(t);
    return query_param(query, "token").value_or(std::string());
}

bool http_request::is_xhr() const noexcept { return iequals(requested_with, "XMLHttpRequest"); }

std::string_view http_request::bearer_token() const noexcept {
    constexpr std::string_view scheme = "bearer ";
    if (authorization.size() <= scheme.size() ||
        !iequals(authorization.substr(0, scheme.size()), scheme))
        return {};
    return trim(authorization.substr(scheme.size()));
}

std::string_view http_request::cookie_value(std::string_view name) const noexcept {
    // RFC 6265 5.4: "name=value" pairs separated by "; ".
    std::string_view rest = cookie;
    while (!rest.empty()) {
        auto semi = rest.find(';');
        std::string_view pair = trim(rest.substr(0, semi));
        rest.remove_prefix(semi == std::string_view::npos ? rest.size() : semi + 1);
        auto eq = pair.find('=');
        if (eq != std::string_view::npos && trim(pair.substr(0, eq)) == name) {
            std::string_view value = trim(pair.substr(eq + 1));
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
                value = value.substr(1, value.size() - 2);
            return value;
        }
    }
    return {};
}

}  // namespace jugglite

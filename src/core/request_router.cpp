#include "core/request_router.h"

#include <fmt/format.h>

#include "core/limits.h"
#include "core/query.h"
#include "core/sse_frame.h"

namespace jugglite {

namespace {

std::string_view status_text(int status) {
    switch (status) {
        case 200: return "OK";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 431: return "Request Header Fields Too Large";
        case 503: return "Service Unavailable";
        default: return "Error";
    }
}

}  // namespace

std::optional<route> reserved_route(std::string_view path) {
    if (path == "/healthz" || path == "/readyz") return health_route{health_route::readiness};
    if (path == "/livez") return health_route{health_route::liveness};
    if (path == "/metrics") return metrics_route{};
    return std::nullopt;
}

route route_request(const http_request& req, const config& cfg) {
    bool head = req.method == "HEAD";
    if (req.method == "OPTIONS" && cfg.cors.enabled()) return preflight_route{};
    if (req.method != "GET" && !head) return http_error{405, "only GET and HEAD are allowed"};
    if (auto reserved = reserved_route(req.path)) return *reserved;
    if (cfg.path && req.path != *cfg.path) return http_error{404, "not found"};

    auto channels = parse_channels(req.query);
    if (!channels) return http_error{400, describe(channels.error())};
    std::erase_if(*channels, [&](const std::string& c) { return !cfg.channel_allowed(c); });
    stream_route s{std::move(*channels), head, std::nullopt};
    if (cfg.history_enabled) {
        if (!req.last_event_id.empty()) s.resume_from = std::string(req.last_event_id);
        else if (auto p = query_param(req.query, "lastEventId"); p && !p->empty()) s.resume_from = std::move(p);
    }
    return s;
}

constexpr std::string_view stream_head =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/event-stream;charset=utf-8\r\n"
    "Cache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\n"
    "Connection: close\r\n";

std::string stream_response(const stream_route& r, std::string_view extra) {
    std::string out = fmt::format("{}{}\r\n", stream_head, extra);
    if (!r.head_only) out += registration_comment(r.channels);
    return out;
}

std::string retry_response(std::uint32_t retry_ms, std::string_view reason, std::string_view extra) {
    return fmt::format("{}{}\r\n: {}\nretry: {}\n\n", stream_head, extra, reason, retry_ms);
}

std::string metrics_response(std::string_view body) {
    return fmt::format(
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        "Content-Length: {}\r\n"
        "Cache-Control: no-cache\r\n"
        "Connection: close\r\n"
        "\r\n"
        "{}",
        body.size(), body);
}

std::string simple_response(int status, std::string_view body, std::string_view headers) {
    std::string extra(headers);
    if (status == 503) extra += fmt::format("Retry-After: {}\r\n", limits::retry_after_seconds);
    if (status == 401) extra += "WWW-Authenticate: Bearer realm=\"jugglite\"\r\n";
    return fmt::format(
        "HTTP/1.1 {} {}\r\n"
        "Content-Type: text/plain;charset=utf-8\r\n"
        "Content-Length: {}\r\n"
        "Cache-Control: no-cache\r\n"
        "{}"
        "Connection: close\r\n"
        "\r\n"
        "{}\n",
        status, status_text(status), body.size() + 1, extra, body);
}

}  // namespace jugglite

// Decides what a parsed request gets: a stream, a health answer, or an error. Also
// builds the exact response bytes for each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.h"
#include "core/http_request.h"

namespace jugglite {

struct stream_route {
    std::vector<std::string> channels;  // decoded, de-duplicated, filtered by --allowed-channels
    bool head_only;                     // HEAD: send the headers, then close
    // With --history: the id to resume after, from the Last-Event-ID header or else the
    // lastEventId query parameter (for clients that can't set headers), as sent.
    std::optional<std::string> resume_from;
};
// /readyz (and its alias /healthz): can this node deliver? /livez: are its loops turning?
struct health_route {
    enum kind_t : std::uint8_t { readiness, liveness } kind;
};
struct metrics_route {};
// OPTIONS with --cors-origins set: a CORS preflight.
struct preflight_route {};

using route = std::variant<stream_route, health_route, metrics_route, preflight_route, http_error>;

// The answer a reserved path (/healthz, /readyz, /livez, /metrics) gets, on any --path;
// nullopt for every other path.
[[nodiscard]] std::optional<route> reserved_route(std::string_view path);

// Routes `req` under `cfg`: OPTIONS is a preflight when CORS is configured, 405 for other
// methods than GET/HEAD, /healthz, /readyz,
// /livez and /metrics are reserved, 404 when --path is set and does not match, 400 for a bad channel list.
[[nodiscard]] route route_request(const http_request& req, const config& cfg);

// Every response builder takes `extra`: header lines (each ending CRLF) such as CORS's.

// Response head of a stream plus the registration comment (HEAD: the head alone).
[[nodiscard]] std::string stream_response(const stream_route& r, std::string_view extra = {});

// A complete error/short answer: status line, text/plain body of one line, close.
// 503 carries Retry-After, 401 `WWW-Authenticate: Bearer`.
[[nodiscard]] std::string simple_response(int status, std::string_view body,
                                          std::string_view extra = {});

// /metrics' answer: 200 with `body` in the Prometheus text format (version 0.0.4), close.
[[nodiscard]] std::string metrics_response(std::string_view body);

// A refusal an EventSource will retry: 200 with the stream's headers, a comment giving
// `reason`, `retry: retry_ms`, then close. (Any non-200 status ends an EventSource for
// good, per the HTML spec.)
[[nodiscard]] std::string retry_response(std::uint32_t retry_ms, std::string_view reason,
                                         std::string_view extra = {});

}  // namespace jugglite

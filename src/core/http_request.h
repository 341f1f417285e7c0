// Incremental HTTP/1.x request-head parser. Pure: works on the bytes buffered so far.
#pragma once

#include <cstdint>
#include <string_view>
#include <variant>

namespace jugglite {

struct http_request {
    std::string_view method;  // "GET", "HEAD", ... as sent
    std::string_view path;    // without the query; absolute-form targets reduced to the path
    std::string_view query;   // after '?', empty if none
    std::string_view last_event_id;  // Last-Event-ID header, empty if absent
    std::string_view accept;         // Accept header, empty if absent
    // Headers the authorization, CORS and long-poll sides read; empty if absent. A header
    // sent twice keeps its last value.
    std::string_view authorization;
    std::string_view cookie;
    std::string_view origin;
    std::string_view user_agent;
    std::string_view forwarded_for;   // X-Forwarded-For
    std::string_view requested_with;  // X-Requested-With
    std::string_view target;          // the request target as sent (path and query)

    // True when the client asked for text/event-stream (an EventSource does): a refusal
    // it should retry must then be a 200 with `retry:`, since it treats any other status
    // as final.
    [[nodiscard]] bool wants_event_stream() const noexcept;
    // True for an XHR polyfill's long-poll (X-Requested-With: XMLHttpRequest).
    [[nodiscard]] bool is_xhr() const noexcept;
    // The token of `Authorization: Bearer <token>` (scheme case-insensitive), empty if none.
    [[nodiscard]] std::string_view bearer_token() const noexcept;
    // The value of cookie `name` in the Cookie header, empty if absent.
    [[nodiscard]] std::string_view cookie_value(std::string_view name) const noexcept;
    // The request's signed token, from the first place that has one: `Authorization:
    // Bearer`, the cookie `cookie_name`, the query parameter `token` (which a native
    // EventSource needs, since it can't set headers). Empty if none.
    [[nodiscard]] std::string token(std::string_view cookie_name) const;
};

// The head is not complete yet; read more.
struct need_more {};

// The request is refused with this status and one-line reason.
struct http_error {
    int status;
    std::string_view reason;
};

using parse_result = std::variant<need_more, http_request, http_error>;

// Parses the request head in `buffered` (everything received so far). The views in a
// returned http_request point into `buffered`. Returns need_more until the blank line
// arrives, 431 once more than limits::max_request_bytes arrive without one, and 400 for
// a malformed request line or header. Accepts bare LF line ends, as curl and nc may send.
[[nodiscard]] parse_result parse_request(std::string_view buffered);

}  // namespace jugglite

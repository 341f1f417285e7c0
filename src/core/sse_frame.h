// Turns a published payload, and the server's own notices, into SSE wire bytes.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace jugglite {

// The SSE frame for one published payload (DESIGN.md "Wire protocol"):
// optional `event:`/`id:` lines taken from a JSON object payload, one `data:` line per
// line of the payload (split on CRLF, LF and lone CR, bytes unchanged), then a blank line.
[[nodiscard]] std::string build_sse_frame(std::string_view payload);

// `: registered to channels: a, b\n`, sent once after the response headers.
[[nodiscard]] std::string registration_comment(std::span<const std::string> channels);

// The keepalive comment.
inline constexpr std::string_view keepalive_comment = ": keepalive\n\n";

}  // namespace jugglite

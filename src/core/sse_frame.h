// Turns a published payload, and the server's own notices, into SSE wire bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/frame.h"

namespace jugglite {

// The SSE frame for one published payload (DESIGN.md "Wire protocol"), written straight
// into one frame carrying `seq`, with no intermediate copy of the payload:
// optional `event:`/`id:` lines taken from a JSON object payload, one `data:` line per
// line of the payload (split on CRLF, LF and lone CR, bytes unchanged), then a blank line.
// Only the top level of a JSON object is read (see sse_frame.cpp). Throws std::bad_alloc.
[[nodiscard]] frame_ref make_sse_frame(std::string_view payload, std::uint64_t seq);

// The same bytes as make_sse_frame, as a string (tests, benchmarks).
[[nodiscard]] std::string build_sse_frame(std::string_view payload);

// `: registered to channels: a, b\n`, sent once after the response headers.
[[nodiscard]] std::string registration_comment(std::span<const std::string> channels);

// The keepalive comment, carrying the node's open-connection count as the Ruby Jugglite's
// did: ": keepalive 1234\n\n".
[[nodiscard]] std::string keepalive_comment(std::uint32_t open_connections);

}  // namespace jugglite

// Turns a published payload, and the server's own notices, into SSE wire bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/frame.h"
#include "core/stream_id.h"

namespace jugglite {

// Where a frame's `id:` comes from.
struct sse_id_source {
    // A history entry's id (the envelope's): the frame's `id:`, whatever the payload holds.
    stream_id entry{};
    // Without an entry id, take `id` from a JSON object payload. Off with --history, where
    // an SSE id must be a history id, or a browser's Last-Event-ID could not be placed.
    bool json_id = true;
};

// The SSE frame for one published payload (DESIGN.md "Wire protocol"), written straight
// into one frame carrying `seq`, with no intermediate copy of the payload:
// optional `event:`/`id:` lines taken from a JSON object payload, one `data:` line per
// line of the payload (split on CRLF, LF and lone CR, bytes unchanged), then a blank line.
// Only the top level of a JSON object is read (see sse_frame.cpp). `ids` says where the
// `id:` comes from; an entry id is also recorded in the frame (frame::id). Throws
// std::bad_alloc.
[[nodiscard]] frame_ref make_sse_frame(std::string_view payload, std::uint64_t seq,
                                       const sse_id_source& ids = {});

// The same bytes as make_sse_frame, as a string (tests, benchmarks).
[[nodiscard]] std::string build_sse_frame(std::string_view payload, const sse_id_source& ids = {});

// The frame that tells a resuming client its history can't be replayed (trimmed, expired,
// unknown or malformed id, or too long to replay): `event: jugglite-reset`, `id: <head>` so
// that its next reconnect resumes from there, and a JSON data line naming `reason` and the
// id the client asked for (null when it was malformed). Its frame::id is `head`. Throws
// std::bad_alloc.
[[nodiscard]] frame_ref make_reset_frame(stream_id head, std::string_view reason,
                                         std::optional<stream_id> asked);

// `: registered to channels: a, b\n`, sent once after the response headers.
[[nodiscard]] std::string registration_comment(std::span<const std::string> channels);

// The keepalive comment, carrying the node's open-connection count as the Ruby Jugglite's
// did: ": keepalive 1234\n\n".
[[nodiscard]] std::string keepalive_comment(std::uint32_t open_connections);

}  // namespace jugglite

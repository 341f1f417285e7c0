// History (the resume issue), its pure parts: the Redis Function library that publishers
// call (FCALL jugglite_publish 1 <channel> <payload>), and the envelope it PUBLISHes, which
// the subscriber recognises to give the frame its `id:`.
//
// The function appends the payload to the channel's stream (history_stream_key) with an
// id drawn from one clock per Redis, so that ids order messages across channels (on a
// cluster, one clock per slot, kept in the channel's own slot: a function may only touch
// keys of one slot), trims the stream to a length and an age, sets the key to expire, and
// PUBLISHes (SPUBLISHes, with sharded pub/sub on a cluster)
//   "\x1fjugglite <version> <id> <previous id on this channel, or empty>\n<payload>"
// on the channel. Plain PUBLISH goes on working beside it: a payload without the envelope
// is delivered as it is, without an id.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/stream_id.h"

namespace jugglite {

// The library's version, returned by FCALL jugglite_version; also the envelope's.
inline constexpr int history_version = 1;

struct history_settings {
    std::string prefix = "jugglite:";  // streams: <prefix>h{tag}:<channel>; clock: <prefix>clock
    std::uint32_t length = 1000;       // entries kept per channel (approximately, MAXLEN ~)
    std::chrono::milliseconds ttl{3'600'000};  // entries older than this are trimmed, and the
                                               // key of a silent channel expires after it
    // Redis Cluster: the clock is per slot (<prefix>clock{tag}, in the channel's slot)
    // rather than one <prefix>clock; with sharded pub/sub the envelope goes out by SPUBLISH.
    bool clock_per_slot = false;
    bool sharded_publish = false;
};

// The clock key the library uses for `channel`.
[[nodiscard]] std::string history_clock_key(const history_settings& s, std::string_view channel);

// The key of `channel`'s history stream: history_stream_key(prefix + "h", channel), the
// key the library writes.
[[nodiscard]] std::string history_key(const history_settings& s, std::string_view channel);

// The settings the library is generated with, as its jugglite_settings function returns them.
[[nodiscard]] std::string history_fingerprint(const history_settings& s);

// The Lua source of the library, for FUNCTION LOAD REPLACE (also printed for operators who
// load it themselves).
[[nodiscard]] std::string history_library(const history_settings& s);

// What an enveloped message carries.
struct history_envelope {
    int version;
    stream_id id;
    std::optional<stream_id> previous;  // the channel's entry before this one, if any
    std::string_view payload;           // points into the message
};

// The envelope of `message`, or nullopt for a plain PUBLISH (or a malformed envelope, which
// is then delivered as plain data). Versions above history_version are read the same way:
// fields they add after the previous id are skipped.
[[nodiscard]] std::optional<history_envelope> parse_envelope(std::string_view message) noexcept;

}  // namespace jugglite

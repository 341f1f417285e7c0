// The records --events-channel publishes, as the Ruby Jugglite's on_register and
// on_unregister hooks gave them to the application: one JSON object per event.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jugglite {

// A stream's id in events: unique across nodes (node name) and restarts (the process'
// start time), then the shard and its count of streams.
[[nodiscard]] std::string stream_event_id(std::string_view node, std::string_view instance,
                                          unsigned shard, std::uint64_t seq);

struct register_fields {
    std::string_view node;
    std::string_view id;
    const std::vector<std::string>* channels;
    std::string_view sub;
    std::string_view ip;
    std::string_view user_agent;
    std::int64_t at_ms;  // unix milliseconds
};

// {"type":"register","node","id","channels","sub","ip","user_agent","at"}. Client-supplied
// text that is not valid UTF-8 is replaced, never written raw.
[[nodiscard]] std::string register_event(const register_fields& f);

// {"type":"unregister","node","id","reason","duration_ms","at"}.
[[nodiscard]] std::string unregister_event(std::string_view node, std::string_view id,
                                           std::string_view reason, std::int64_t duration_ms,
                                           std::int64_t at_ms);

// {"type":"node","node","streams","at"}: the heartbeat an application expires a dead
// node's presence by.
[[nodiscard]] std::string node_event(std::string_view node, std::uint64_t streams,
                                     std::int64_t at_ms);

}  // namespace jugglite

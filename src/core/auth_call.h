// The auth callback's pure parts: what a shard asks the application (auth_call), what
// comes back (auth_answer), where the application is (auth_endpoint), and the decision
// cache. The HTTP itself is done by the auth thread (net/auth_client).
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/grant.h"

namespace jugglite {

// shard -> auth thread: ask the application about one stream request. The header values
// are the client's, copied; empty ones are not sent.
struct auth_call {
    std::uint32_t shard = 0;
    std::uint32_t conn = 0;  // conn_id in that shard
    std::uint32_t gen = 0;   // the connection's generation, to drop a late answer
    std::string cookie;
    std::string authorization;
    std::string origin;
    std::string user_agent;
    std::string forwarded_for;  // X-Forwarded-For: set only when the peer is a trusted proxy
    std::string channels;       // X-Jugglite-Channels (see encode_channel_list)
    std::string original_uri;   // X-Original-URI: the request target as sent
    std::int64_t deadline_ms = 0;  // monotonic time past which the answer is of no use


    // The decision cache's key: the credentials the application decides on (Cookie,
    // Authorization) and the Origin.
    [[nodiscard]] std::string cache_key() const;
};

// auth thread -> shard.
struct auth_answer {
    std::uint32_t conn = 0;
    std::uint32_t gen = 0;
    enum outcome_t : std::uint8_t {
        granted,  // 200 with a grant
        denied,   // 401 or 403: passed through to the client, final
        failed,   // timeout, unreachable, another status, a malformed body: fail closed
    } outcome = failed;
    int status = 0;      // denied: 401 or 403
    grant g;             // granted
    std::string reason;  // denied and failed: one line, for the client and the log
};

// Where the application answers: http://host[:port]/path, or nginx's unix:/path.sock:/path.
struct auth_endpoint {
    std::string url;          // what curl fetches (http://localhost/path over a unix socket)
    std::string unix_socket;  // non-empty: connect here instead of host:port

    [[nodiscard]] static std::expected<auth_endpoint, std::string> parse(std::string_view spec);
};

// The X-Jugglite-Channels value: each channel percent-encoded (everything but unreserved
// characters), joined with ','. The application splits on ',' and decodes each.
[[nodiscard]] std::string encode_channel_list(const std::vector<std::string>& channels);

// Answers (granted or denied) kept for --auth-cache-seconds, keyed by auth_call::cache_key.
// Owned by the auth thread alone. Bounded: past `max_entries` nothing new is kept until
// expired entries are purged.
class auth_cache {
public:
    auth_cache(std::int64_t ttl_ms, std::size_t max_entries) : _ttl_ms(ttl_ms), _max(max_entries) {}

    // The cached answer for `key` at `now_ms`, or nullptr.
    [[nodiscard]] const auth_answer* find(const std::string& key, std::int64_t now_ms) const;
    // Keeps `answer` (not a failure) for the TTL.
    void store(std::string key, const auth_answer& answer, std::int64_t now_ms);
    // Drops expired entries; call about once a second.
    void purge(std::int64_t now_ms);
    [[nodiscard]] std::size_t size() const noexcept { return _entries.size(); }

private:
    struct entry {
        auth_answer answer;
        std::int64_t expires_ms;
    };
    std::int64_t _ttl_ms;
    std::size_t _max;
    std::unordered_map<std::string, entry> _entries;
};

}  // namespace jugglite

// Tokens a shard has already verified, so that a browser reconnecting with the same token
// costs a hash and a lookup instead of a signature check (cpp-jwt decodes an RS256/ES256
// PEM key on every verify: about 0.5 ms with OpenSSL 3, against 10 us for HS256). Keyed by
// the token's SHA-256; `exp` is checked again on every hit. Only grants are kept: a
// refused token is checked again each time. One per shard; not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/grant.h"

namespace jugglite {

class token_cache {
public:
    explicit token_cache(std::size_t max_entries) : _max(max_entries) {}

    // The key of `token`: its SHA-256, computed once per request for find and store (empty
    // if it can't be computed: nothing is then found or kept).
    [[nodiscard]] static std::string key_of(std::string_view token);
    // The grant cached under `key`, if any and not past its `exp` (plus `leeway_s`) at `now_s`.
    [[nodiscard]] std::optional<grant> find(const std::string& key, std::int64_t now_s,
                                            std::int64_t leeway_s);
    // Keeps `g`, the verified grant of the token whose key is `key`; the oldest entry goes
    // when full.
    void store(std::string key, const grant& g);
    [[nodiscard]] std::size_t size() const noexcept { return _entries.size(); }

private:
    std::size_t _max;
    std::unordered_map<std::string, grant> _entries;
    std::deque<std::string> _order;  // insertion order, for eviction
};

}  // namespace jugglite

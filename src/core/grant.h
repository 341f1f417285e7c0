// A user's grant: the channels they may hear (names or `*` globs), who they are, and until
// when. It comes from a verified token's claims or from the auth callback's answer.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace jugglite {

struct grant {
    std::vector<std::string> channels;  // names or fnmatch globs, as the client names channels
    std::string sub;                    // who the user is; may be empty
    std::int64_t expires_at = 0;        // unix seconds; 0: does not expire

    // True when `channel` matches one of `channels`.
    [[nodiscard]] bool allows(std::string_view channel) const;
    // Keeps only the requested channels this grant allows, in their order.
    void filter(std::vector<std::string>& requested) const;
};

// True when the fnmatch glob `pattern` matches `name` (no flags: `*` spans any byte).
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view name);

// Reads the auth callback's 200 body: {"channels": [names or globs], "sub": "..."}.
// `channels` is required and must be an array of strings; `sub` is optional (a string or
// a number). Errors are one line naming what is wrong, for the log.
[[nodiscard]] std::expected<grant, std::string> parse_grant_json(std::string_view body);

}  // namespace jugglite

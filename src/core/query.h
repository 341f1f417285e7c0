// URL query decoding: percent escapes and the `channel` list of a stream request.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jugglite {

// Decodes %XX escapes; with plus_is_space, '+' becomes ' ' (form encoding).
// Returns nullopt-like unexpected on a truncated or non-hex escape.
[[nodiscard]] std::expected<std::string, std::string> percent_decode(std::string_view in,
                                                                     bool plus_is_space);

// Why a channel list was refused; each maps to a 400 with this text.
enum class channel_error {
    bad_escape,
    array_syntax,       // channel[]=x (a Rails/PHP habit we do not support)
    control_character,  // CR, LF, NUL or any other byte < 0x20, or DEL
    name_too_long,
    too_many,
};
[[nodiscard]] std::string_view describe(channel_error e);

// Extracts the channel list from a raw query string (without '?'). Every `channel`
// parameter is percent-decoded ('+' is a space), split on ',', empty pieces dropped,
// duplicates removed in first-seen order. No `channel` parameter gives an empty list.
[[nodiscard]] std::expected<std::vector<std::string>, channel_error> parse_channels(
    std::string_view query);

// The percent-decoded value of the first query parameter `name` ('+' is a space); nullopt
// when it is absent or its escapes are malformed.
[[nodiscard]] std::optional<std::string> query_param(std::string_view query,
                                                     std::string_view name);

}  // namespace jugglite

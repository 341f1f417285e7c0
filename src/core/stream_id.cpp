#include "core/stream_id.h"

#include <fmt/format.h>

#include <charconv>

namespace jugglite {

namespace {

bool parse_u64(std::string_view s, std::uint64_t& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

std::optional<stream_id> stream_id::parse(std::string_view text) noexcept {
    auto dash = text.find('-');
    stream_id id;
    if (dash == std::string_view::npos || !parse_u64(text.substr(0, dash), id.ms) ||
        !parse_u64(text.substr(dash + 1), id.seq))
        return std::nullopt;
    return id;
}

std::string stream_id::text() const { return fmt::format("{}-{}", ms, seq); }

}  // namespace jugglite

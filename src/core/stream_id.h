// A Redis stream entry id, "<ms>-<seq>": the id of a message published with history, and
// the SSE `id:` its frame carries. Ordered as Redis orders them.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace jugglite {

struct stream_id {
    std::uint64_t ms = 0;
    std::uint64_t seq = 0;

    // "<ms>-<seq>" with both parts decimal; nullopt for anything else.
    [[nodiscard]] static std::optional<stream_id> parse(std::string_view text) noexcept;
    [[nodiscard]] std::string text() const;
    // 0-0 is no entry's id (XADD refuses it): it stands for "none".
    [[nodiscard]] bool empty() const noexcept { return ms == 0 && seq == 0; }
    friend auto operator<=>(const stream_id&, const stream_id&) = default;
};

}  // namespace jugglite

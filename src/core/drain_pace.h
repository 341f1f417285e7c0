// How a shard closes its streams when the server drains (SIGTERM): paced, so that the
// browsers don't all reconnect to the surviving nodes in the same second.
#pragma once

#include <chrono>
#include <cstdint>

namespace jugglite {

// The schedule of one shard's drain: at most `rate` closes per second (the shard's share of
// --drain-rate), ending at `window` (--drain-seconds). The closes are due one step ahead, so
// a shard with few streams closes them all at the first step. A shard that can't close
// them all at `rate` within `window` closes the rest at the deadline, and spreads their
// `retry:` over the time `rate` would have taken, so their reconnects keep to the rate.
class drain_pace {
public:
    drain_pace(std::uint64_t streams, double rate, std::chrono::milliseconds window,
               std::chrono::milliseconds step, std::int64_t start_ms) noexcept;

    // How many streams should be closed, in all, by `now_ms`.
    [[nodiscard]] std::uint64_t due(std::int64_t now_ms) const noexcept;
    // Whether `now_ms` is past the window: everything left closes now.
    [[nodiscard]] bool expired(std::int64_t now_ms) const noexcept;
    // The range, in ms, to draw a closed stream's `retry:` from: the refusals' range while
    // the pace holds; past the window, with `left` streams still open when it ended, wide
    // enough that they come back at `rate`.
    struct retry_range {
        std::uint32_t lo;
        std::uint32_t hi;
    };
    [[nodiscard]] retry_range retry(std::uint64_t left) const noexcept;

private:
    std::uint64_t _streams;
    double _rate;
    std::int64_t _window_ms;
    std::int64_t _step_ms;
    std::int64_t _start_ms;
};

}  // namespace jugglite

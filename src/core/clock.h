// The two clocks: monotonic milliseconds for timers, wall-clock seconds for token expiry.
#pragma once

#include <chrono>
#include <cstdint>

namespace jugglite {

[[nodiscard]] inline std::int64_t monotonic_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

[[nodiscard]] inline std::int64_t unix_seconds() noexcept {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace jugglite

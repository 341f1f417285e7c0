// The clocks: monotonic milliseconds for timers; the wall clock, in seconds for token
// expiry and in milliseconds for the times events report.
#pragma once

#include <chrono>
#include <cstdint>

namespace jugglite {

[[nodiscard]] inline std::int64_t monotonic_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The same clock in microseconds: a message's receipt and its sends' completions.
[[nodiscard]] inline std::int64_t monotonic_us() noexcept {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

[[nodiscard]] inline std::int64_t unix_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

[[nodiscard]] inline std::int64_t unix_seconds() noexcept {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace jugglite

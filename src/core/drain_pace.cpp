#include "core/drain_pace.h"

#include <algorithm>
#include <cmath>

#include "core/limits.h"

namespace jugglite {

drain_pace::drain_pace(std::uint64_t streams, double rate, std::chrono::milliseconds window,
                       std::chrono::milliseconds step, std::int64_t start_ms) noexcept
    : _streams(streams),
      _rate(std::max(rate, 1e-3)),
      _window_ms(window.count()),
      _step_ms(step.count()),
      _start_ms(start_ms) {}

bool drain_pace::expired(std::int64_t now_ms) const noexcept {
    return now_ms - _start_ms >= _window_ms;
}

std::uint64_t drain_pace::due(std::int64_t now_ms) const noexcept {
    if (expired(now_ms)) return _streams;
    const double elapsed_s = static_cast<double>(std::max<std::int64_t>(0, now_ms - _start_ms) + _step_ms) / 1000.0;
    const double n = std::floor(_rate * elapsed_s);
    return n >= static_cast<double>(_streams) ? _streams : static_cast<std::uint64_t>(n);
}

drain_pace::retry_range drain_pace::retry(std::uint64_t left) const noexcept {
    const auto lo = static_cast<double>(limits::refusal_retry_min.count());
    const auto hi = std::max(static_cast<double>(limits::refusal_retry_max.count()),
                             lo + static_cast<double>(left) / _rate * 1000.0);
    return {static_cast<std::uint32_t>(lo),
            static_cast<std::uint32_t>(std::min(hi, static_cast<double>(limits::drain_retry_max.count())))};
}

}  // namespace jugglite

// One-line log records on stderr: "2026-11-27T18:54:23.123Z level message", or with
// --log-format json one JSON object per line: {"ts":"...","level":"...","msg":"..."}.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace jugglite::log {

// Set once at startup, before any thread starts.
void use_json(bool json) noexcept;

void write(std::string_view level, std::string_view message) noexcept;

// Lets one line through per interval and counts those it holds back: for warnings that can
// repeat per message, per connection or per retry. Used by one thread.
class limiter {
public:
    explicit limiter(std::int64_t interval_ms = 1000) noexcept : _interval_ms(interval_ms) {}
    // True when a line may go out at `now_ms`; `held` is then how many were held back since
    // the last one that went out.
    bool allow(std::int64_t now_ms, std::uint64_t& held) noexcept {
        if (_spoke && now_ms - _last_ms < _interval_ms) {
            ++_held;
            return false;
        }
        _spoke = true;
        _last_ms = now_ms;
        held = std::exchange(_held, 0);
        return true;
    }

private:
    std::int64_t _interval_ms;
    std::int64_t _last_ms = 0;
    std::uint64_t _held = 0;
    bool _spoke = false;
};

template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
    write("info", fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
    write("warn", fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
    write("error", fmt::format(f, std::forward<Args>(args)...));
}

// A warning through `l`: at most one line per its interval, which says how many like it
// were held back.
template <class... Args>
void warn(limiter& l, std::int64_t now_ms, fmt::format_string<Args...> f, Args&&... args) {
    std::uint64_t held = 0;
    if (!l.allow(now_ms, held)) return;
    std::string line = fmt::format(f, std::forward<Args>(args)...);
    if (held > 0) line += fmt::format(" ({} more like this not logged)", held);
    write("warn", line);
}

// A broken invariant: log and abort. Never for a client's or Redis' misbehaviour.
[[noreturn]] void panic(std::string_view what) noexcept;

}  // namespace jugglite::log

// One-line log records on stderr: "2026-11-27T18:54:23.123Z jugglite[level] message".
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace jugglite::log {

void write(std::string_view level, std::string_view message) noexcept;

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

// A broken invariant: log and abort. Never for a client's or Redis' misbehaviour.
[[noreturn]] void panic(std::string_view what) noexcept;

}  // namespace jugglite::log

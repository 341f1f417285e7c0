#include "core/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>

namespace jugglite::log {

void write(std::string_view level, std::string_view message) noexcept {
    try {
        auto now = std::chrono::system_clock::now();
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
        std::time_t t = ms.count() / 1000;
        std::tm tm{};
        gmtime_r(&t, &tm);
        std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {}\n",
                                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                       tm.tm_min, tm.tm_sec, ms.count() % 1000, level, message);
        // One write(2) per line keeps lines from different threads whole.
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
    } catch (...) {
    }
}

void panic(std::string_view what) noexcept {
    write("panic", what);
    std::abort();
}

}  // namespace jugglite::log

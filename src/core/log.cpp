#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace jugglite::log {

namespace {

std::atomic<bool> json_lines{false};

}  // namespace

void use_json(bool json) noexcept { json_lines.store(json, std::memory_order_relaxed); }

void write(std::string_view level, std::string_view message) noexcept {
    try {
        auto now = std::chrono::system_clock::now();
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
        std::time_t t = ms.count() / 1000;
        std::tm tm{};
        gmtime_r(&t, &tm);
        std::string ts = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                                     ms.count() % 1000);
        std::string line;
        if (json_lines.load(std::memory_order_relaxed)) {
            // Messages may quote outside bytes (a channel name): invalid UTF-8 is replaced.
            nlohmann::ordered_json record{{"ts", ts}, {"level", level}, {"msg", message}};
            line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        } else {
            line = fmt::format("{} {} {}\n", ts, level, message);
        }
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

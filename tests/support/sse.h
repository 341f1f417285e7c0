// Small helpers shared by the integration tests.
#pragma once

#include <atomic>
#include <string>

#include "support/servers.h"

namespace test {

// A channel name no other test uses.
inline std::string unique_channel(std::string_view stem = "ch") {
    static std::atomic<int> n{0};
    return std::string(stem) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

// Waits until Redis reports `count` subscribers of `channel` (jugglite subscribed).
inline bool wait_numsub(redis_client& redis, std::string_view channel, long long count = 1) {
    return eventually([&] { return redis.numsub(channel) == count; });
}

// Opens a stream on `target` and waits for its registration comment.
inline raw_client open_stream(int port, std::string_view target) {
    auto c = raw_client::tcp(port);
    c.get(target);
    if (!c.read_until(": registered to channels: ")) throw std::runtime_error("no registration: " + c.received());
    return c;
}

}  // namespace test

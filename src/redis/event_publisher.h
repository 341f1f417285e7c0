// The events thread (--events-channel): PUBLISHes the shards' register and unregister
// records, and the node heartbeat, on a Redis connection of its own (a subscribed
// connection can't publish). Pipelined: records are appended and written together, and
// the replies are read as they come. While Redis is down or not answering, records are
// dropped and counted, never queued without bound, and never wait in a shard.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/shard_link.h"
#include "redis/blocking_connect.h"

struct redisContext;

namespace jugglite {

class event_publisher {
public:
    // Everything referenced must outlive run(). `wake.eventfd` must be non-blocking.
    // `streams` are the shards' counters, read for the heartbeat's open-stream count.
    event_publisher(const config& cfg, std::span<shard_link> shards, thread_wakeup& wake,
                    std::atomic<bool>& stop, event_metrics& metrics,
                    std::span<const shard_metrics> streams);
    ~event_publisher();

    // Runs until `stop` is set, then publishes what the shards queued before it (their
    // shutdown unregisters) for at most limits::events_final_flush, and returns.
    void run() noexcept;

private:
    void connect(std::int64_t now) noexcept;
    void disconnect(const char* why, std::int64_t now) noexcept;
    // Takes queued records (and a due heartbeat) and appends them; returns how many.
    std::size_t take(std::int64_t now) noexcept;
    void append(std::string_view record) noexcept;
    void write_and_read(std::int64_t now) noexcept;
    void sleep(std::int64_t timeout_ms) noexcept;

    const config& _cfg;
    std::span<shard_link> _shards;
    thread_wakeup& _wake;
    std::atomic<bool>& _stop;
    event_metrics& _metrics;
    std::span<const shard_metrics> _streams;
    redis_context_ptr _ctx;
    std::uint64_t _unanswered = 0;       // PUBLISHes written or appended, not yet answered
    std::int64_t _progress_ms = 0;       // last time a reply arrived (or the link came up)
    std::int64_t _next_attempt_ms = 0;
    std::size_t _next_seed = 0;  // --redis-cluster: the seed the next connect tries
    std::int64_t _next_heartbeat_ms = 0;
    log::limiter _link_log;
    log::limiter _refused_log;
};

}  // namespace jugglite

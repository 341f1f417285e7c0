// The history thread (--history): jugglite's command connection to Redis, for what a
// subscribed connection can't do. It keeps the Redis Function library loaded (after every
// connect, and checked every few seconds, since a Redis without persistence loses it on a
// restart), and runs the redis thread's batches of history reads.
//
// A batch is one MULTI: an XRANGE per channel, GET of the clock, TIME, and a PUBLISH of
// the batch's token on jugglite's own marker channel. The transaction runs at one instant,
// and the marker reaches the subscriber connection after every message published before
// it, so the redis thread knows exactly which live messages the reads already hold.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/log.h"
#include "core/history_window.h"
#include "core/shard_link.h"
#include "core/spsc_queue.h"
#include "redis/blocking_connect.h"

struct redisContext;

namespace jugglite {

// One read: the stream of `channel` (the local name), from `from` on, inclusive.
struct history_read {
    std::string channel;
    stream_id from;
    bool catch_up = false;  // for a channel catching up, not for resuming streams
};

struct history_batch {
    std::uint64_t token = 0;
    std::vector<history_read> reads;
};

struct history_batch_result {
    std::uint64_t token = 0;
    bool ok = false;
    stream_id clock;               // the newest id any channel had when the reads ran
    std::int64_t redis_ms = 0;     // Redis' own clock then (TIME), for the history's age
    std::vector<stream_read> reads;  // one per history_batch::reads entry, same order
};

// The queues between the redis thread and the history thread.
struct history_link {
    spsc_queue<history_batch> batches{8};
    spsc_queue<history_batch_result> results{8};
    thread_wakeup reader_wake;        // the history thread sleeps on it
    thread_wakeup* subscriber_wake = nullptr;  // the redis thread's
    std::atomic<bool> library_ready{false};    // the library answered at our version or newer
};

// The marker channel, as subscribed (without --namespace): unique to this process.
[[nodiscard]] std::string marker_channel(const config& cfg);

class history_reader {
public:
    history_reader(const config& cfg, history_link& link, std::atomic<bool>& stop,
                   history_metrics& metrics);
    ~history_reader();
    void run() noexcept;

private:
    bool connect(std::int64_t now) noexcept;
    void disconnect(std::string_view why, std::int64_t now) noexcept;
    bool ensure_library() noexcept;
    history_batch_result execute(const history_batch& b) noexcept;
    void sleep(std::int64_t timeout_ms) noexcept;

    const config& _cfg;
    history_link& _link;
    std::atomic<bool>& _stop;
    history_metrics& _metrics;
    std::string _marker;
    std::string _library;
    std::string _fingerprint;
    redis_context_ptr _ctx;
    std::int64_t _next_attempt_ms = 0;
    std::int64_t _backoff_ms = 0;
    std::int64_t _next_check_ms = 0;
    log::limiter _link_log;
    log::limiter _load_log{10'000};  // another node may keep loading its own settings
    log::limiter _batch_log;
};

}  // namespace jugglite

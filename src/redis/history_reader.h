// The history thread (--history): jugglite's command connections to Redis, for what a
// subscribed connection can't do. It keeps the Redis Function library loaded (after every
// connect, and checked every few seconds, since a Redis without persistence loses it on a
// restart), and runs the redis thread's batches of history reads.
//
// A batch is one MULTI: an XRANGE per channel, GET of the clock, TIME, and a PUBLISH of
// the batch's token on jugglite's own marker channel. The transaction runs at one instant,
// and the marker reaches the subscriber connection after every message published before
// it, so the redis thread knows exactly which live messages the reads already hold.
//
// On a cluster a transaction may only touch one slot, and each slot has its own clock: the
// batch is one MULTI per slot, on that slot's master, with the slot's clock and an
// SPUBLISH on the slot's own marker channel (marker_channel(cfg, slot)), which reaches the
// node jugglite subscribes the slot's channels on in order with them. The library is
// loaded on every master the redis thread last saw in the topology.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
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
    // On a cluster: the channel's slot, and its master's address, where the read goes.
    std::uint16_t slot = 0;
    std::string host;
    std::uint16_t port = 0;
};

struct history_batch {
    std::uint64_t token = 0;
    std::vector<history_read> reads;
};

struct history_batch_result {
    std::uint64_t token = 0;
    bool ok = false;
    std::int64_t redis_ms = 0;     // Redis' own clock then (TIME), for the history's age
    std::vector<stream_read> reads;  // one per history_batch::reads entry, same order
    // Per read: the newest id its clock (the one clock, or its slot's) had issued when it
    // was read.
    std::vector<stream_id> clocks;
    // Per read, on a cluster: its node could not be read (the others' reads stand).
    std::vector<char> failed;
};

// A cluster master, where the library must be loaded.
struct history_node {
    std::string host;
    std::uint16_t port = 0;
    bool operator==(const history_node&) const = default;
};

// The queues between the redis thread and the history thread.
struct history_link {
    spsc_queue<history_batch> batches{8};
    spsc_queue<history_batch_result> results{8};
    thread_wakeup reader_wake;        // the history thread sleeps on it
    thread_wakeup* subscriber_wake = nullptr;  // the redis thread's
    // Cluster: the masters of the last topology the redis thread read.
    std::mutex masters_mutex;
    std::vector<history_node> masters;
};

// The marker channel, as subscribed (without --namespace): unique to this process. On a
// cluster, one per slot: a hash tag in front puts it in `slot`.
[[nodiscard]] std::string marker_channel(const config& cfg);
[[nodiscard]] std::string marker_channel(const config& cfg, std::uint16_t slot);

class history_reader {
public:
    history_reader(const config& cfg, history_link& link, std::atomic<bool>& stop,
                   history_metrics& metrics);
    ~history_reader();
    void run() noexcept;

private:
    // One command connection: to --redis, or to a cluster master.
    struct node {
        redis_endpoint endpoint;
        redis_context_ptr ctx;
        std::int64_t next_attempt_ms = 0;
        std::int64_t backoff_ms = 0;
        std::int64_t next_check_ms = 0;  // the library is checked again then
    };

    node& node_for(const std::string& host, std::uint16_t port);
    void update_masters();
    [[nodiscard]] bool connect(node& n, std::int64_t now) noexcept;
    void disconnect(node& n, std::string_view why, std::int64_t now) noexcept;
    bool ensure_library(node& n) noexcept;
    [[nodiscard]] bool usable(node& n, std::int64_t now) noexcept;
    history_batch_result execute(const history_batch& b) noexcept;
    [[nodiscard]] bool execute_on(node& n, const history_batch& b, std::span<const std::size_t> reads,
                                  history_batch_result& out);
    void sleep(std::int64_t timeout_ms) noexcept;

    const config& _cfg;
    history_link& _link;
    std::atomic<bool>& _stop;
    history_metrics& _metrics;
    std::string _library;
    std::string _fingerprint;
    std::vector<std::unique_ptr<node>> _nodes;  // --redis; or the masters, and nodes read from since
    std::vector<history_node> _masters;         // the last list taken from the link
    log::limiter _link_log;
    log::limiter _load_log{10'000};  // another node may keep loading its own settings
    log::limiter _batch_log;
};

}  // namespace jugglite

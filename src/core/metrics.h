// Counters. Each block has a single writer thread; any thread may read (for /metrics
// and the shutdown log), so fields are relaxed atomics updated without a locked RMW.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>
#include <span>

namespace jugglite {

// A counter with one writer thread: bump() is a plain load+store, not a lock-prefixed add.
class counter {
public:
    void bump(std::uint64_t n = 1) noexcept {
        _v.store(_v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void set(std::uint64_t v) noexcept { _v.store(v, std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t get() const noexcept { return _v.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> _v{0};
};

// How long frames took from their receipt from Redis to the completion of the send that
// wrote their last byte, per shard. Bounds in microseconds, from well under a loop turn
// to the send-stall timeout; counts are per bucket (not cumulative), one more for beyond.
struct delay_histogram {
    static constexpr std::array<std::uint64_t, 15> bounds_us{
        100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000,
        100'000, 250'000, 500'000, 1'000'000, 2'500'000, 10'000'000};

    void observe(std::uint64_t us) noexcept {
        auto i = static_cast<std::size_t>(
            std::lower_bound(bounds_us.begin(), bounds_us.end(), us) - bounds_us.begin());
        counts[i].bump();
        sum_us.bump(us);
    }

    std::array<counter, bounds_us.size() + 1> counts;
    counter sum_us;
};

// A snapshot of how many streams hold how many unsent bytes, per shard, taken over one
// round of the timer slices. Bounds in bytes; per bucket, one more for beyond.
struct queued_bytes_gauge {
    static constexpr std::array<std::uint64_t, 8> bounds{
        0, 1'024, 4'096, 16'384, 65'536, 262'144, 1'048'576, 4'194'304};

    [[nodiscard]] static std::size_t bucket_of(std::uint64_t bytes) noexcept {
        return static_cast<std::size_t>(
            std::lower_bound(bounds.begin(), bounds.end(), bytes) - bounds.begin());
    }

    std::array<counter, bounds.size() + 1> streams;
};

// Written by one shard thread.
struct shard_metrics {
    counter conns_opened;        // accepted and answered with a stream
    counter conns_rejected;      // answered with an error status (4xx, 503)
    counter conns_closed;        // stream or error connection fully closed
    counter conns_open;          // gauge: streams currently open on this shard
    counter slow_consumers;      // closed for exceeding --max-pending or the stall timeout
    counter request_timeouts;    // closed for not sending a full request in time
    counter messages_in;         // messages received from the redis thread
    counter messages_unrouted;   // arrived after this shard's last subscriber left (not a loss)
    counter frames_out;          // frames fully written to sockets (incl. keepalives)
    counter bytes_out;           // bytes written to sockets
    counter frames_dropped_closed;  // frames still queued when their connection closed
    counter accept_errors;       // accept failures other than a full table
    counter refused_capacity;    // turned away (to retry) at --max-conns or a full table
    counter refused_channels;    // turned away (to retry) at --max-channels
    counter refused_redis;       // turned away (to retry): Redis did not confirm in time
    counter channels_dropped;    // a channel Redis refused, removed from a stream
    counter refused_auth;        // stream requests refused for their credentials (401, 403, 431)
    counter refused_auth_unavailable;  // turned away (to retry): the auth callback failed or was slow
    counter refused_draining;    // turned away (to retry): the server is draining
    counter streams_drained;     // streams ended (with `retry:`) by the drain
    counter streams_expired;     // streams ended (with `retry:`) when their token expired
    counter streams_revoked;     // streams ended (with `retry:`): the auth callback withdrew them
    counter longpolls_ended;     // XHR long-polls ended after a message or --longpoll-max
    counter streams_resumed;     // streams given their replay (or a jugglite-reset)
    counter resumes_failed;      // streams ended (with `retry:`): history could not be read
    counter events_dropped_queue_full;  // events the events thread's queue had no room for
    counter sqe_deferred;        // operations retried on the next loop turn: no SQE
    counter heartbeat_ms;        // gauge: monotonic time of the loop's last turn (/livez)
    delay_histogram delivery_delay;  // receipt from Redis to send completion
    queued_bytes_gauge queued;       // streams by unsent bytes (a snapshot)
};

// Written by the redis thread.
// One subscriber link on a cluster, as /metrics shows it.
struct redis_node_state {
    std::string node;  // host:port
    std::string role;  // master, replica, or classic (the one node of classic pub/sub)
    bool up = false;
    std::uint64_t channels = 0;  // channels that live on it
    bool operator==(const redis_node_state&) const = default;
};

// Written by the redis thread when a link changes, read by a scrape.
class redis_node_states {
public:
    void set(std::vector<redis_node_state> nodes) {
        std::lock_guard lock(_mu);
        _nodes = std::move(nodes);
    }
    [[nodiscard]] std::vector<redis_node_state> get() const {
        std::lock_guard lock(_mu);
        return _nodes;
    }

private:
    mutable std::mutex _mu;
    std::vector<redis_node_state> _nodes;
};

struct redis_metrics {
    counter messages_in;           // message pushes received from Redis
    counter messages_unrouted;     // for a channel no shard wants any more (normal after UNSUBSCRIBE)
    counter messages_dropped_full; // a shard's queue was full: dropped, per shard-delivery
    counter messages_dropped_too_large;  // payload over --max-message-bytes: dropped once
    counter messages_dropped_no_memory;  // the frame could not be allocated
    counter reconnects;            // links that went live after the first
    counter link_timeouts;         // links replaced because Redis did not answer in time
    counter channels_refused;      // SUBSCRIBEs Redis refused (ACL), per channel
    counter channels_over_capacity;  // new channels refused at --max-channels
    counter subscribed_channels;   // gauge
    // Cluster (--redis-cluster).
    counter topology_reads;        // CLUSTER SHARDS answered and applied
    counter cluster_slots;         // gauge: slots the last topology assigns to a node
    counter channels_moved;        // subscribed channels that followed their slot to another node
    counter channels_dropped_by_redis;  // sunsubscribe or MOVED for a channel jugglite held
    redis_node_states nodes;       // per subscriber link
};

// History and resume (--history). Written by the redis thread, except the fields marked
// as the history thread's; each field has one writer.
struct history_metrics {
    counter resumes;             // resume requests from streams
    counter from_memory;         // answered from the in-memory windows
    counter from_redis;          // answered with reads of the streams in Redis
    counter replayed;            // frames sent in answers
    counter resets_trimmed;      // jugglite-reset: history no longer reaches the id
    counter resets_unknown;      // jugglite-reset: the id is newer than any in Redis
    counter resets_malformed;    // jugglite-reset: not an id
    counter resets_too_long;     // jugglite-reset: more than a replay may hold
    counter unavailable;         // no answer within limits::resume_timeout
    counter gaps;                // live messages whose previous id was missed
    counter catch_ups;           // channels caught up from Redis (after a gap or a reconnect)
    counter caught_up;           // messages delivered by catching up
    counter catch_ups_abandoned; // catch-ups given up (too many held messages)
    counter window_bytes;        // gauge: bytes in the in-memory windows
    counter window_evicted;      // entries evicted from them (memory or length bound)
    counter batches;             // history thread: MULTI batches run
    counter reads;               // history thread: XRANGEs run
    counter read_errors;         // history thread: batches that failed
    counter library_loads;       // history thread: FUNCTION LOADs of the library
};

// Written by the auth thread (--auth-url).
struct auth_metrics {
    counter calls;       // calls made to the application
    counter cache_hits;  // answered from --auth-cache-seconds
    counter granted;     // 200 with a grant
    counter denied;      // 401/403
    counter failed;      // timeout, unreachable, another status, a malformed answer
    counter in_flight;   // gauge: calls being asked
};

// Written by the events thread (--events-channel).
struct event_metrics {
    counter published;          // records PUBLISHed and answered by Redis
    counter dropped_redis_down; // records dropped: no link to Redis
    counter dropped_backlog;    // records dropped: Redis is not keeping up
    counter link_errors;        // links lost or replaced (error, or no answer in time)
};

// Everything /metrics reports, as read by the shard that answers the scrape. The side
// blocks are null when their thread doesn't run.
struct metrics_view {
    std::span<const shard_metrics> shards;
    const redis_metrics* redis = nullptr;
    bool redis_ready = false;
    const auth_metrics* auth = nullptr;
    const history_metrics* history = nullptr;
    const event_metrics* events = nullptr;
    std::uint64_t resident_bytes = 0;  // the process' RSS
    double cpu_seconds = 0;            // user + system CPU of the process
};

// /metrics' body in the Prometheus text exposition format: `jugglite_` names, `_total` on
// counters, base units, a `shard` label on the per-shard families, and the delivery
// delay histogram summed over the shards.
[[nodiscard]] std::string render_prometheus(const metrics_view& v);

// The process' RSS and CPU time, for metrics_view (from /proc/self/statm and getrusage).
void read_process_figures(metrics_view& v) noexcept;

// One line per counter block, for the shutdown log.
[[nodiscard]] std::string format_counters(const shard_metrics& m);
[[nodiscard]] std::string format_counters(const redis_metrics& m);

}  // namespace jugglite

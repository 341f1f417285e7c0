// The Redis subscriber thread: the only code that talks to Redis. It turns the shards'
// "first/last local subscriber" reports into SUBSCRIBE/UNSUBSCRIBE, and each message
// into one shared SSE frame routed to the shards that want its channel.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/channel_registry.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/shard_link.h"

struct redisContext;
struct redisReply;

namespace jugglite {

class redis_subscriber {
public:
    // Everything referenced must outlive run(). `wake.eventfd` must be non-blocking.
    redis_subscriber(const config& cfg, std::span<shard_link> shards, redis_wakeup& wake,
               std::atomic<bool>& stop, std::atomic<bool>& healthy, redis_metrics& metrics);
    ~redis_subscriber();

    // Runs until `stop` is set: connects (with capped, jittered exponential backoff),
    // re-subscribes after every reconnect, and never blocks a shard.
    void run() noexcept;

private:
    struct context_deleter {
        void operator()(redisContext* c) const noexcept;
    };
    using context_ptr = std::unique_ptr<redisContext, context_deleter>;

    void try_connect() noexcept;
    void disconnect(std::string_view why) noexcept;
    void drain_control() noexcept;
    void sync_subscriptions() noexcept;
    void send_command(std::string_view verb, const std::vector<std::string>& channels) noexcept;
    void flush_writes() noexcept;
    void mark_healthy() noexcept;
    void read_replies() noexcept;
    void handle_reply(const redisReply& r) noexcept;
    void route(std::string_view channel, std::string_view payload) noexcept;
    void wake_shards() noexcept;
    void wait_for_events(std::int64_t timeout_ms) noexcept;

    const config& _cfg;
    std::span<shard_link> _shards;
    redis_wakeup& _wake;
    std::atomic<bool>& _stop;
    std::atomic<bool>& _healthy;
    redis_metrics& _metrics;

    context_ptr _ctx;
    bool _ever_connected = false;
    bool _write_pending = false;
    std::int64_t _next_attempt_ms = 0;
    std::int64_t _backoff_ms = 0;
    unsigned _failures = 0;
    std::int64_t _connected_at_ms = 0;
    bool _resyncing = false;         // the next sync is the re-subscribe after a connect
    // Channels of that re-subscribe not yet acknowledged; /healthz is 503 until it is empty.
    std::unordered_set<std::string, string_hash, std::equal_to<>> _awaiting;

    shard_interest _interest;                 // which shards want which channel
    std::unordered_set<std::string, string_hash, std::equal_to<>> _subscribed;  // told Redis
    std::vector<std::string> _touched;        // channels whose interest changed this round
    std::uint64_t _seq = 0;                   // message sequence number
    std::uint64_t _shards_to_wake = 0;        // bitmask
    std::int64_t _last_drop_log_ms = 0;
};

}  // namespace jugglite

// The Redis subscriber thread: the only code that talks to Redis. It turns the shards'
// "first/last local subscriber" reports into SUBSCRIBE/UNSUBSCRIBE, tells the shards when
// Redis has confirmed (or refused) a channel, and turns each message into one shared SSE
// frame routed to the shards that want its channel.
//
// The link is non-blocking from the TCP connect on: connect, AUTH and every command after
// them must be answered within limits::redis_reply_timeout, and a PING goes out every
// limits::redis_ping_interval, so a frozen Redis or a dead path is noticed in seconds
// and the thread itself never blocks.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"
#include "core/shard_link.h"
#include "core/subscription_table.h"

struct redisContext;
struct redisReply;

namespace jugglite {

class redis_subscriber {
public:
    // Everything referenced must outlive run(). `wake.eventfd` must be non-blocking.
    redis_subscriber(const config& cfg, std::span<shard_link> shards, thread_wakeup& wake,
                     std::atomic<bool>& stop, redis_status& status, redis_metrics& metrics);
    ~redis_subscriber();

    // Runs until `stop` is set: connects (with capped, jittered exponential backoff),
    // re-subscribes after every reconnect, and never blocks a shard.
    void run() noexcept;

private:
    struct context_deleter {
        void operator()(redisContext* c) const noexcept;
    };
    using context_ptr = std::unique_ptr<redisContext, context_deleter>;

    enum class link_state : std::uint8_t { down, connecting, authenticating, live };

    // A command written (or queued for writing) on the link and not yet fully answered.
    // Redis answers in order, so the FIFO's front owns the next reply that is not a
    // message push; an error reply (e.g. NOPERM, which names no channel) is matched the
    // same way.
    struct command {
        enum kind_t : std::uint8_t { auth, subscribe, unsubscribe, ping, resync_ping } kind;
        std::vector<std::string> channels;  // local names (without the namespace)
        std::size_t answered = 0;           // per-channel replies seen so far
        std::int64_t sent_ms = 0;
    };

    // Link lifecycle.
    void start_connect(std::int64_t now) noexcept;
    void on_connected(std::int64_t now) noexcept;
    void go_live(std::int64_t now) noexcept;
    void disconnect(std::string_view why) noexcept;
    void check_deadlines(std::int64_t now) noexcept;

    // Commands.
    void send(command::kind_t kind, std::vector<std::string> channels, std::int64_t now) noexcept;
    void send_batched(command::kind_t kind, std::vector<std::string> channels, std::int64_t now) noexcept;
    void flush_writes() noexcept;

    // Replies.
    void read_replies(std::int64_t now) noexcept;
    void handle_reply(const redisReply& r, std::int64_t now) noexcept;
    void answer_front(const redisReply& r, std::int64_t now) noexcept;
    void route(std::string_view channel, std::string_view payload) noexcept;

    // Shards.
    void drain_control(std::int64_t now) noexcept;
    void notify(shard_mask shards, channel_notice::kind_t kind, const std::string& channel) noexcept;
    void flush_notices() noexcept;
    void wake_shards() noexcept;
    void wait_for_events(std::int64_t timeout_ms) noexcept;
    void set_state(redis_status::state_t s) noexcept;

    const config& _cfg;
    std::span<shard_link> _shards;
    thread_wakeup& _wake;
    std::atomic<bool>& _stop;
    redis_status& _status;
    redis_metrics& _metrics;

    context_ptr _ctx;
    link_state _link = link_state::down;
    bool _ever_live = false;
    bool _write_pending = false;         // hiredis holds bytes the socket has not taken
    std::int64_t _attempt_started_ms = 0;
    std::int64_t _live_since_ms = 0;     // 0 while the current link has not gone live
    std::int64_t _next_attempt_ms = 0;
    std::int64_t _backoff_ms = 0;
    unsigned _failures = 0;
    std::int64_t _next_ping_ms = 0;
    std::deque<command> _fifo;

    subscription_table _table;
    std::vector<std::deque<channel_notice>> _notice_backlog;  // per shard, when the queue is full
    std::uint64_t _seq = 0;                   // message sequence number
    std::uint64_t _shards_to_wake = 0;        // bitmask
    std::int64_t _last_drop_log_ms = 0;
};

}  // namespace jugglite

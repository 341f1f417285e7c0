// One shard: a thread with its own listener, connections and channel table, and one or
// more io_urings. A ring's direct-descriptor table is capped by RLIMIT_NOFILE, so where
// that limit is low one thread drives several rings rather than more threads than cores.
// Nothing in a shard is touched by another thread except through its shard_link.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <expected>
#include <future>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/channel_registry.h"
#include "core/config.h"
#include "core/drain_pace.h"
#include "core/http_request.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/request_router.h"
#include "core/token_cache.h"
#include "core/shard_link.h"
#include "net/buf_ring.h"
#include "net/conn_table.h"
#include "net/connection.h"
#include "net/ring.h"
#include "net/user_data.h"

namespace jugglite {

// State every shard reads, owned by the shard set. Written only through atomics.
struct shard_environment {
    const config* cfg;
    std::atomic<bool>* stop;                // set once at shutdown
    std::atomic<bool>* drain;               // set once on SIGTERM: close the streams, paced
    std::atomic<unsigned>* drained;         // shards whose drain is over
    std::atomic<std::uint32_t>* open_conns; // accepted connections across all shards
    const redis_status* redis_state;        // the redis thread's link state, for /readyz
    thread_wakeup* redis;
    std::span<const shard_metrics> all_shards;  // for /metrics
    const redis_metrics* redis_counters;
    side_threads side;
};

class shard {
public:
    // `listen_fd` stays owned by the caller and outlives the shard; every ring accepts on
    // it. `rings` rings each get a direct-descriptor table of `slots` entries
    // (slots <= conn_id::max_slots, rings <= conn_id::max_rings).
    shard(unsigned id, shard_environment env, shard_link& link, shard_metrics& metrics,
          int listen_fd, std::uint32_t rings, std::uint32_t slots);

    // Creates the rings (on this thread, as SINGLE_ISSUER requires), reports the outcome
    // through `ready`, then runs the loop until env.stop is set and connections are closed.
    void run(std::promise<std::expected<void, std::string>>& ready) noexcept;

private:
    [[nodiscard]] std::expected<void, std::string> setup();
    void loop() noexcept;
    [[nodiscard]] bool work_queued() const noexcept;
    void sleep() noexcept;
    void begin_stop() noexcept;

    // An accept in flight: where the kernel writes the peer's address, and its ring.
    struct accept_slot {
        sockaddr_storage addr;
        socklen_t len;
        std::uint32_t ring;
        std::uint32_t slot;  // the table slot the accept fills, taken from the ring's pool
        bool busy;
    };
    // One ring and what is kept per ring.
    struct ring_unit {
        std::optional<ring> io;
        std::optional<buf_ring> bufs;
        std::uint32_t live = 0;        // slots not free (open or still closing)
        slot_pool pool{0};             // which slot the next accept fills; slots
                                       // [0, pool.high_water()) have been used
        std::uint32_t accepts = 0;     // accepts in flight on the listener
    };
    [[nodiscard]] ring& ring_of(std::uint32_t id) noexcept { return *_units[conn_id::ring(id)].io; }
    [[nodiscard]] buf_ring& bufs_of(std::uint32_t id) noexcept { return *_units[conn_id::ring(id)].bufs; }
    // A ring's share of connections: its table minus the spare slots.
    [[nodiscard]] std::uint32_t usable_slots() const noexcept { return _conns.slots() - limits::spare_slots; }
    // The direct descriptor of connection `id` in its ring.
    [[nodiscard]] static int fd_of(std::uint32_t id) noexcept { return static_cast<int>(conn_id::slot(id)); }

    // Completion handlers.
    void handle(std::uint32_t u, const io_uring_cqe& cqe) noexcept;
    void on_accept(std::uint32_t u, const io_uring_cqe& cqe) noexcept;
    void adopt(std::uint32_t u, std::uint32_t slot, const accept_slot& from) noexcept;
    void on_recv(connection& c, std::uint32_t id, const io_uring_cqe& cqe) noexcept;
    void on_send(connection& c, std::uint32_t id, int res) noexcept;

    // Request side (shard_requests.cpp).
    void on_request_bytes(connection& c, std::uint32_t id) noexcept;
    void dispatch(connection& c, std::uint32_t id, const http_request& req);
    enum class auth_step : std::uint8_t { stream, answered, asked };
    [[nodiscard]] auth_step authorize(connection& c, std::uint32_t id, const http_request& req,
                                      stream_route& s, std::string& sub);
    void ask_app(connection& c, std::uint32_t id, const http_request& req, const stream_route& s);
    void send_auth_calls() noexcept;
    void drain_auth_answers() noexcept;
    void on_auth_answer(auth_answer& a) noexcept;
    void stream_granted(connection& c, std::uint32_t id, const grant& g);
    void recheck_stream(connection& c) noexcept;
    void on_recheck_answer(connection& c, std::uint32_t id, const auth_answer& a) noexcept;
    void open_stream(connection& c, std::uint32_t id, stream_route& s, std::string_view sub,
                     std::string_view user_agent);
    // Resume (shard_resume.cpp): a stream with Last-Event-ID asks the redis thread for its
    // channels' history once they are subscribed, holds live frames until the answer, and
    // is fed the replay as its sends complete.
    void prepare_resume(connection& c, const std::string& last_event_id);
    void ask_resume(connection& c, std::uint32_t id, std::vector<std::string> channels) noexcept;
    void flush_resumes() noexcept;
    void hold(connection& c, std::uint32_t id, const frame_ref& f, std::uint16_t channel) noexcept;
    void on_replay(replay& r) noexcept;
    void feed_replay(connection& c, std::uint32_t id) noexcept;
    // Connection events (shard_events.cpp): a register record is built at admission and
    // published when the stream starts; every stream that started gets one unregister.
    void prepare_register(connection& c, const stream_route& s, std::string_view sub,
                          std::string_view user_agent);
    void announce_register(connection& c) noexcept;
    void announce_unregister(connection& c, std::string_view reason) noexcept;
    bool push_event(std::string record) noexcept;
    void wake_events() noexcept;
    void start_stream(connection& c, std::uint32_t id, std::vector<std::string> channels,
                      bool head_only);
    void answer_and_close(connection& c, std::uint32_t id, int status,
                          std::string_view body) noexcept;
    // A refusal the client should retry (capacity, Redis not ready): 200 + `retry:` for an
    // EventSource, 503 + Retry-After for anyone else. Counted by `why`.
    enum class refusal : std::uint8_t { capacity, channels, redis, auth, draining };
    template <class Make>
    void send_final(connection& c, std::uint32_t id, Make&& make) noexcept;
    void refuse(connection& c, std::uint32_t id, refusal why) noexcept;
    // A `retry:` drawn uniformly from [lo, hi] ms: a storm of refusals comes back spread out.
    [[nodiscard]] std::uint32_t jittered_retry_ms(
        std::uint32_t lo = static_cast<std::uint32_t>(limits::refusal_retry_min.count()),
        std::uint32_t hi = static_cast<std::uint32_t>(limits::refusal_retry_max.count())) noexcept;
    // The CORS header lines every answer to `c` carries.
    [[nodiscard]] std::string cors_headers(const connection& c) const;
    // Ends a stream with `last` written before the close (see shard_requests.cpp).
    void end_stream(connection& c, std::uint32_t id, std::string last,
                    std::string_view reason) noexcept;
    void leave_streaming(connection& c, std::string_view reason) noexcept;
    void expire_stream(connection& c, std::uint32_t id) noexcept;
    void end_with_retry(connection& c, std::uint32_t id, std::string_view comment,
                        std::string_view reason, std::uint32_t retry_ms) noexcept;
    // XHR long-polls: listed so that their end is checked every tick, not every second.
    void note_longpoll_message(connection& c) noexcept;
    void check_longpolls() noexcept;
    [[nodiscard]] std::string metrics_text() const;
    [[nodiscard]] bool live() const noexcept;

    // Channel membership and Redis' answers about channels (shard_channels.cpp).
    void join_channels(connection& c, std::uint32_t id, std::vector<std::string>& channels);
    void begin_streaming(connection& c, std::uint32_t id) noexcept;
    void drain_notices() noexcept;
    void on_channel_ready(std::string_view name) noexcept;
    void on_channel_refused(const channel_notice& n) noexcept;
    void on_link_down() noexcept;
    void unconfirm(channel_entry& entry) noexcept;
    void unjoin(const membership& m) noexcept;
    void drop_channel(connection& c, std::uint16_t k) noexcept;
    void leave_channels(connection& c) noexcept;
    void send_control(control_message::kind_t kind, const std::string& channel) noexcept;
    void flush_control() noexcept;
    void wake_redis() noexcept;

    // Data path.
    void drain_messages() noexcept;
    void deliver(connection& c, std::uint32_t id, const frame_ref& f, std::uint16_t channel = 0) noexcept;
    void start_send(connection& c, std::uint32_t id) noexcept;
    void close_slow_consumers() noexcept;
    void start_queued_sends() noexcept;

    // Lifecycle.
    void arm_accept(std::uint32_t u) noexcept;
    void top_up_accepts() noexcept;
    void arm_recv(connection& c, std::uint32_t id) noexcept;
    enum class close_reason { client_gone, slow_consumer, done, server_stopping };
    void close_conn(connection& c, std::uint32_t id, close_reason why) noexcept;
    void linger(connection& c, std::uint32_t id) noexcept;
    void maybe_finish_close(connection& c, std::uint32_t id) noexcept;

    // A free SQE, or nullptr after recording `op` for `c` to be retried next loop turn.
    [[nodiscard]] io_uring_sqe* sqe_or_defer(connection& c, std::uint32_t id, deferred_op op) noexcept;
    void defer(connection& c, std::uint32_t id, deferred_op op) noexcept;
    void retry_deferred() noexcept;
    void issue_cancel(connection& c, std::uint32_t id) noexcept;

    // Draining on SIGTERM (shard_drain.cpp): /readyz says so, new streams are refused to
    // retry, and the open ones end with a jittered `retry:` at the shard's share of
    // --drain-rate, all within --drain-seconds.
    void begin_drain() noexcept;
    void drain_step() noexcept;
    void drain_stream(connection& c, std::uint32_t id) noexcept;

    // Timers: scan one slice of each ring's connections per tick.
    void on_tick() noexcept;
    void tick_slice(std::uint32_t u) noexcept;

    unsigned _id;
    shard_environment _env;
    shard_link& _link;
    shard_metrics& _metrics;
    int _listen_fd;

    std::vector<ring_unit> _units;
    conn_table _conns;                  // indexed by conn_id
    std::uint32_t _live = 0;            // slots not free, over all rings
    std::vector<std::uint32_t> _to_close;  // slow consumers found during a fan-out
    std::vector<std::uint32_t> _to_send;   // connections given frames during a fan-out
    std::vector<std::uint32_t> _deferred;  // connections with deferred_op bits set
    std::vector<std::uint32_t> _deferred_now;  // the list being retried (swapped in)
    channel_registry _channels;
    // Reports from_shard had no room for, one per channel: the latest report wins, so the
    // backlog is bounded by the channels this shard touched, and drains in FIFO order.
    std::deque<std::string> _control_order;
    std::unordered_map<std::string, control_message::kind_t, string_hash, std::equal_to<>> _control_backlog;
    bool _stopping = false;  // set by begin_stop(): no accepts, no fan-out, no channel teardown
    std::minstd_rand _rng;   // jitter for retry answers
    frame_ref _keepalive;               // ": keepalive <open connections>", rebuilt when the count moves
    std::uint32_t _keepalive_count = UINT32_MAX;
    // The open XHR long-polls: each ends limits::longpoll_linger after its last message, and
    // at the latest --longpoll-max after it started.
    struct longpoll {
        std::uint32_t id;
        std::uint32_t gen;
        std::int64_t end_ms;  // started + --longpoll-max
    };
    std::vector<longpoll> _longpolls;
    std::int64_t _now_s = 0;            // wall clock, for token expiry; set each tick
    token_cache _tokens{limits::token_cache_entries};
    std::uint32_t _auth_in_flight = 0;  // calls handed to the auth thread, not yet answered
    std::deque<auth_call> _auth_waiting;  // calls past the in-flight bound, in arrival order
    bool _auth_queued = false;          // calls pushed this turn: wake the auth thread
    bool _events_queued = false;        // records pushed this turn: wake the events thread
    std::uint64_t _stream_seq = 0;      // streams started here, for their event ids
    std::deque<resume_request> _resume_backlog;  // requests the queue had no room for
    // Warnings that can repeat per connection: one line a second each.
    log::limiter _auth_log;
    log::limiter _accept_log;
    log::limiter _close_log;
    // The accepts in flight, each with room for its peer's address; an accept's tag
    // carries its index here (in the generation field).
    std::array<accept_slot, limits::accepts_in_flight> _accept_slots{};
    std::int64_t _accept_retry_ms = 0;  // after an accept error, no new accepts before this
    std::int64_t _now_ms = 0;
    std::int64_t _reap_us = 0;  // monotonic_us() when the completions being handled were reaped
    // The drain, once begun: its pace, the streams its walk closed, where the walk is,
    // the streams left when its window ended (0 before), and streams that started during
    // the drain, to end on the next turn.
    std::optional<drain_pace> _drain;
    std::uint64_t _drain_closed = 0;
    std::uint32_t _drain_ring = 0;
    std::uint32_t _drain_slot = 0;
    std::uint64_t _drain_left = 0;
    bool _drain_expired = false;
    bool _drain_done = false;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> _drain_late;  // (id, gen)
    std::int64_t _next_tick_ms = 0;
    unsigned _slice = 0;
    // Streams by unsent bytes, counted over this round of slices; published to
    // _metrics.queued when the round ends.
    std::array<std::uint64_t, queued_bytes_gauge::bounds.size() + 1> _queued_round{};
};

}  // namespace jugglite

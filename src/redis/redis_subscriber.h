// The Redis subscriber thread: the only code that talks to Redis. It turns the shards'
// "first/last local subscriber" reports into SUBSCRIBE/UNSUBSCRIBE, tells the shards when
// Redis has confirmed (or refused) a channel, and turns each message into one shared SSE
// frame routed to the shards that want its channel.
//
// Each link is non-blocking from the TCP connect on: connect, AUTH and every command after
// them must be answered within limits::redis_reply_timeout, and a PING goes out every
// limits::redis_ping_interval, so a frozen Redis or a dead path is noticed in seconds
// and the thread itself never blocks.
//
// With --redis there is one link. With --redis-cluster there is one link per node that
// serves slots (SSUBSCRIBE, the channels of each slot on its node) or one link to one node
// (classic SUBSCRIBE), and a command link that reads the topology (see subscriber_cluster.cpp).
#pragma once

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/history_window.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/shard_link.h"
#include "core/subscription_table.h"
#include "redis/cluster_topology.h"
#include "redis/history_reader.h"

struct redisContext;
struct redisReply;

namespace jugglite {

class redis_subscriber {
public:
    // Everything referenced must outlive run(). `wake.eventfd` must be non-blocking.
    // `history` and `history_counters` are given with --history (the history thread's link).
    redis_subscriber(const config& cfg, std::span<shard_link> shards, thread_wakeup& wake,
                     std::atomic<bool>& stop, redis_status& status, redis_metrics& metrics,
                     history_link* history = nullptr, history_metrics* history_counters = nullptr);
    ~redis_subscriber();

    // Runs until `stop` is set: connects (with capped, jittered exponential backoff),
    // re-subscribes after every reconnect, and never blocks a shard.
    void run() noexcept;

    // For the fuzzer (tests/fuzz/redis_reply_fuzz.cpp): handles `bytes` through hiredis'
    // reader as replies read on a live link that has just sent SUBSCRIBE for `channels`
    // (and, with history, for its marker). Stops where the link would be dropped.
    void feed_replies(std::string_view bytes, const std::vector<std::string>& channels) noexcept;

private:
    // History (--history). See subscriber_history.cpp.
    struct held_message {
        stream_id id;                       // empty: a plain PUBLISH
        frame_ref frame;                    // null: too large to deliver
        std::optional<stream_id> previous;
    };
    // A channel catching up: its live messages wait here until the read from its window's
    // tail is routed.
    struct catch_up {
        std::uint64_t batch = 0;  // the batch reading it; 0: not asked yet
        std::int64_t deadline_ms = 0;  // given up then (Redis not answering the reads)
        std::deque<held_message> held;
    };
    struct pending_resume {
        unsigned shard;
        resume_request req;
        std::uint64_t batch = 0;  // the batch whose reads answer it; 0: none yet
        std::int64_t deadline_ms;
    };

    struct context_deleter {
        void operator()(redisContext* c) const noexcept;
    };
    using context_ptr = std::unique_ptr<redisContext, context_deleter>;

    enum class link_state : std::uint8_t { down, connecting, authenticating, live };
    using link_id = subscription_table::link_id;

    // A command written (or queued for writing) on a link and not yet fully answered.
    // Redis answers in order, so the FIFO's front owns the next reply that is not a
    // message push; an error reply (e.g. NOPERM, which names no channel) is matched the
    // same way.
    struct command {
        enum kind_t : std::uint8_t {
            auth, subscribe, unsubscribe, ping, resync_ping, marker, readonly, cluster_shards, role
        } kind;
        std::vector<std::string> channels;  // local names (without the namespace)
        std::size_t answered = 0;           // per-channel replies seen so far
        std::int64_t sent_ms = 0;
    };

    // One connection to one Redis node and the commands it has in flight.
    struct node_link {
        enum kind_t : std::uint8_t {
            subscriber,  // (S)SUBSCRIBEs the channels that live on it
            topology,    // the cluster's command link: CLUSTER SHARDS
            role_check,  // a replica subscriber's command link: ROLE, every PING interval
        } kind = subscriber;
        link_id id = 0;                 // the subscription table's name for it; never reused
        redis_endpoint endpoint;        // where, with the credentials of --redis(-cluster)
        bool replica = false;           // subscribes on a replica: READONLY first
        // A replica subscriber: the master it must replicate from (host:port), whether its
        // last ROLE said it does with the link up, and the command link that asks.
        std::string expected_master;
        bool fit = false;
        std::unique_ptr<node_link> checker;
        node_link* owner = nullptr;     // a role_check link's replica subscriber
        context_ptr ctx;
        link_state state = link_state::down;
        bool ever_live = false;
        bool write_pending = false;     // hiredis holds bytes the socket has not taken
        bool resynced = false;          // every resync PING sent has been answered
        unsigned resyncs_pending = 0;   // resync PINGs not yet answered
        std::int64_t attempt_started_ms = 0;
        std::int64_t live_since_ms = 0; // 0 while the current connection has not gone live
        std::int64_t next_attempt_ms = 0;
        std::int64_t backoff_ms = 0;
        unsigned failures = 0;
        std::int64_t next_ping_ms = 0;
        std::uint64_t subscribed = 0;   // channels Redis counts on this connection
        std::deque<command> fifo;
        // History: the marker channels subscribed here (per slot on a cluster, "slot" 0 on
        // --redis), and whether Redis has confirmed each.
        std::unordered_map<std::uint16_t, bool> markers;
    };

    // Link lifecycle.
    void start_connect(node_link& l, std::int64_t now) noexcept;
    void on_connected(node_link& l, std::int64_t now) noexcept;
    void go_live(node_link& l, std::int64_t now) noexcept;
    void disconnect(node_link& l, std::string_view why) noexcept;
    void check_deadlines(node_link& l, std::int64_t now) noexcept;
    void link_turn(node_link& l, std::int64_t now) noexcept;

    // Commands.
    void send(node_link& l, command::kind_t kind, std::vector<std::string> channels, std::int64_t now) noexcept;
    void send_batched(node_link& l, command::kind_t kind, std::vector<std::string> channels,
                      std::int64_t now) noexcept;
    // Sends each channel's command on the link it lives on.
    void send_on_links(command::kind_t kind, std::vector<std::string> channels, std::int64_t now) noexcept;
    void flush_writes(node_link& l) noexcept;

    // Replies.
    void read_replies(node_link& l, std::int64_t now) noexcept;
    void handle_reply(node_link& l, const redisReply& r, std::int64_t now) noexcept;
    void answer_front(node_link& l, const redisReply& r, std::int64_t now) noexcept;
    void subscribe_refused(node_link& l, command failed, std::string_view error, std::int64_t now) noexcept;
    void route(link_id from, std::string_view channel, std::string_view payload) noexcept;
    void fan_out(std::string_view channel, shard_mask mask, const frame_ref& f) noexcept;
    void fan_out(std::string_view channel, const frame_ref& f) noexcept {
        fan_out(channel, _table.shards_for(channel), f);
    }

    // History and resume (subscriber_history.cpp). A live message on a channel that is
    // catching up is held until the catch-up is routed; admit_live says whether it goes now.
    // `f` is null for a message too large to deliver; `id` is empty for a plain PUBLISH.
    [[nodiscard]] bool admit_live(std::string_view channel, stream_id id, const frame_ref& f,
                                  std::optional<stream_id> previous);
    catch_up& start_catch_up(std::string_view channel, std::int64_t now);
    void finish_catch_up(const std::string& channel, const stream_read& read);
    void abandon_catch_up(std::string_view channel);
    void release(std::string_view channel, std::deque<held_message> held);
    [[nodiscard]] bool is_marker(std::string_view channel) const noexcept;
    [[nodiscard]] std::uint16_t marker_slot(std::string_view channel) const noexcept;
    void on_marker(const node_link& l, std::string_view channel, std::string_view token) noexcept;
    [[nodiscard]] bool readable(history_read& read);
    void subscribe_markers(std::int64_t now);
    [[nodiscard]] std::size_t clock_of(std::string_view channel) const noexcept;
    [[nodiscard]] stream_id& routed_max(std::string_view channel) noexcept {
        return _routed_max[clock_of(channel)];
    }
    void finish_batch_safely() noexcept;
    void history_turn(std::int64_t now) noexcept;
    void drain_resumes(std::int64_t now);
    void take_history_results(std::int64_t now);
    void send_history_batch(std::int64_t now);
    void abandon_batch() noexcept;
    void unbatch(std::uint64_t token) noexcept;
    void end_batch() noexcept;
    void finish_batch();
    [[nodiscard]] bool answer_from_windows(unsigned shard, const resume_request& req);
    enum class reset_reason : std::uint8_t { trimmed, unknown, malformed, too_long };
    void replay_entries(unsigned shard, const resume_request& req, std::vector<history_entry> entries,
                        std::vector<stream_id> through);
    void reset(unsigned shard, const resume_request& req, std::vector<stream_id> through, reset_reason why);
    void send_answer(unsigned shard, const resume_request& req, replay::outcome_t outcome,
                     std::vector<frame_ref> frames, std::vector<stream_id> through);
    void flush_answers() noexcept;
    void history_link_lost() noexcept;
    void history_missed(const std::string& channel) noexcept;
    void history_link_up() noexcept;
    void history_subscribed(const std::string& channel, std::int64_t now) noexcept;
    void history_unsubscribed(std::span<const std::string> channels) noexcept;

    // Cluster (subscriber_cluster.cpp).
    [[nodiscard]] node_link* find_link(link_id id) noexcept;
    [[nodiscard]] link_id link_for(std::string_view channel) const noexcept;
    [[nodiscard]] bool link_live(link_id id) noexcept;
    void topology_turn(std::int64_t now) noexcept;
    void refresh_topology(std::string_view why) noexcept;
    void on_topology(const redisReply& r, std::int64_t now) noexcept;
    void apply_topology(cluster_topology t, std::int64_t now);
    void place_channels(std::int64_t now);
    [[nodiscard]] node_link* existing_link(const cluster_node& n) noexcept;
    [[nodiscard]] std::unique_ptr<node_link> new_link(const cluster_node& n);
    void check_turn(node_link& replica, std::int64_t now) noexcept;
    void on_role(node_link& checker, const redisReply& r) noexcept;
    void set_fit(node_link& replica, bool fit, std::string_view why) noexcept;
    void on_dropped(node_link& l, const std::string& channel) noexcept;
    void update_cluster_state() noexcept;
    void publish_node_states() noexcept;
    [[nodiscard]] static bool serves(const node_link& l, const cluster_node& n) noexcept;
    [[nodiscard]] bool names(std::string_view full, std::string_view local) const noexcept;
    void set_subscribed(node_link& l, long long count) noexcept;
    void update_subscribed_gauge() noexcept;

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

    // The subscriber links: one with --redis; on a cluster, one per node subscribed on.
    std::vector<std::unique_ptr<node_link>> _links;
    link_id _next_link = 1;

    // Cluster only.
    std::unique_ptr<node_link> _topology_link;  // reads CLUSTER SHARDS
    std::size_t _next_seed = 0;                  // the next address the topology link tries
    std::vector<redis_endpoint> _known_nodes;    // seeds, then every node of the last topology
    std::optional<cluster_topology> _topology;
    std::vector<link_id> _slot_links;            // per slot: the link serving it, or no_link
    bool _refresh_wanted = false;                // read the topology again as soon as allowed
    bool _unsettled = false;                     // a channel was dropped and waits for a refresh
    bool _replace_wanted = false;                // a replica's fitness changed: place again
    unsigned _unplaced_reads = 0;                // topologies in a row that left channels without a node
    std::int64_t _next_refresh_ms = 0;
    std::int64_t _last_refresh_ms = 0;
    std::string _classic_node;                   // classic pub/sub: the node subscribed on
    // Each link's id, whether it is up and its channels: what /metrics was last given.
    struct node_sig {
        link_id id;
        bool up;
        std::size_t channels;
        bool operator==(const node_sig&) const = default;
    };
    std::vector<node_sig> _node_sig, _published_sig;
    std::vector<node_link*> _polled;      // wait_for_events' links and descriptors, kept
    std::vector<pollfd> _pollfds;         // between turns
    log::limiter _moved_log;

    subscription_table _table;
    std::vector<std::deque<channel_notice>> _notice_backlog;  // per shard, when the queue is full
    std::uint64_t _seq = 0;                   // message sequence number
    std::uint64_t _shards_to_wake = 0;        // bitmask
    log::limiter _queue_full_log;
    log::limiter _too_large_log;
    log::limiter _refused_log;
    log::limiter _catch_up_log;

    history_link* _history = nullptr;
    history_metrics* _hm = nullptr;
    std::optional<history_windows> _windows;
    std::unordered_map<std::string, catch_up, string_hash, std::equal_to<>> _catch_ups;
    std::deque<pending_resume> _resumes;
    std::string _marker;                 // this process' marker channel (on a cluster, the
                                         // part after each slot's hash tag)
    // Per clock (one on --redis, one per slot on a cluster): the newest entry routed.
    std::vector<stream_id> _routed_max;
    std::uint64_t _next_token = 0;
    std::uint64_t _batch_token = 0;      // the batch in flight; 0: none
    std::vector<history_read> _batch_reads;
    std::optional<history_batch_result> _batch_result;
    std::vector<std::uint16_t> _batch_markers;  // the slots whose marker has not come back yet
    std::vector<std::pair<link_id, std::uint16_t>> _markers_wanted;  // to subscribe (cluster)
    bool _recheck_resumes = false;       // a catch-up finished: waiting requests may be answered
    std::int64_t _batch_sent_ms = 0;
    std::int64_t _next_batch_ms = 0;
    std::vector<std::deque<std::unique_ptr<replay>>> _answer_backlog;  // per shard: queue full
};

}  // namespace jugglite

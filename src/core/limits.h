// Every fixed limit of the server, in one place, each with the reason for its value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace jugglite::limits {

// A browser's request line plus cookies fits easily; anything larger is abuse. Past it: 431.
inline constexpr std::size_t max_request_bytes = 8 * 1024;

// Channels per connection. Each one costs a registry entry; a page needs a handful.
inline constexpr std::size_t max_channels_per_conn = 64;

// Channel name length, in bytes, after percent-decoding and before the namespace is added.
inline constexpr std::size_t max_channel_name = 256;

// A request must be complete within this long after accept (slowloris defence).
inline constexpr std::chrono::milliseconds request_timeout{10'000};

// A send that makes no progress for this long marks a stalled (slow or dead) consumer.
// Longer than any keepalive interval a client could sensibly be behind by.
inline constexpr std::chrono::milliseconds send_stall_timeout{30'000};

// After an error answer is written and the write side shut, how long to wait for the
// client's EOF before closing anyway (closing with unread input would RST the answer away).
inline constexpr std::chrono::milliseconds linger{2'000};

// Default cap on the bytes queued for one connection behind the frame being sent
// (--max-pending); that head frame never counts, so any message up to --max-message-bytes
// reaches a connection that keeps up. Redis' pubsub output buffer limit is 32 MiB for a
// whole client; one browser tab needs far less backlog.
inline constexpr std::size_t default_max_pending_bytes = 1024 * 1024;

// Default --max-message-bytes: the largest payload delivered. A connection with nothing
// queued always takes one whole message up to this size (--max-pending bounds only the
// backlog behind it); a larger one is dropped once, at the redis thread, and counted.
// Redis' own `client-output-buffer-limit pubsub` (32 MiB hard by default) disconnects a
// subscriber that falls that far behind, so larger values need that raised as well.
inline constexpr std::size_t default_max_message_bytes = 16 * 1024 * 1024;

// Payloads up to this size are searched for event/id with a per-thread JSON parser and
// padded copy kept for reuse (about 7x this in address space, touched only as far as a
// payload reaches), so a common message allocates nothing for it. A larger payload gets a
// parser and copy of its own, freed once its fields are found: one huge message must not
// leave the thread that builds frames holding memory of its size.
inline constexpr std::size_t small_json_bytes = 64 * 1024;

// Blocks at least this large are mmapped by malloc and unmapped as soon as they are freed
// (set at startup with mallopt). glibc's default is dynamic: freeing a large mmapped block
// raises its threshold (and the heap trim threshold) to that size, so later large messages
// come from arena heaps that stay resident: 20 MB held after one 20 MB message. Below it,
// frames and buffers of ordinary messages reuse heap memory with no system call.
inline constexpr std::size_t malloc_mmap_threshold = 1024 * 1024;

// Frames gathered into one sendmsg. Far below IOV_MAX (1024); more frames wait for the next send.
inline constexpr std::size_t max_iov_per_send = 64;

// Entries in each redis->shard queue (power of two). At 10 msg/s a shard that stalls
// for minutes still does not overflow; a full queue drops the message and counts it.
inline constexpr std::size_t shard_queue_capacity = 1 << 14;

// Entries in each shard->redis queue (power of two). Overflow is kept shard-side, one
// entry per channel (the latest report wins), and retried.
inline constexpr std::size_t control_queue_capacity = 1 << 12;

// Entries in each redis->shard notice queue (power of two). Overflow is kept on the redis
// thread and retried: a notice is never dropped.
inline constexpr std::size_t notice_queue_capacity = 1 << 12;

// Direct-descriptor slots held back in each ring's table. A ring stops accepting when
// only these are left (its siblings take over); once every ring is there, they take
// over-limit clients so that those are answered, not left hanging in the backlog.
inline constexpr std::uint32_t spare_slots = 64;

// Single-shot accepts kept in flight per shard, on its first rings with free slots (never
// more than a ring's free slots): enough to take a connect storm at the loop's pace.
inline constexpr std::uint32_t accepts_in_flight = 16;

// Provided receive buffers per ring and their size. Only connections that are sending
// us bytes hold one, and only until the shard copies the bytes out (the same loop turn);
// with none left a receive ends with -ENOBUFS and is armed again. The kernel hands them
// out in turn, so all of them become resident: with one million streams a process has
// 56 rings, and 256 buffers each were 56 MiB (32 are 7 MiB).
inline constexpr std::uint32_t recv_buffer_count = 32;
inline constexpr std::uint32_t recv_buffer_size = 4096;

// Ring sizes. The CQ is sized at twice a ring's table (a send and a receive completion
// per connection in one drain), between these bounds; a larger burst waits in the
// kernel's overflow list (no completion is dropped: IORING_FEAT_NODROP). The rings are
// resident from the start, and a process with one million streams has 56: 1.27 MiB each
// at 65536 CQEs and 4096 SQEs made 71 MiB before the first client.
inline constexpr unsigned ring_sq_entries = 1024;
inline constexpr unsigned ring_cq_min = 4096;
inline constexpr unsigned ring_cq_entries = 8192;

// The shard loop wakes at least this often to drive its timer scan.
inline constexpr std::chrono::milliseconds tick{100};

// The connection table is scanned in this many slices, one per tick, so every
// connection's timers are checked once per second and keepalives spread over the interval.
inline constexpr unsigned timer_slices = 10;

// Redis reconnect backoff: doubles from min to max, with up to 50% random jitter.
inline constexpr std::chrono::milliseconds redis_backoff_min{100};
inline constexpr std::chrono::milliseconds redis_backoff_max{5'000};

// A Redis link that lived this long was stable: when it drops, reconnect at once and
// restart the backoff. A shorter-lived one keeps backing off.
inline constexpr std::chrono::milliseconds redis_stable_link{5'000};

// The Redis link must answer within this long: the TCP connect, AUTH, and every command
// after it, PINGs included. Past it the link counts as dead (a frozen Redis, a path that
// died without a reset) and is replaced; readiness turns false at once.
inline constexpr std::chrono::milliseconds redis_reply_timeout{3'000};

// A PING goes out on the subscribed link this often, so that a silent link is caught
// within redis_reply_timeout + this.
inline constexpr std::chrono::milliseconds redis_ping_interval{1'000};

// TCP keepalive on the Redis socket: idle time, probe interval, probe count. A backstop
// for the PING deadline; it also makes the kernel drop a dead path's socket.
inline constexpr int redis_keepalive_idle_s = 10;
inline constexpr int redis_keepalive_interval_s = 5;
inline constexpr int redis_keepalive_count = 3;

// Redis Cluster: the topology (CLUSTER SHARDS) is read again this often, whatever happens
// (a replica re-pointed to another master sends no notice), and, while a channel jugglite
// needs has no subscribed node (a failover, a slot migrating), at most this often.
inline constexpr std::chrono::milliseconds cluster_refresh_interval{5'000};
inline constexpr std::chrono::milliseconds cluster_refresh_min{500};

// Channels per SUBSCRIBE. Keeps each command small after a reconnect with many channels,
// and bounds what one forbidden channel makes Redis refuse (and us retry one by one).
inline constexpr std::size_t redis_subscribe_batch = 1024;

// Default --unsubscribe-grace: a channel nobody wants stays subscribed this long, so that
// page reloads and reconnects don't churn SUBSCRIBE/UNSUBSCRIBE.
inline constexpr std::chrono::seconds default_unsubscribe_grace{5};

// Default --max-channels: distinct channels subscribed in Redis at once. Without a cap
// clients could make the server hold max_conns x 64 Redis subscriptions.
inline constexpr std::uint32_t default_max_channels = 100'000;

// Default --register-timeout: a stream waits this long for Redis to confirm its channels
// before it is turned away with a retry (the link is down, or Redis is slow). Longer
// than a reconnect after a Redis restart usually takes; short enough that a browser is
// not left hanging without its registration comment.
inline constexpr std::chrono::milliseconds default_register_timeout{5'000};

// /livez fails when a loop (a shard's or the redis thread's) has not turned for this long.
inline constexpr std::chrono::milliseconds liveness_stall{10'000};

// How long a shard waits at shutdown for its connections' final completions.
inline constexpr std::chrono::milliseconds shutdown_drain{2'000};

// The `retry:` an EventSource gets with a refusal it should retry, drawn uniformly from
// this range so that a refused storm comes back spread out.
inline constexpr std::chrono::milliseconds refusal_retry_min{1'000};
inline constexpr std::chrono::milliseconds refusal_retry_max{5'000};

// Draining (SIGTERM): the defaults of --drain-rate (closes per second, all shards together)
// and --drain-seconds, and the longest `retry:` a drained stream is given when the window
// ends before the rate could close them all (its reconnect is spread up to this far).
inline constexpr double default_drain_rate = 20'000;
inline constexpr std::chrono::seconds default_drain_window{5};
inline constexpr std::chrono::milliseconds drain_retry_max{600'000};

// Retry-After sent with 503 when --max-conns is reached.
inline constexpr int retry_after_seconds = 5;

// A signed token longer than this is refused (431) before it is decoded. Real tokens are
// well under 2 KiB; the request head's own 8 KiB cap bounds them anyway.
inline constexpr std::size_t max_token_bytes = 4096;

// Verified tokens a shard remembers (see token_cache.h): about 300 B each with its grant.
inline constexpr std::size_t token_cache_entries = 8192;

// Clock skew tolerated on a token's `exp` and `nbf`.
inline constexpr std::uint32_t token_leeway_seconds = 5;

// An XHR polyfill's long-poll ends this long after the last message written to it (the
// Ruby Jugglite's value, which Remy's polyfill expects), and --longpoll-max after it started
// at the latest.
inline constexpr std::chrono::milliseconds longpoll_linger{250};
inline constexpr std::chrono::seconds default_longpoll_max{25};

// Events (--events-channel): a shard's queue of records for the events thread (sized for
// a whole shard's unregisters at shutdown), the PUBLISHes that may wait for Redis' answers
// before new records are dropped, how long a link may go without an answer, and how long
// the thread goes on publishing after the shards stopped.
inline constexpr std::size_t event_queue_capacity = 1 << 15;
inline constexpr std::uint64_t events_max_unanswered = 100'000;
inline constexpr std::chrono::milliseconds events_reply_timeout{3'000};
inline constexpr std::chrono::milliseconds events_final_flush{2'000};

// How long a browser may cache a CORS preflight answer.
inline constexpr int cors_max_age_seconds = 600;

// The auth callback's answer body is read up to this size; a larger one is a failure.
inline constexpr std::size_t max_auth_answer_bytes = 64 * 1024;

// Auth calls a shard may have in flight (queued to the auth thread or being asked); past
// it, new calls wait in the shard, within --auth-timeout. It bounds what a slow application
// makes the auth thread and curl hold.
inline constexpr std::uint32_t auth_calls_per_shard = 1024;
inline constexpr std::size_t auth_queue_capacity = 1024;  // >= auth_calls_per_shard
// The nice value of the auth and events threads: a shard (nice 0) gets about ten times
// their share of a contended core, so open streams keep their latency while connects are
// authorized.
inline constexpr int side_thread_nice = 10;

// Connections kept open to the application (keep-alive), so that a burst of connects
// doesn't mean a TCP handshake each; calls beyond them wait in curl's queue.
inline constexpr long auth_max_connections = 64;
inline constexpr std::chrono::milliseconds default_auth_timeout{2'000};
// Entries of the decision cache at most (--auth-cache-seconds).
inline constexpr std::size_t auth_cache_entries = 100'000;

// Default --history-memory: the in-memory windows of history channels, over all channels.
// A blip's worth of messages for thousands of channels; a restart starts them empty.
inline constexpr std::size_t default_history_memory = 64 * 1024 * 1024;

// A resume that would replay more than this is answered with jugglite-reset instead: the
// client refetches its state rather than take a backlog it could not have kept up with.
// Entries are also what one read of a stream asks for (COUNT), per channel.
inline constexpr std::size_t replay_max_entries = 10'000;
inline constexpr std::size_t replay_max_bytes = 16 * 1024 * 1024;

// A replay is fed to the connection's queue as sends complete, this much at a time, so it
// never meets --max-pending (which would drop the client, who would come back with the
// same id and loop).
inline constexpr std::size_t replay_feed_bytes = 64 * 1024;

// Reads of history in one MULTI, and how long a resuming stream waits for Redis to answer
// before it ends with a retry (it comes back with the same Last-Event-ID).
inline constexpr std::size_t history_reads_per_batch = 512;
inline constexpr std::chrono::milliseconds resume_timeout{10'000};

// Messages a channel holds back while it catches up after a gap or a reconnect. Past it,
// the catch-up is abandoned (counted) and the held messages go out.
inline constexpr std::size_t catch_up_hold_max = 100'000;

// How often the history thread checks that the Redis Function library is still loaded (a
// Redis restarted without persistence has lost it).
inline constexpr std::chrono::milliseconds history_library_check{2'000};

// Entries in each shard's queue of resume requests to the redis thread (power of two).
inline constexpr std::size_t resume_queue_capacity = 4096;

}  // namespace jugglite::limits

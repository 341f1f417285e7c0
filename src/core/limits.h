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

// Default cap on bytes queued for one connection (--max-pending). Redis' pubsub output
// buffer limit is 32 MiB for a whole client; one browser tab needs far less.
inline constexpr std::size_t default_max_pending_bytes = 1024 * 1024;

// Frames gathered into one sendmsg. Far below IOV_MAX (1024); more frames wait for the next send.
inline constexpr std::size_t max_iov_per_send = 64;

// Entries in each redis->shard queue (power of two). At 10 msg/s a shard that stalls
// for minutes still does not overflow; a full queue drops the message and counts it.
inline constexpr std::size_t shard_queue_capacity = 1 << 14;

// Entries in each shard->redis queue (power of two). Overflow is kept shard-side and retried.
inline constexpr std::size_t control_queue_capacity = 1 << 12;

// Direct-descriptor slots held back beyond a shard's share of --max-conns so that
// over-limit clients can still be accepted and answered 503 instead of being left hanging.
inline constexpr std::uint32_t spare_slots = 64;

// Provided receive buffers per shard and their size. Only connections that are sending
// us bytes hold one, and only until the shard copies the bytes out.
inline constexpr std::uint32_t recv_buffer_count = 256;
inline constexpr std::uint32_t recv_buffer_size = 4096;

// Ring sizes. The CQ is larger than any batch of completions one loop iteration drains.
inline constexpr unsigned ring_sq_entries = 4096;
inline constexpr unsigned ring_cq_entries = 65536;

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

// Connect timeout for each Redis attempt.
inline constexpr std::chrono::milliseconds redis_connect_timeout{1'000};

// How long a shard waits at shutdown for its connections' final completions.
inline constexpr std::chrono::milliseconds shutdown_drain{2'000};

// Retry-After sent with 503 when --max-conns is reached.
inline constexpr int retry_after_seconds = 5;

}  // namespace jugglite::limits

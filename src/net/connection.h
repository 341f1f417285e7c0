// One client connection's state and its outgoing frame queue. No I/O here: the shard
// issues the operations; this type decides what to send next and accounts for results.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/auth_call.h"
#include "core/channel_registry.h"
#include "core/frame.h"
#include "core/limits.h"
#include "core/metrics.h"
#include "core/stream_id.h"

namespace jugglite {

enum class conn_state : std::uint8_t {
    free,                // slot unused
    reading,             // waiting for the request head
    authorizing,         // a stream request waiting for the auth callback's answer
    registering,         // a stream waiting for Redis to confirm its channels; nothing sent yet
    streaming,           // subscribed; frames flow
    closing_after_send,  // an error answer (or HEAD) is queued; close once it is written
    lingering,           // answer written and write side shut; waiting for the client's EOF
    closing,             // cancel issued; waiting for the last completion
};

// A channel this connection is in, and its position in that channel's subscriber list.
struct membership {
    channel_entry* entry;
    std::uint32_t pos;
};

// What one send should write: a single span (send) or several (sendmsg over iovecs).
struct send_plan {
    const char* data;     // set when count == 1
    std::size_t len;
    msghdr* msg;          // set when count > 1
    std::size_t count;    // frames covered
};

// Operations a shard could not submit (the kernel refused a submission, e.g. -EAGAIN
// under memory pressure) and retries on its next loop turn.
enum deferred_op : std::uint8_t {
    defer_recv = 1,
    defer_send = 2,
    defer_half_close = 4,
    defer_cancel = 8,
    defer_close = 16,
};

// A stream resuming from Last-Event-ID (--history), from its request until its replay is
// all queued. Meanwhile live frames that reach it are held, to go after the replay.
struct resume_state {
    std::optional<stream_id> from;  // nullopt: the client's id was malformed
    bool answered = false;          // the answer came: replay and held frames are fed
    std::int64_t deadline_ms = 0;   // the redis thread's answer is due by then
    std::deque<frame_ref> replay;   // answer frames not yet queued
    struct held_frame {
        frame_ref frame;
        std::uint16_t channel;  // its channel's index in the stream's list (and the request's)
    };
    std::deque<held_frame> held;    // live frames behind the replay, in arrival order
    // Per channel of the stream: its index in the request (channels dropped since shift
    // the stream's own indices, not the answer's).
    std::vector<std::uint16_t> asked;
    std::size_t held_bytes = 0;
};

// What a stream keeps only when connection events (--events-channel) or trusted proxies
// need it; null otherwise, so that a plain stream pays one pointer.
struct stream_extras {
    std::string peer;            // the socket's peer address, as text
    std::string register_event;  // built at admission; published once the stream starts
    std::int64_t started_ms = 0; // wall clock when the stream started, for duration_ms
    std::uint64_t seq = 0;       // this shard's number for the stream, part of its event id
    // --auth-revalidate: the call that admitted the stream, asked again every interval.
    std::unique_ptr<auth_call> recheck;
    // --history: while the stream resumes.
    std::unique_ptr<resume_state> resume;
};

class connection {
public:
    // Resets the slot for a newly accepted socket. The generation survives resets.
    void open(std::int64_t now_ms) noexcept;
    // Back to free, releasing everything; bumps the generation so late completions miss.
    void reset() noexcept;

    // Appends `f` to the queue. `cap` (--max-pending) bounds only the backlog behind the head
    // frame, which never counts, partly sent or not: a connection with nothing queued takes
    // any frame whole. Returns false once that backlog exceeds `cap` (the caller drops the
    // connection as a slow consumer); the frame is still held then.
    [[nodiscard]] bool enqueue(frame_ref f, std::size_t cap);

    // What to send next from the queue head (at most limits::max_iov_per_send frames).
    // Only valid when has_pending() and no send is in flight. Marks a send in flight.
    [[nodiscard]] send_plan plan_send();

    // Accounts `n` bytes written by the in-flight send; returns the frames completed.
    // Clears the in-flight mark. With `delays`, each completed frame that came from Redis
    // is observed there with its age at `now_us`.
    std::uint32_t consume(std::size_t n, delay_histogram* delays = nullptr,
                          std::int64_t now_us = 0) noexcept;

    [[nodiscard]] bool has_pending() const noexcept { return _head < _pending.size(); }
    // Bytes queued behind the head frame: what enqueue's cap bounds. Above the cap, enqueue
    // has refused a frame.
    [[nodiscard]] std::size_t pending_bytes() const noexcept {
        return has_pending() ? _unsent_bytes - (_pending[_head]->size() - _head_offset) : 0;
    }
    // Every byte not yet written, the rest of the head frame included.
    [[nodiscard]] std::size_t unsent_bytes() const noexcept { return _unsent_bytes; }
    // Drops every queued frame (only when no send is in flight). Returns how many.
    std::size_t drop_pending() noexcept;
    // Frees the request's bytes. `request = {}` would not: libstdc++ copies an empty string
    // into the buffer it has and keeps it, about 100 B for as long as the slot lives.
    void release_request() noexcept { std::string().swap(request); }

    std::uint32_t gen = 0;
    conn_state state = conn_state::free;
    bool send_inflight = false;
    bool recv_armed = false;
    bool counted = false;           // holds one unit of the process-wide --max-conns budget
    bool wants_event_stream = false;  // sent Accept: text/event-stream (see http_request)
    std::uint8_t unconfirmed = 0;   // registering: channels Redis has not confirmed yet
    std::uint8_t deferred = 0;      // deferred_op bits: operations waiting for a free SQE
    std::uint8_t ops_inflight = 0;  // recv + send + cancel not yet completed
    bool xhr = false;               // an XHR polyfill's long-poll: ends after each message
    std::uint16_t cors = 0;         // cors_policy::decision for the request's Origin
    std::uint32_t expires_at_s = 0; // streaming: unix seconds when its token expires, or when the
                                    // callback is asked again (--auth-revalidate); 0: never
    std::int64_t deadline_ms = 0;   // reading: request timeout; authorizing: how long to wait
                                    // for the application; registering: for Redis;
                                    // lingering: when to close; streaming XHR: when to end
    std::int64_t last_write_ms = 0; // last completed write (or open): drives keepalive
    std::int64_t send_started_ms = 0;
    std::string request;            // request bytes until dispatched (authorizing: until the
                                    // answer), then released (release_request)
    std::vector<membership> channels;
    std::unique_ptr<stream_extras> extras;

private:
    std::vector<frame_ref> _pending;  // frames [_head, end) are unsent
    // 32 bits: frames are under 4 GiB (--max-message-bytes is at most 512 MiB), and so is
    // their count; 8 bytes less per connection slot.
    std::uint32_t _head = 0;
    std::uint32_t _head_offset = 0;   // bytes of _pending[_head] already written
    std::size_t _unsent_bytes = 0;    // bytes of frames [_head, end) not yet written
    // iovecs for a multi-frame send; allocated on first use, freed when the queue drains
    // so idle connections hold none.
    struct iov_batch {
        msghdr msg;
        iovec iov[limits::max_iov_per_send];
    };
    std::unique_ptr<iov_batch> _batch;
};

}  // namespace jugglite

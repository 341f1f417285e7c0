// The queues between the redis thread and one shard, what travels on them, and the
// redis thread's state that shards read.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/auth_call.h"
#include "core/frame.h"
#include "core/limits.h"
#include "core/metrics.h"
#include "core/spsc_queue.h"
#include "core/stream_id.h"

namespace jugglite {

// shard -> redis (--history): a stream asked to resume after `from` (Last-Event-ID). Sent
// once its channels are subscribed; from then on the stream holds the live frames that
// reach it until the answer.
struct resume_request {
    std::uint32_t conn;
    std::uint32_t gen;
    std::optional<stream_id> from;      // nullopt: the client's id was malformed
    std::vector<std::string> channels;  // without namespace
};

// redis -> shard: the answer to a resume_request, in the same queue as live messages so
// that its place among them is exact: every entry of the stream's channels up to
// `through` is in `frames` (those after `from`) or was delivered before; every live frame
// after it follows.
struct replay {
    std::uint32_t conn;
    std::uint32_t gen;
    enum outcome_t : std::uint8_t {
        entries,      // `frames` are the history after `from`, in id order (maybe none)
        reset,        // `frames` is one jugglite-reset frame
        unavailable,  // Redis could not be read in time: the stream ends with a retry
    } outcome;
    std::vector<frame_ref> frames;
    // The answer accounts for every entry up to `through`: live frames the stream held with
    // an id up to there are in `frames` (or before the client's id); later ones follow.
    // On a cluster each slot has its own clock, so each channel has its own bound:
    // `through_each`, in the order of the request's channels (empty: `through` for all).
    stream_id through;
    std::vector<stream_id> through_each;
};

// redis -> shard: deliver `frame` to every local subscriber of `channel` (without
// namespace); or, when `answer` is set, the answer to one stream's resume_request.
struct shard_message {
    frame_ref frame;
    std::string channel;
    std::unique_ptr<replay> answer;
};

// redis -> shard: what became of a channel the shard asked for. Never dropped: the redis
// thread keeps what the queue can't take and retries.
struct channel_notice {
    enum kind_t : std::uint8_t {
        ready,          // Redis confirmed the subscription: streams waiting for it may start
        forbidden,      // Redis refused it (ACL): drop it from every stream
        over_capacity,  // --max-channels reached: streams waiting for it are turned away
        link_down,      // the Redis link is gone: no channel is subscribed until `ready` again
        unconfirmed,    // this channel alone is unsubscribed until `ready` again (its cluster
                        // slot moved, or the node serving it was lost)
    } kind;
    std::string channel;  // empty for link_down
};

// shard -> redis: this shard gained its first, or lost its last, subscriber of `channel`.
struct control_message {
    enum kind_t : std::uint8_t { subscribe, unsubscribe } kind;
    std::string channel;
};

// Owned by the shard set; the redis thread produces on to_shard and notices and consumes
// from_shard, the shard does the opposite. `shard_eventfd` wakes the shard when
// shard_wake says so.
struct shard_link {
    spsc_queue<shard_message> to_shard{limits::shard_queue_capacity};
    spsc_queue<channel_notice> notices{limits::notice_queue_capacity};
    wake_flag shard_wake;
    int shard_eventfd = -1;
    spsc_queue<control_message> from_shard{limits::control_queue_capacity};
    // With --auth-url: calls to the auth thread and its answers, which also wake the shard
    // through shard_wake and shard_eventfd.
    // Allocated only when the callback is configured.
    std::unique_ptr<spsc_queue<auth_call>> auth_calls;
    std::unique_ptr<spsc_queue<auth_answer>> auth_answers;
    // With --events-channel: records (JSON) for the events thread, which the shard wakes.
    std::unique_ptr<spsc_queue<std::string>> events;
    // With --history: resume requests for the redis thread (woken like from_shard).
    std::unique_ptr<spsc_queue<resume_request>> resumes;
};

// Wakes a thread the shards hand work to (the redis, auth and events threads); shared by
// every shard (should_wake is safe with many producers).
struct thread_wakeup {
    wake_flag flag;
    int eventfd = -1;
};

// The producer's half of the wake protocol (see wake_flag): after pushing, write the
// consumer's eventfd if it sleeps, once per sleep.
inline void wake_if_sleeping(wake_flag& flag, int eventfd) noexcept {
    if (!flag.should_wake()) return;
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(eventfd, &one, sizeof one);
}

// The threads that run only when configured, and their counters: the auth thread
// (--auth-url) and the events thread (--events-channel). Null when not.
struct side_threads {
    thread_wakeup* auth = nullptr;
    const auth_metrics* auth_counters = nullptr;
    thread_wakeup* events = nullptr;
    const event_metrics* event_counters = nullptr;
    const history_metrics* history_counters = nullptr;  // --history
};

// What the redis thread publishes about itself; written by it alone, read by the shards.
struct redis_status {
    enum state_t : std::uint8_t {
        disconnected,   // no link (or backing off after a failed attempt)
        connecting,     // TCP connect or AUTH under way
        resubscribing,  // linked; the channels wanted before are being subscribed again
        ready,          // linked, every wanted channel answered, PINGs answered in time
    };
    std::atomic<std::uint8_t> state{disconnected};
    std::atomic<std::uint32_t> channels{0};       // subscription_table::size()
    std::atomic<std::int64_t> heartbeat_ms{0};    // monotonic time of its last loop turn

    [[nodiscard]] bool is_ready() const noexcept {
        return state.load(std::memory_order_relaxed) == ready;
    }
};

}  // namespace jugglite

// The two queues between the redis thread and one shard, and what travels on them.
#pragma once

#include <string>

#include "core/frame.h"
#include "core/limits.h"
#include "core/spsc_queue.h"

namespace jugglite {

// redis -> shard: deliver `frame` to every local subscriber of `channel` (without namespace).
struct shard_message {
    frame_ref frame;
    std::string channel;
};

// shard -> redis: this shard gained its first, or lost its last, subscriber of `channel`.
struct control_message {
    enum kind_t : std::uint8_t { subscribe, unsubscribe } kind;
    std::string channel;
};

// Owned by the shard set; the redis thread produces on to_shard and consumes from_shard,
// the shard does the opposite. `shard_eventfd` wakes the shard when shard_wake says so.
struct shard_link {
    spsc_queue<shard_message> to_shard{limits::shard_queue_capacity};
    wake_flag shard_wake;
    int shard_eventfd = -1;
    spsc_queue<control_message> from_shard{limits::control_queue_capacity};
};

// Wakes the redis thread; shared by every shard (should_wake is safe with many producers).
struct redis_wakeup {
    wake_flag flag;
    int eventfd = -1;
};

}  // namespace jugglite

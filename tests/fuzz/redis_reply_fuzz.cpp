// Bytes from Redis, through hiredis' reader, into the subscriber thread's handler: replies
// to SUBSCRIBE, message pushes (with history envelopes and JSON payloads), errors, and
// anything else. The shards' queues are drained after each input.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/shard_link.h"
#include "redis/redis_subscriber.h"

using namespace jugglite;

namespace {

struct world {
    world() {
        cfg.history_enabled = true;
        cfg.namespace_prefix = "ns:";
        cfg.max_message_bytes = 4096;
        cfg.history_memory = 1 << 16;
        cfg.history.length = 16;
        for (auto& l : links) l.resumes = std::make_unique<spsc_queue<resume_request>>(16);
    }
    config cfg;
    shard_link links[2];
    thread_wakeup wake;
    std::atomic<bool> stop{false};
    redis_status status;
    redis_metrics metrics;
    history_link history;
    history_metrics history_counters;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static world w;
    static const std::vector<std::string> channels{"a", "b", "user:{42}"};
    {
        redis_subscriber sub(w.cfg, w.links, w.wake, w.stop, w.status, w.metrics, &w.history,
                             &w.history_counters);
        sub.feed_replies(std::string_view(reinterpret_cast<const char*>(data), size), channels);
    }
    for (auto& l : w.links) {
        while (l.to_shard.try_pop()) {
        }
        while (l.notices.try_pop()) {
        }
    }
    return 0;
}

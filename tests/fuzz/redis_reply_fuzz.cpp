// Bytes from Redis, through hiredis' reader, into the subscriber thread's handler: replies
// to SUBSCRIBE, message pushes (with history envelopes and JSON payloads), errors, and
// anything else. The shards' queues are drained after each input.
//
// Inputs with an array header of a million elements or more are skipped: hiredis 0.14
// (Debian 12's) callocs an array's element pointers as soon as it reads the header (1.0
// added `maxelements` against that), so `*700000003` asks for 5.6 GB before any element
// arrives. The subscriber only ever talks to the Redis it is configured with, which sends
// it arrays of three or four elements.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
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

// True when `bytes` hold '*' followed by seven digits or more anywhere (a superset of the
// array headers hiredis would allocate a million elements or more for).
bool huge_array_header(std::string_view bytes) {
    for (std::size_t p = bytes.find('*'); p != std::string_view::npos; p = bytes.find('*', p + 1)) {
        std::size_t digits = 0;
        while (p + 1 + digits < bytes.size() && bytes[p + 1 + digits] >= '0' && bytes[p + 1 + digits] <= '9')
            ++digits;
        if (digits >= 7) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    if (huge_array_header(input)) return -1;  // not added to the corpus
    static world w;
    static const std::vector<std::string> channels{"a", "b", "user:{42}"};
    {
        redis_subscriber sub(w.cfg, w.links, w.wake, w.stop, w.status, w.metrics, &w.history,
                             &w.history_counters);
        sub.feed_replies(input, channels);
    }
    for (auto& l : w.links) {
        while (l.to_shard.try_pop()) {
        }
        while (l.notices.try_pop()) {
        }
    }
    return 0;
}

// Connection events (--events-channel), the Ruby Jugglite's on_register/on_unregister: a
// shard builds the records and queues them for the events thread, which PUBLISHes them.
// Nothing here waits: a record the queue can't take is dropped and counted.
#include "core/clock.h"
#include "core/connection_event.h"
#include "shard/shard.h"

namespace jugglite {

void shard::prepare_register(connection& c, const stream_route& s, std::string_view sub,
                             std::string_view user_agent) {
    stream_extras& x = *c.extras;
    x.seq = ++_stream_seq;
    std::string id = stream_event_id(_env.cfg->node_name, _env.cfg->instance, _id, x.seq);
    x.register_event = register_event({_env.cfg->node_name, id, &s.channels, sub, x.peer,
                                       user_agent, unix_ms()});
}

// The stream has started (its head is queued): its register record goes out.
void shard::announce_register(connection& c) noexcept {
    if (!c.extras || c.extras->register_event.empty()) return;
    const bool queued = push_event(std::move(c.extras->register_event));
    c.extras->register_event = {};
    // A stream whose register was dropped gets no unregister either.
    if (queued) c.extras->started_ms = unix_ms();
}

void shard::announce_unregister(connection& c, std::string_view reason) noexcept {
    if (!c.extras || c.extras->started_ms == 0) return;  // never registered
    const std::int64_t now = unix_ms();
    try {
        std::string id = stream_event_id(_env.cfg->node_name, _env.cfg->instance, _id, c.extras->seq);
        push_event(unregister_event(_env.cfg->node_name, id, reason,
                                    std::max<std::int64_t>(0, now - c.extras->started_ms), now));
    } catch (const std::bad_alloc&) {
        _metrics.events_dropped_queue_full.bump();
    }
    c.extras->started_ms = 0;  // one unregister per stream
}

bool shard::push_event(std::string record) noexcept {
    if (!_link.events->try_push(std::move(record))) {
        _metrics.events_dropped_queue_full.bump();
        return false;
    }
    _events_queued = true;
    return true;
}

void shard::wake_events() noexcept {
    if (!_events_queued) return;
    _events_queued = false;
    wake_if_sleeping(_env.side.events->flag, _env.side.events->eventfd);
}

}  // namespace jugglite

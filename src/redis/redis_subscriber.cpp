// The redis thread: its loop, what Redis' replies mean (subscriptions confirmed or
// refused, messages routed to the shards), and the shards' side of the queues. The
// connections themselves are subscriber_links.cpp's; the cluster's topology
// subscriber_cluster.cpp's; history subscriber_history.cpp's.
#include "redis/redis_subscriber.h"

#include <hiredis/hiredis.h>

#include <algorithm>

#include "core/clock.h"
#include "core/log.h"
#include "core/history.h"
#include "core/sse_frame.h"

namespace jugglite {

namespace {

std::string_view str(const redisReply& r) { return {r.str, static_cast<std::size_t>(r.len)}; }

// A cluster node's answer that the key (channel) is served elsewhere, or can't be now.
bool cluster_redirect(std::string_view error) {
    return error.starts_with("MOVED") || error.starts_with("ASK") || error.starts_with("TRYAGAIN") ||
           error.starts_with("CLUSTERDOWN") || error.starts_with("CROSSSLOT");
}

bool is_string(const redisReply& r) {
    return r.type == REDIS_REPLY_STRING || r.type == REDIS_REPLY_STATUS;
}

}  // namespace

void redis_subscriber::context_deleter::operator()(redisContext* c) const noexcept { redisFree(c); }

redis_subscriber::redis_subscriber(const config& cfg, std::span<shard_link> shards,
                                   thread_wakeup& wake, std::atomic<bool>& stop,
                                   redis_status& status, redis_metrics& metrics,
                                   history_link* history, history_metrics* history_counters)
    : _cfg(cfg),
      _shards(shards),
      _wake(wake),
      _stop(stop),
      _status(status),
      _metrics(metrics),
      _table(cfg.unsubscribe_grace.count(), cfg.max_channels),
      _notice_backlog(shards.size()),
      _history(history),
      _hm(history_counters),
      _answer_backlog(shards.size()) {
    if (!cfg.cluster()) {
        // One link, 0, to --redis.
        auto l = std::make_unique<node_link>();
        l->endpoint = cfg.redis;
        _links.push_back(std::move(l));
    } else {
        _topology_link = std::make_unique<node_link>();
        _topology_link->kind = node_link::topology;
        _known_nodes = cfg.cluster_seeds;
        _slot_links.assign(cluster_slots, subscription_table::no_link);
    }
    if (_history) {
        _windows.emplace(cfg.history_memory, cfg.history.length);
        _marker = marker_channel(cfg);
        _routed_max.resize(cfg.cluster() ? cluster_slots : 1);
    }
}

redis_subscriber::~redis_subscriber() = default;

void redis_subscriber::run() noexcept {
    while (!_stop.load(std::memory_order_acquire)) {
        std::int64_t now = monotonic_ms();
        _status.heartbeat_ms.store(now, std::memory_order_relaxed);
        if (_topology_link) topology_turn(now);
        flush_notices();
        drain_control(now);
        auto gone = _table.expire(now);
        if (_history) history_unsubscribed(gone);
        send_on_links(command::unsubscribe, std::move(gone), now);
        for (auto& l : _links) link_turn(*l, now);
        if (_history) history_turn(now);
        if (_topology_link) update_cluster_state();
        _status.channels.store(static_cast<std::uint32_t>(_table.size()), std::memory_order_relaxed);
        wake_shards();
        std::int64_t timeout = 250;
        for (auto& l : _links)
            if (l->state == link_state::down) timeout = std::min(timeout, l->next_attempt_ms - now);
        if (_topology_link && _topology_link->state == link_state::down)
            timeout = std::min(timeout, _topology_link->next_attempt_ms - now);
        wait_for_events(std::max<std::int64_t>(timeout, 1));
    }
    _status.state.store(redis_status::disconnected, std::memory_order_relaxed);
    for (auto& l : _links) l->ctx.reset();
    if (_topology_link) _topology_link->ctx.reset();
    log::info("redis: subscriber stopped");
}

void redis_subscriber::feed_replies(std::string_view bytes, const std::vector<std::string>& channels) noexcept {
    node_link& l = *_links.front();
    l.state = link_state::live;
    l.fifo.clear();
    try {
        if (_history) {
            l.markers.emplace(0, false);
            l.fifo.push_back(command{command::marker, {_marker}, 0, 0});
        }
        for (std::size_t i = 0; i < channels.size(); ++i) {
            if (_table.want(channels[i], static_cast<unsigned>(i % _shards.size()), true) ==
                subscription_table::want_result::subscribe)
                l.fifo.push_back(command{command::subscribe, {channels[i]}, 0, 0});
        }
    } catch (const std::bad_alloc&) {
        return;
    }
    redisReader* reader = redisReaderCreate();
    if (!reader) return;
    if (redisReaderFeed(reader, bytes.data(), bytes.size()) == REDIS_OK) {
        while (l.state == link_state::live) {
            void* raw = nullptr;
            if (redisReaderGetReply(reader, &raw) != REDIS_OK || !raw) break;
            handle_reply(l, *static_cast<redisReply*>(raw), 0);
            freeReplyObject(raw);
        }
    }
    redisReaderFree(reader);
}

// ---- replies ------------------------------------------------------------------------

void redis_subscriber::handle_reply(node_link& l, const redisReply& r, std::int64_t now) noexcept {
    const bool triple = r.type == REDIS_REPLY_ARRAY && r.elements == 3 && is_string(*r.element[0]) &&
                        r.element[1]->type == REDIS_REPLY_STRING;
    // A message push is a reply no command asked for ("smessage" with sharded pub/sub).
    if (triple && r.element[2]->type == REDIS_REPLY_STRING && l.kind == node_link::subscriber &&
        str(*r.element[0]) == (_cfg.sharded_pubsub() ? "smessage" : "message")) {
        if (_history && is_marker(str(*r.element[1]))) {
            on_marker(l, str(*r.element[1]), str(*r.element[2]));
            return;
        }
        _metrics.messages_in.bump();
        route(l.id, str(*r.element[1]), str(*r.element[2]));
        return;
    }
    // So is a node's own "sunsubscribe" (its slot migrated away); it looks exactly like the
    // answer to an SUNSUBSCRIBE, which the FIFO's front would be expecting for that channel.
    if (triple && _cfg.sharded_pubsub() && str(*r.element[0]) == "sunsubscribe") {
        const std::string_view name = str(*r.element[1]);
        const command* front = l.fifo.empty() ? nullptr : &l.fifo.front();
        const bool ours = front && front->kind == command::unsubscribe &&
                          front->answered < front->channels.size() && names(name, front->channels[front->answered]);
        if (!ours) {
            if (r.element[2]->type == REDIS_REPLY_INTEGER) set_subscribed(l, r.element[2]->integer);
            if (_history && is_marker(name)) {
                l.markers.erase(marker_slot(name));  // asked again where its slot lives now
                return;
            }
            if (name.starts_with(_cfg.namespace_prefix))
                on_dropped(l, std::string(name.substr(_cfg.namespace_prefix.size())));
            return;
        }
    }
    if (l.fifo.empty()) {
        disconnect(l, "a reply that no command asked for");
        return;
    }
    answer_front(l, r, now);
}

// Matches `r` with the oldest unanswered command.
void redis_subscriber::answer_front(node_link& l, const redisReply& r, std::int64_t now) noexcept {
    command& cmd = l.fifo.front();
    if (r.type == REDIS_REPLY_ERROR) {
        command failed = std::move(cmd);
        l.fifo.pop_front();
        switch (failed.kind) {
            case command::auth:
                disconnect(l, fmt::format("AUTH failed: {}", str(r)));
                return;
            case command::marker:
                if (_topology_link && cluster_redirect(str(r))) {
                    // The slot moved: asked again on the node that serves it now.
                    l.markers.erase(marker_slot(failed.channels.front()));
                    refresh_topology("a marker's slot moved");
                    return;
                }
                // History's reads can't be placed without it (see subscriber_history.cpp):
                // resumes are answered from memory or end with a retry; delivery goes on.
                log::warn("redis: SUBSCRIBE {} (history's marker) refused: {}; resuming from "
                          "Redis is off until it is allowed", failed.channels.front(), str(r));
                return;
            case command::subscribe:
                subscribe_refused(l, std::move(failed), str(r), now);
                return;
            case command::cluster_shards:
                on_topology(r, now);
                return;
            case command::role:
                on_role(l, r);
                return;
            case command::unsubscribe:
                // A node that no longer serves the slot redirects the SUNSUBSCRIBE (it has
                // dropped the channel on its own already): nothing is subscribed there.
                if (_topology_link && cluster_redirect(str(r))) {
                    for (std::size_t i = failed.answered; i < failed.channels.size(); ++i)
                        _table.on_unsubscribed(failed.channels[i], l.id);
                    return;
                }
                disconnect(l, fmt::format("unexpected error reply: {}", str(r)));
                return;
            default:
                // UNSUBSCRIBE, PING and READONLY don't fail on a working link.
                disconnect(l, fmt::format("unexpected error reply: {}", str(r)));
                return;
        }
    }
    switch (cmd.kind) {
        case command::auth:
            if (r.type != REDIS_REPLY_STATUS) {
                disconnect(l, "unexpected reply to AUTH");
                return;
            }
            l.fifo.pop_front();
            go_live(l, now);
            return;
        case command::readonly:
            if (r.type != REDIS_REPLY_STATUS) {
                disconnect(l, "unexpected reply to READONLY");
                return;
            }
            l.fifo.pop_front();
            return;
        case command::cluster_shards:
            l.fifo.pop_front();
            on_topology(r, now);
            return;
        case command::role:
            l.fifo.pop_front();
            on_role(l, r);
            return;
        case command::ping:
        case command::resync_ping: {
            // ["pong", ""] in subscribed mode, +PONG before the first SUBSCRIBE.
            bool pong = (r.type == REDIS_REPLY_STATUS && str(r) == "PONG") ||
                        (r.type == REDIS_REPLY_ARRAY && r.elements >= 1 && is_string(*r.element[0]) &&
                         str(*r.element[0]) == "pong");
            if (!pong) {
                disconnect(l, "unexpected reply to PING");
                return;
            }
            bool resynced = cmd.kind == command::resync_ping;
            l.fifo.pop_front();
            if (resynced && l.resyncs_pending > 0 && --l.resyncs_pending == 0) {
                l.resynced = true;
                set_state(redis_status::ready);
                log::info("redis: subscribed to {} channels on {}", l.subscribed, l.endpoint.display());
            }
            return;
        }
        case command::marker: {
            const std::string_view kind = _cfg.sharded_pubsub() ? "ssubscribe" : "subscribe";
            if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || !is_string(*r.element[0]) ||
                str(*r.element[0]) != kind || !is_string(*r.element[1]) || str(*r.element[1]) != cmd.channels.front()) {
                disconnect(l, fmt::format("unexpected reply to {} of the marker", kind));
                return;
            }
            if (auto m = l.markers.find(marker_slot(cmd.channels.front())); m != l.markers.end()) m->second = true;
            l.fifo.pop_front();
            return;
        }
        case command::subscribe:
        case command::unsubscribe: {
            const bool sharded = _cfg.sharded_pubsub();
            std::string_view kind = cmd.kind == command::subscribe ? (sharded ? "ssubscribe" : "subscribe")
                                                                   : (sharded ? "sunsubscribe" : "unsubscribe");
            if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || !is_string(*r.element[0]) ||
                str(*r.element[0]) != kind || r.element[1]->type != REDIS_REPLY_STRING) {
                disconnect(l, fmt::format("unexpected reply to {}", kind));
                return;
            }
            // Each reply names its channel. Another name means the replies and the commands
            // no longer line up (a node's own sunsubscribe taken for the answer to ours, and
            // then a redirect for ours): start the link afresh rather than mislabel channels.
            if (!names(str(*r.element[1]), cmd.channels[cmd.answered])) {
                disconnect(l, fmt::format("reply to {} names {}, not {}", kind, str(*r.element[1]),
                                          cmd.channels[cmd.answered]));
                return;
            }
            if (r.element[2]->type == REDIS_REPLY_INTEGER) set_subscribed(l, r.element[2]->integer);
            const std::string& name = cmd.channels[cmd.answered];
            if (cmd.kind == command::subscribe) {
                if (_history) history_subscribed(name, now);
                notify(_table.on_subscribed(name, l.id), channel_notice::ready, name);
            } else
                _table.on_unsubscribed(name, l.id);
            if (++cmd.answered == cmd.channels.size()) l.fifo.pop_front();
            return;
        }
    }
}

// Redis refused an (S)SUBSCRIBE. On a cluster, a node that no longer serves the slot
// answers MOVED (or TRYAGAIN, CLUSTERDOWN while it can't tell): the channels wait for the
// topology to say where they live now. Otherwise an ACL forbids a channel.
void redis_subscriber::subscribe_refused(node_link& l, command failed, std::string_view error,
                                         std::int64_t now) noexcept {
    if (_topology_link && cluster_redirect(error)) {
        log::warn(_moved_log, now, "redis: {} answered {} for {} channels; reading the topology again",
                  l.endpoint.display(), error, failed.channels.size() - failed.answered);
        for (std::size_t i = failed.answered; i < failed.channels.size(); ++i) on_dropped(l, failed.channels[i]);
        return;
    }
    if (failed.channels.size() > 1) {
        // One forbidden channel fails the whole command and the error names none of them:
        // ask again one channel at a time.
        std::vector<std::string> retry;
        for (std::size_t i = failed.answered; i < failed.channels.size(); ++i)
            if (_table.on_batch_refused(failed.channels[i], l.id)) retry.push_back(failed.channels[i]);
        for (auto& c : retry) send(l, command::subscribe, {std::move(c)}, now);
    } else if (!failed.channels.empty()) {
        const std::string& name = failed.channels.front();
        _metrics.channels_refused.bump();
        log::warn(_refused_log, now, "redis: SUBSCRIBE {}{} refused: {}", _cfg.namespace_prefix, name, error);
        notify(_table.on_refused(name, l.id), channel_notice::forbidden, name);
    }
}

void redis_subscriber::route(link_id from, std::string_view channel, std::string_view payload) noexcept {
    if (!channel.starts_with(_cfg.namespace_prefix)) {
        _metrics.messages_unrouted.bump();
        return;
    }
    channel.remove_prefix(_cfg.namespace_prefix.size());
    // A channel in its unsubscribe grace has no shard to deliver to, but its history window
    // must see every message, or a client back within the grace would be answered from a
    // window that lacks it. On a cluster, a node the channel has moved away from may still
    // deliver it for a while: only the link it lives on counts.
    const shard_mask mask = _table.shards_for(channel, from);
    if (mask == 0 && !(_history && _windows->find(channel) && _table.link_of(channel) == from)) {
        // The last subscriber left meanwhile (or, on a cluster, the channel left that node).
        _metrics.messages_unrouted.bump();
        return;
    }
    // FCALL jugglite_publish wraps the payload in an envelope that carries its entry id.
    auto envelope = parse_envelope(payload);
    if (envelope) payload = envelope->payload;
    const stream_id id = envelope ? envelope->id : stream_id{};
    try {
        frame_ref f;
        if (payload.size() > _cfg.max_message_bytes) {
            // Dropped here, once, rather than at every connection it would overflow. Its id
            // still goes into the history window (with no frame), which stays whole.
            _metrics.messages_dropped_too_large.bump();
            log::warn(_too_large_log, monotonic_ms(),
                      "redis: dropping a {} byte message on '{}': larger than --max-message-bytes {}",
                      payload.size(), channel, _cfg.max_message_bytes);
        } else {
            // Built in place, once for every shard. With --history only an entry id is an SSE id.
            f = make_sse_frame(payload, ++_seq, {id, !_cfg.history_enabled});
            f.stamp_received(monotonic_us());
        }
        if (_history && !admit_live(channel, id, f, envelope ? envelope->previous : std::nullopt)) return;
        if (f) fan_out(channel, mask, f);
    } catch (const std::bad_alloc&) {
        _metrics.messages_dropped_no_memory.bump();
    }
}

// Hands `f` to the shards in `mask`, those that want `channel`.
void redis_subscriber::fan_out(std::string_view channel, shard_mask mask, const frame_ref& f) noexcept {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        if (!(mask & (shard_mask{1} << i))) continue;
        bool pushed = false;
        try {
            pushed = _shards[i].to_shard.try_push(shard_message{f, std::string(channel), nullptr});
        } catch (const std::bad_alloc&) {
            _metrics.messages_dropped_no_memory.bump();
            continue;
        }
        if (!pushed) {
            _metrics.messages_dropped_full.bump();
            log::warn(_queue_full_log, monotonic_ms(),
                      "redis: shard {} queue full, dropping messages (dropped so far: {})", i,
                      _metrics.messages_dropped_full.get());
            continue;
        }
        _shards_to_wake |= shard_mask{1} << i;
    }
}

// ---- shards -------------------------------------------------------------------------

void redis_subscriber::drain_control(std::int64_t now) noexcept {
    std::vector<std::string> to_subscribe;
    for (unsigned i = 0; i < _shards.size(); ++i) {
        while (auto m = _shards[i].from_shard.try_pop()) {
            if (m->kind == control_message::unsubscribe) {
                _table.unwant(m->channel, i, now);
                continue;
            }
            const link_id link = link_for(m->channel);
            switch (_table.want(m->channel, i, link_live(link), link)) {
                case subscription_table::want_result::pending: break;
                case subscription_table::want_result::subscribe:
                    to_subscribe.push_back(std::move(m->channel));
                    break;
                case subscription_table::want_result::ready:
                    notify(shard_mask{1} << i, channel_notice::ready, m->channel);
                    break;
                case subscription_table::want_result::over_capacity:
                    _metrics.channels_over_capacity.bump();
                    notify(shard_mask{1} << i, channel_notice::over_capacity, m->channel);
                    break;
            }
        }
    }
    send_on_links(command::subscribe, std::move(to_subscribe), now);
}

void redis_subscriber::notify(shard_mask shards, channel_notice::kind_t kind,
                              const std::string& channel) noexcept {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        if (!(shards & (shard_mask{1} << i))) continue;
        channel_notice n{kind, channel};
        auto& backlog = _notice_backlog[i];
        if (!backlog.empty() || !_shards[i].notices.try_push(std::move(n))) backlog.push_back(std::move(n));
        _shards_to_wake |= shard_mask{1} << i;
    }
}

void redis_subscriber::flush_notices() noexcept {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        auto& backlog = _notice_backlog[i];
        while (!backlog.empty() && _shards[i].notices.try_push(std::move(backlog.front()))) {
            backlog.pop_front();
            _shards_to_wake |= shard_mask{1} << i;
        }
    }
}

void redis_subscriber::wake_shards() noexcept {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        if (_shards_to_wake & (shard_mask{1} << i))
            wake_if_sleeping(_shards[i].shard_wake, _shards[i].shard_eventfd);
    }
    _shards_to_wake = 0;
}

// `full` (a channel as Redis names it) is `local` with the namespace.
bool redis_subscriber::names(std::string_view full, std::string_view local) const noexcept {
    return full.size() == _cfg.namespace_prefix.size() + local.size() && full.starts_with(_cfg.namespace_prefix) &&
           full.ends_with(local);
}

// `l` holds `count` channels, as Redis counts them; the gauge sums the links.
void redis_subscriber::set_subscribed(node_link& l, long long count) noexcept {
    l.subscribed = static_cast<std::uint64_t>(std::max(count, 0LL));
    update_subscribed_gauge();
}

void redis_subscriber::update_subscribed_gauge() noexcept {
    std::uint64_t sum = 0;
    for (const auto& other : _links) sum += other->subscribed;
    _metrics.subscribed_channels.set(sum);
}

// The single-Redis state; on a cluster update_cluster_state() sums the links up instead.
void redis_subscriber::set_state(redis_status::state_t s) noexcept {
    if (_topology_link) return;
    _status.state.store(s, std::memory_order_relaxed);
}

}  // namespace jugglite

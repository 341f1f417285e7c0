#include "redis/redis_subscriber.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

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

// TCP keepalive probes, and a cap on how long written data may stay unacknowledged.
// Neither replaces the PING deadline; they make the kernel give up on a dead path too.
void tune_socket(int fd) noexcept {
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = limits::redis_keepalive_idle_s, intvl = limits::redis_keepalive_interval_s,
        cnt = limits::redis_keepalive_count;
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    unsigned user_timeout = (idle + intvl * cnt) * 1000u;
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
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

// A subscriber link's turn: connect when due, PING when due, replace it when an answer
// is late, write what is queued.
void redis_subscriber::link_turn(node_link& l, std::int64_t now) noexcept {
    if (l.checker) check_turn(*l.checker, now);
    if (l.state == link_state::down && now >= l.next_attempt_ms) start_connect(l, now);
    if (l.state == link_state::live && now >= l.next_ping_ms) {
        send(l, command::ping, {}, now);
        l.next_ping_ms = now + limits::redis_ping_interval.count();
    }
    check_deadlines(l, now);
    if (l.ctx && l.state != link_state::connecting) flush_writes(l);
}

void redis_subscriber::feed_replies(std::string_view bytes, const std::vector<std::string>& channels) noexcept {
    node_link& l = *_links.front();
    l.state = link_state::live;
    l.fifo.clear();
    try {
        if (_history) l.fifo.push_back(command{command::marker, {_marker}, 0, 0});
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

// ---- link lifecycle -----------------------------------------------------------------

// Starts a non-blocking TCP connect; on_connected() continues once the socket is writable.
// Name resolution (a host name rather than an address) still happens synchronously here.
void redis_subscriber::start_connect(node_link& l, std::int64_t now) noexcept {
    const auto& ep = l.endpoint;
    l.attempt_started_ms = now;
    l.live_since_ms = 0;
    set_state(redis_status::connecting);
    l.ctx.reset(redisConnectNonBlock(ep.host.c_str(), ep.port));
    if (!l.ctx) {
        disconnect(l, "out of memory");
        return;
    }
    if (l.ctx->err) {
        disconnect(l, l.ctx->errstr);
        return;
    }
    tune_socket(l.ctx->fd);
    l.state = link_state::connecting;
}

void redis_subscriber::on_connected(node_link& l, std::int64_t now) noexcept {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(l.ctx->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
        disconnect(l, std::strerror(err));
        return;
    }
    const auto& ep = l.endpoint;
    if (ep.password.empty()) {
        go_live(l, now);
        return;
    }
    // AUTH is a command like any other: its answer is due within the reply timeout. A
    // frozen Redis completes the TCP handshake (the kernel does) and never answers it.
    l.state = link_state::authenticating;
    std::vector<std::string> args;
    if (!ep.user.empty()) args.push_back(ep.user);
    args.push_back(ep.password);
    send(l, command::auth, std::move(args), now);
}

// The link is usable: subscribe everything the shards want on it, then a PING whose
// answer marks the resubscription complete (Redis answers in order). The cluster's
// topology link reads the topology instead.
void redis_subscriber::go_live(node_link& l, std::int64_t now) noexcept {
    l.state = link_state::live;
    l.live_since_ms = now;
    l.next_ping_ms = now + limits::redis_ping_interval.count();
    l.failures = 0;
    if (l.kind == node_link::topology) {
        log::info("redis: reading the cluster's topology from {}", l.endpoint.display());
        send(l, command::cluster_shards, {}, now);
        _last_refresh_ms = now;
        return;
    }
    if (l.kind == node_link::role_check) {
        send(l, command::role, {}, now);
        return;
    }
    if (l.ever_live) _metrics.reconnects.bump();
    auto channels = _table.on_link_up(l.id);
    log::info("redis: {} {}{} ({} channels to subscribe)", l.ever_live ? "reconnected to" : "connected to",
              l.endpoint.display(), l.replica ? " (replica)" : "", channels.size());
    l.ever_live = true;
    l.resynced = false;
    set_state(redis_status::resubscribing);
    if (l.replica) send(l, command::readonly, {}, now);
    // With history, the marker channel first: batches of reads wait for it.
    if (_history) {
        history_link_up(channels);
        send(l, command::marker, {_marker}, now);
    }
    send_batched(l, command::subscribe, std::move(channels), now);
    send(l, command::resync_ping, {}, now);
}

void redis_subscriber::disconnect(node_link& l, std::string_view why) noexcept {
    std::int64_t now = monotonic_ms();
    bool was_live = l.live_since_ms != 0;
    if (was_live) {
        log::warn("redis: connection to {} lost: {}; reconnecting", l.endpoint.display(), why);
        if (!_topology_link) {
            // Every shard's channels are unsubscribed now: streams that start meanwhile wait.
            for (unsigned i = 0; i < _shards.size(); ++i)
                notify(shard_mask{1} << i, channel_notice::link_down, {});
        }
    }
    l.ctx.reset();
    l.state = link_state::down;
    l.write_pending = false;
    l.fifo.clear();
    l.resynced = false;
    l.resyncs_pending = 0;
    if (l.kind == node_link::role_check) {
        // Nobody can tell what the replica is doing: not fit to read from.
        if (l.owner) set_fit(*l.owner, false, "its ROLE check link was lost");
    } else if (l.kind == node_link::subscriber) {
        set_subscribed(l, 0);
        auto confirmed = _table.on_link_lost(l.id);
        if (_topology_link) {
            // Only this node's channels wait; a lost node may be failing over.
            for (const auto& [name, mask] : confirmed) notify(mask, channel_notice::unconfirmed, name);
            refresh_topology("a node's link was lost");
        }
        if (_history) history_link_lost();
    }
    set_state(redis_status::disconnected);
    // A link that lived a while is retried at once. One that died young, or never got
    // going (a Redis that accepts and then drops us: maxclients, protected mode, a
    // proxy, a bad password), keeps backing off with jitter, so that a fleet of servers
    // does not reconnect in lockstep.
    if (was_live && now - l.live_since_ms >= limits::redis_stable_link.count()) {
        l.backoff_ms = 0;
        l.next_attempt_ms = now;
    } else {
        thread_local std::minstd_rand rng{std::random_device{}()};
        l.backoff_ms = l.backoff_ms == 0
                           ? limits::redis_backoff_min.count()
                           : std::min<std::int64_t>(l.backoff_ms * 2, limits::redis_backoff_max.count());
        std::int64_t delay = l.backoff_ms + static_cast<std::int64_t>(rng() % (l.backoff_ms / 2 + 1));
        l.next_attempt_ms = now + delay;
        if (!was_live) {
            ++l.failures;
            if (l.failures == 1 || l.failures % 10 == 0)
                log::warn("redis: cannot connect to {}: {} (attempt {}, next in {} ms)",
                          l.endpoint.display(), why, l.failures, delay);
        }
    }
    l.live_since_ms = 0;
}

// Every step of a link must complete in time: the connect, then the oldest unanswered
// command (AUTH, a SUBSCRIBE, a PING). A link that misses its deadline is replaced.
void redis_subscriber::check_deadlines(node_link& l, std::int64_t now) noexcept {
    const std::int64_t limit = limits::redis_reply_timeout.count();
    if (l.state == link_state::connecting && now - l.attempt_started_ms > limit) {
        _metrics.link_timeouts.bump();
        disconnect(l, fmt::format("connect timed out after {} ms", limit));
    } else if (l.ctx && !l.fifo.empty() && now - l.fifo.front().sent_ms > limit) {
        _metrics.link_timeouts.bump();
        disconnect(l, fmt::format("no reply within {} ms", limit));
    }
}

// ---- commands -----------------------------------------------------------------------

void redis_subscriber::send(node_link& l, command::kind_t kind, std::vector<std::string> channels,
                            std::int64_t now) noexcept {
    if (!l.ctx) return;
    const bool sharded = _cfg.sharded_pubsub();
    std::string_view verb;
    std::string_view subverb;
    switch (kind) {
        case command::auth: verb = "AUTH"; break;
        case command::subscribe: verb = sharded ? "SSUBSCRIBE" : "SUBSCRIBE"; break;
        case command::marker: verb = "SUBSCRIBE"; break;
        case command::unsubscribe: verb = sharded ? "SUNSUBSCRIBE" : "UNSUBSCRIBE"; break;
        case command::ping:
        case command::resync_ping: verb = "PING"; break;
        case command::readonly: verb = "READONLY"; break;
        case command::role: verb = "ROLE"; break;
        case command::cluster_shards:
            verb = "CLUSTER";
            subverb = "SHARDS";
            break;
    }
    // The arguments as Redis sees them: channel names get the namespace, when there is one.
    const bool prefixed = !_cfg.namespace_prefix.empty() &&
                          (kind == command::subscribe || kind == command::unsubscribe);
    std::vector<std::string> full;
    if (prefixed) {
        full.reserve(channels.size());
        for (const auto& c : channels) full.push_back(_cfg.namespace_prefix + c);
    }
    const auto& args = prefixed ? full : channels;
    std::vector<const char*> argv{verb.data()};
    std::vector<std::size_t> lens{verb.size()};
    if (!subverb.empty()) {
        argv.push_back(subverb.data());
        lens.push_back(subverb.size());
    }
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(l.ctx.get(), static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
        disconnect(l, l.ctx->errstr);
        return;
    }
    // The FIFO keeps channel names only; AUTH's credentials are not kept.
    if (kind == command::auth) channels.clear();
    if (kind == command::resync_ping) {
        ++l.resyncs_pending;
        l.resynced = false;
    }
    l.fifo.push_back(command{kind, std::move(channels), 0, now});
    l.write_pending = true;
}

// SUBSCRIBE or UNSUBSCRIBE `channels` in commands of at most limits::redis_subscribe_batch.
// Sharded pub/sub takes one slot per command (else CROSSSLOT): channels are grouped by slot.
void redis_subscriber::send_batched(node_link& l, command::kind_t kind, std::vector<std::string> channels,
                                    std::int64_t now) noexcept {
    if (_cfg.sharded_pubsub()) {
        std::vector<std::pair<std::uint16_t, std::string>> by_slot;
        by_slot.reserve(channels.size());
        for (auto& c : channels) by_slot.emplace_back(key_slot(_cfg.namespace_prefix + c), std::move(c));
        std::sort(by_slot.begin(), by_slot.end());
        for (std::size_t i = 0; i < by_slot.size();) {
            std::vector<std::string> batch;
            const std::uint16_t slot = by_slot[i].first;
            for (; i < by_slot.size() && by_slot[i].first == slot && batch.size() < limits::redis_subscribe_batch; ++i)
                batch.push_back(std::move(by_slot[i].second));
            send(l, kind, std::move(batch), now);
        }
        return;
    }
    for (std::size_t i = 0; i < channels.size(); i += limits::redis_subscribe_batch) {
        auto end = std::min(channels.size(), i + limits::redis_subscribe_batch);
        send(l, kind,
             {std::make_move_iterator(channels.begin() + i), std::make_move_iterator(channels.begin() + end)},
             now);
    }
}

// Sends each channel's SUBSCRIBE or UNSUBSCRIBE on the link it lives on. An UNSUBSCRIBE
// for a link that is down is answered at once: nothing is subscribed there.
void redis_subscriber::send_on_links(command::kind_t kind, std::vector<std::string> channels,
                                     std::int64_t now) noexcept {
    if (channels.empty()) return;
    if (!_topology_link) {
        node_link& l = *_links.front();
        if (l.state == link_state::live) {
            send_batched(l, kind, std::move(channels), now);
        } else if (kind == command::unsubscribe) {
            for (const auto& c : channels) _table.on_unsubscribed(c);
        }
        return;
    }
    std::unordered_map<link_id, std::vector<std::string>> per_link;
    for (auto& c : channels) {
        const link_id id = _table.link_of(c);
        per_link[id].push_back(std::move(c));
    }
    for (auto& [id, names] : per_link) {
        node_link* l = find_link(id);
        if (l && l->state == link_state::live) {
            send_batched(*l, kind, std::move(names), now);
        } else if (kind == command::unsubscribe) {
            for (const auto& c : names) _table.on_unsubscribed(c, id);
        }
    }
}

// Writes what the socket takes now. The socket is non-blocking: the rest stays in
// hiredis' buffer and goes out when poll reports the socket writable.
void redis_subscriber::flush_writes(node_link& l) noexcept {
    int done = 0;
    if (redisBufferWrite(l.ctx.get(), &done) != REDIS_OK) {
        disconnect(l, l.ctx->errstr);
        return;
    }
    l.write_pending = !done;
}

// ---- replies ------------------------------------------------------------------------

void redis_subscriber::read_replies(node_link& l, std::int64_t now) noexcept {
    if (redisBufferRead(l.ctx.get()) != REDIS_OK) {
        disconnect(l, l.ctx->errstr[0] ? l.ctx->errstr : "connection closed");
        return;
    }
    while (l.ctx) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(l.ctx.get(), &raw) != REDIS_OK) {
            disconnect(l, "protocol error");
            return;
        }
        if (!raw) break;
        auto* reply = static_cast<redisReply*>(raw);
        handle_reply(l, *reply, now);
        freeReplyObject(reply);
    }
}

void redis_subscriber::handle_reply(node_link& l, const redisReply& r, std::int64_t now) noexcept {
    const bool triple = r.type == REDIS_REPLY_ARRAY && r.elements == 3 && is_string(*r.element[0]) &&
                        r.element[1]->type == REDIS_REPLY_STRING;
    // A message push is a reply no command asked for ("smessage" with sharded pub/sub).
    if (triple && r.element[2]->type == REDIS_REPLY_STRING && l.kind == node_link::subscriber &&
        str(*r.element[0]) == (_cfg.sharded_pubsub() ? "smessage" : "message")) {
        if (_history && str(*r.element[1]) == _marker) {
            on_marker(str(*r.element[2]));
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
                // History's reads can't be placed without it (see subscriber_history.cpp):
                // resumes are answered from memory or end with a retry; delivery goes on.
                log::warn("redis: SUBSCRIBE {} (history's marker) refused: {}; resuming from "
                          "Redis is off until it is allowed", _marker, str(r));
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
        case command::marker:
            if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || !is_string(*r.element[0]) ||
                str(*r.element[0]) != "subscribe") {
                disconnect(l, "unexpected reply to SUBSCRIBE");
                return;
            }
            l.fifo.pop_front();
            _marker_ready = true;
            return;
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
    if (mask == 0 && !(_history && _windows->find(channel))) {  // the last subscriber left meanwhile
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

void redis_subscriber::wait_for_events(std::int64_t timeout_ms) noexcept {
    // The wake eventfd, then each link with a connection (the topology link last).
    // Members, so that a turn allocates nothing once they have grown.
    auto& polled = _polled;
    auto& fds = _pollfds;
    polled.clear();
    fds.clear();
    for (auto& l : _links) {
        if (l->ctx) polled.push_back(l.get());
        if (l->checker && l->checker->ctx) polled.push_back(l->checker.get());
    }
    if (_topology_link && _topology_link->ctx) polled.push_back(_topology_link.get());
    fds.push_back({_wake.eventfd, POLLIN, 0});
    for (node_link* l : polled) {
        short want = POLLIN;
        if (l->state == link_state::connecting || l->write_pending) want |= POLLOUT;
        fds.push_back({l->ctx->fd, want, 0});
    }
    // Raise the flag, then look at the queues once more: a shard that pushes after this
    // look sees the flag and writes the eventfd.
    _wake.flag.set_sleeping();
    bool queued = false;
    for (auto& s : _shards) queued |= !s.from_shard.empty() || (s.resumes && !s.resumes->empty());
    if (_history) queued |= !_history->results.empty();
    if (queued || _stop.load(std::memory_order_acquire)) {
        _wake.flag.clear();
        return;
    }
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(timeout_ms));
    _wake.flag.clear();
    if (n <= 0) return;
    if (fds[0].revents & POLLIN) {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(_wake.eventfd, &v, sizeof v);
    }
    // Handling one link's replies may remove no link (links are removed only when a
    // topology is applied, from the topology link, polled last) but may drop connections.
    std::int64_t now = monotonic_ms();
    for (std::size_t i = 0; i < polled.size(); ++i) {
        node_link& l = *polled[i];
        const short ev = fds[i + 1].revents;
        if (!l.ctx || l.ctx->fd != fds[i + 1].fd) continue;  // dropped meanwhile
        if (l.state == link_state::connecting) {
            if (ev & (POLLOUT | POLLERR | POLLHUP)) on_connected(l, now);
            continue;
        }
        if (ev & (POLLIN | POLLHUP | POLLERR)) read_replies(l, now);
        if (l.ctx && (ev & POLLOUT)) flush_writes(l);
    }
    wake_shards();
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

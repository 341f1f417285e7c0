// The redis thread's connections to Redis (see redis_subscriber.h): each link's
// non-blocking connect, AUTH and READONLY, its deadlines and reconnect backoff, the
// commands it writes and the replies it reads, and the poll that waits on all of them.
// What the replies mean is redis_subscriber.cpp's business.
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <unordered_map>

#include "core/clock.h"
#include "core/log.h"
#include "redis/redis_subscriber.h"

namespace jugglite {

namespace {

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
    // With history, the marker channel first: batches of reads wait for it. On a cluster
    // each slot's marker is subscribed when a read in that slot first needs it.
    if (_history) {
        history_link_up();
        if (!_topology_link) {
            try {
                l.markers.emplace(0, false);
                send(l, command::marker, {_marker}, now);
            } catch (const std::bad_alloc&) {  // resumes are answered from memory only
            }
        }
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
    l.markers.clear();
    if (l.kind == node_link::role_check) {
        // Nobody can tell what the replica is doing: not fit to read from.
        if (l.owner) set_fit(*l.owner, false, "its ROLE check link was lost");
    } else if (l.kind == node_link::subscriber) {
        set_subscribed(l, 0);
        std::vector<std::string> forgotten;
        std::vector<std::pair<std::string, shard_mask>> confirmed;
        try {
            confirmed = _table.on_link_lost(l.id, _history ? &forgotten : nullptr);
        } catch (const std::bad_alloc&) {  // a name that could not be listed
            if (_history) history_link_lost();  // then every window catches up
        }
        if (_topology_link) {
            // Only this node's channels wait (a lost node may be failing over), and only
            // their history windows may have missed messages. Those of channels no stream
            // wants any more go with them.
            for (const auto& [name, mask] : confirmed) {
                notify(mask, channel_notice::unconfirmed, name);
                if (_history) history_missed(name);
            }
            if (_history)
                for (const auto& name : forgotten) _windows->forget(name);
            refresh_topology("a node's link was lost");
        } else if (_history) {
            history_link_lost();
        }
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
        case command::marker: verb = sharded ? "SSUBSCRIBE" : "SUBSCRIBE"; break;
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

}  // namespace jugglite

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
        if (_link == link_state::down && now >= _next_attempt_ms) start_connect(now);
        flush_notices();
        drain_control(now);
        if (_link == link_state::live) {
            auto gone = _table.expire(now);
            if (_history) history_unsubscribed(gone);
            send_batched(command::unsubscribe, std::move(gone), now);
            if (now >= _next_ping_ms) {
                send(command::ping, {}, now);
                _next_ping_ms = now + limits::redis_ping_interval.count();
            }
        }
        if (_history) history_turn(now);
        check_deadlines(now);
        if (_ctx && _link != link_state::connecting) flush_writes();
        _status.channels.store(static_cast<std::uint32_t>(_table.size()), std::memory_order_relaxed);
        wake_shards();
        std::int64_t timeout = 250;
        if (_link == link_state::down) timeout = std::clamp<std::int64_t>(_next_attempt_ms - now, 1, 250);
        wait_for_events(timeout);
    }
    set_state(redis_status::disconnected);
    _ctx.reset();
    log::info("redis: subscriber stopped");
}

void redis_subscriber::feed_replies(std::string_view bytes, const std::vector<std::string>& channels) noexcept {
    _link = link_state::live;
    _fifo.clear();
    try {
        if (_history) _fifo.push_back(command{command::marker, {_marker}, 0, 0});
        for (std::size_t i = 0; i < channels.size(); ++i) {
            if (_table.want(channels[i], static_cast<unsigned>(i % _shards.size()), true) ==
                subscription_table::want_result::subscribe)
                _fifo.push_back(command{command::subscribe, {channels[i]}, 0, 0});
        }
    } catch (const std::bad_alloc&) {
        return;
    }
    redisReader* reader = redisReaderCreate();
    if (!reader) return;
    if (redisReaderFeed(reader, bytes.data(), bytes.size()) == REDIS_OK) {
        while (_link == link_state::live) {
            void* raw = nullptr;
            if (redisReaderGetReply(reader, &raw) != REDIS_OK || !raw) break;
            handle_reply(*static_cast<redisReply*>(raw), 0);
            freeReplyObject(raw);
        }
    }
    redisReaderFree(reader);
}

// ---- link lifecycle -----------------------------------------------------------------

// Starts a non-blocking TCP connect; on_connected() continues once the socket is writable.
// Name resolution (a host name rather than an address) still happens synchronously here.
void redis_subscriber::start_connect(std::int64_t now) noexcept {
    const auto& ep = _cfg.redis;
    _attempt_started_ms = now;
    _live_since_ms = 0;
    set_state(redis_status::connecting);
    _ctx.reset(redisConnectNonBlock(ep.host.c_str(), ep.port));
    if (!_ctx) {
        disconnect("out of memory");
        return;
    }
    if (_ctx->err) {
        disconnect(_ctx->errstr);
        return;
    }
    tune_socket(_ctx->fd);
    _link = link_state::connecting;
}

void redis_subscriber::on_connected(std::int64_t now) noexcept {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(_ctx->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
        disconnect(std::strerror(err));
        return;
    }
    const auto& ep = _cfg.redis;
    if (ep.password.empty()) {
        go_live(now);
        return;
    }
    // AUTH is a command like any other: its answer is due within the reply timeout. A
    // frozen Redis completes the TCP handshake (the kernel does) and never answers it.
    _link = link_state::authenticating;
    std::vector<std::string> args;
    if (!ep.user.empty()) args.push_back(ep.user);
    args.push_back(ep.password);
    send(command::auth, std::move(args), now);
}

// The link is usable: subscribe everything the shards want, then a PING whose answer
// marks the resubscription complete (Redis answers in order).
void redis_subscriber::go_live(std::int64_t now) noexcept {
    _link = link_state::live;
    _live_since_ms = now;
    _next_ping_ms = now + limits::redis_ping_interval.count();
    if (_ever_live) _metrics.reconnects.bump();
    auto channels = _table.on_link_up();
    log::info("redis: {} {} ({} channels to subscribe)", _ever_live ? "reconnected to" : "connected to",
              _cfg.redis.display(), channels.size());
    _ever_live = true;
    _failures = 0;
    set_state(redis_status::resubscribing);
    // With history, the marker channel first: batches of reads wait for it.
    if (_history) {
        history_link_up(channels);
        send(command::marker, {_marker}, now);
    }
    send_batched(command::subscribe, std::move(channels), now);
    send(command::resync_ping, {}, now);
}

void redis_subscriber::disconnect(std::string_view why) noexcept {
    std::int64_t now = monotonic_ms();
    bool was_live = _live_since_ms != 0;
    if (was_live) {
        log::warn("redis: connection to {} lost: {}; reconnecting", _cfg.redis.display(), why);
        _metrics.subscribed_channels.set(0);
        // Every shard's channels are unsubscribed now: streams that start meanwhile wait.
        for (unsigned i = 0; i < _shards.size(); ++i)
            notify(shard_mask{1} << i, channel_notice::link_down, {});
    }
    _ctx.reset();
    _link = link_state::down;
    _write_pending = false;
    _fifo.clear();
    _table.on_link_lost();
    if (_history) history_link_lost();
    set_state(redis_status::disconnected);
    // A link that lived a while is retried at once. One that died young, or never got
    // going (a Redis that accepts and then drops us: maxclients, protected mode, a
    // proxy, a bad password), keeps backing off with jitter, so that a fleet of servers
    // does not reconnect in lockstep.
    if (was_live && now - _live_since_ms >= limits::redis_stable_link.count()) {
        _backoff_ms = 0;
        _next_attempt_ms = now;
    } else {
        thread_local std::minstd_rand rng{std::random_device{}()};
        _backoff_ms = _backoff_ms == 0
                          ? limits::redis_backoff_min.count()
                          : std::min<std::int64_t>(_backoff_ms * 2, limits::redis_backoff_max.count());
        std::int64_t delay = _backoff_ms + static_cast<std::int64_t>(rng() % (_backoff_ms / 2 + 1));
        _next_attempt_ms = now + delay;
        if (!was_live) {
            ++_failures;
            if (_failures == 1 || _failures % 10 == 0)
                log::warn("redis: cannot connect to {}: {} (attempt {}, next in {} ms)",
                          _cfg.redis.display(), why, _failures, delay);
        }
    }
    _live_since_ms = 0;
}

// Every step of the link must complete in time: the connect, then the oldest unanswered
// command (AUTH, a SUBSCRIBE, a PING). A link that misses its deadline is replaced.
void redis_subscriber::check_deadlines(std::int64_t now) noexcept {
    const std::int64_t limit = limits::redis_reply_timeout.count();
    if (_link == link_state::connecting && now - _attempt_started_ms > limit) {
        _metrics.link_timeouts.bump();
        disconnect(fmt::format("connect timed out after {} ms", limit));
    } else if (_ctx && !_fifo.empty() && now - _fifo.front().sent_ms > limit) {
        _metrics.link_timeouts.bump();
        disconnect(fmt::format("no reply within {} ms", limit));
    }
}

// ---- commands -----------------------------------------------------------------------

void redis_subscriber::send(command::kind_t kind, std::vector<std::string> channels,
                            std::int64_t now) noexcept {
    if (!_ctx) return;
    std::string_view verb;
    switch (kind) {
        case command::auth: verb = "AUTH"; break;
        case command::subscribe:
        case command::marker: verb = "SUBSCRIBE"; break;
        case command::unsubscribe: verb = "UNSUBSCRIBE"; break;
        case command::ping:
        case command::resync_ping: verb = "PING"; break;
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
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(_ctx.get(), static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
        disconnect(_ctx->errstr);
        return;
    }
    // The FIFO keeps channel names only; AUTH's credentials are not kept.
    if (kind == command::auth) channels.clear();
    _fifo.push_back(command{kind, std::move(channels), 0, now});
    _write_pending = true;
}

// SUBSCRIBE or UNSUBSCRIBE `channels` in commands of at most limits::redis_subscribe_batch.
void redis_subscriber::send_batched(command::kind_t kind, std::vector<std::string> channels,
                                    std::int64_t now) noexcept {
    for (std::size_t i = 0; i < channels.size(); i += limits::redis_subscribe_batch) {
        auto end = std::min(channels.size(), i + limits::redis_subscribe_batch);
        send(kind,
             {std::make_move_iterator(channels.begin() + i), std::make_move_iterator(channels.begin() + end)},
             now);
    }
}

// Writes what the socket takes now. The socket is non-blocking: the rest stays in
// hiredis' buffer and goes out when poll reports the socket writable.
void redis_subscriber::flush_writes() noexcept {
    int done = 0;
    if (redisBufferWrite(_ctx.get(), &done) != REDIS_OK) {
        disconnect(_ctx->errstr);
        return;
    }
    _write_pending = !done;
}

// ---- replies ------------------------------------------------------------------------

void redis_subscriber::read_replies(std::int64_t now) noexcept {
    if (redisBufferRead(_ctx.get()) != REDIS_OK) {
        disconnect(_ctx->errstr[0] ? _ctx->errstr : "connection closed");
        return;
    }
    while (_ctx) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(_ctx.get(), &raw) != REDIS_OK) {
            disconnect("protocol error");
            return;
        }
        if (!raw) break;
        auto* reply = static_cast<redisReply*>(raw);
        handle_reply(*reply, now);
        freeReplyObject(reply);
    }
}

void redis_subscriber::handle_reply(const redisReply& r, std::int64_t now) noexcept {
    // A message push is the only reply no command asked for.
    if (r.type == REDIS_REPLY_ARRAY && r.elements == 3 && is_string(*r.element[0]) &&
        str(*r.element[0]) == "message" && r.element[1]->type == REDIS_REPLY_STRING &&
        r.element[2]->type == REDIS_REPLY_STRING) {
        if (_history && str(*r.element[1]) == _marker) {
            on_marker(str(*r.element[2]));
            return;
        }
        _metrics.messages_in.bump();
        route(str(*r.element[1]), str(*r.element[2]));
        return;
    }
    if (_fifo.empty()) {
        disconnect("a reply that no command asked for");
        return;
    }
    answer_front(r, now);
}

// Matches `r` with the oldest unanswered command.
void redis_subscriber::answer_front(const redisReply& r, std::int64_t now) noexcept {
    command& cmd = _fifo.front();
    if (r.type == REDIS_REPLY_ERROR) {
        command failed = std::move(cmd);
        _fifo.pop_front();
        switch (failed.kind) {
            case command::auth:
                disconnect(fmt::format("AUTH failed: {}", str(r)));
                return;
            case command::marker:
                // History's reads can't be placed without it (see subscriber_history.cpp):
                // resumes are answered from memory or end with a retry; delivery goes on.
                log::warn("redis: SUBSCRIBE {} (history's marker) refused: {}; resuming from "
                          "Redis is off until it is allowed", _marker, str(r));
                return;
            case command::subscribe:
                if (failed.channels.size() > 1) {
                    // One forbidden channel fails the whole command and the error names
                    // none of them: ask again one channel at a time.
                    std::vector<std::string> retry;
                    for (std::size_t i = failed.answered; i < failed.channels.size(); ++i)
                        if (_table.on_batch_refused(failed.channels[i])) retry.push_back(failed.channels[i]);
                    for (auto& c : retry) send(command::subscribe, {std::move(c)}, now);
                } else if (!failed.channels.empty()) {
                    const std::string& name = failed.channels.front();
                    _metrics.channels_refused.bump();
                    log::warn(_refused_log, now, "redis: SUBSCRIBE {}{} refused: {}", _cfg.namespace_prefix,
                              name, str(r));
                    notify(_table.on_refused(name), channel_notice::forbidden, name);
                }
                return;
            default:
                // UNSUBSCRIBE and PING don't fail on a working link.
                disconnect(fmt::format("unexpected error reply: {}", str(r)));
                return;
        }
    }
    switch (cmd.kind) {
        case command::auth:
            if (r.type != REDIS_REPLY_STATUS) {
                disconnect("unexpected reply to AUTH");
                return;
            }
            _fifo.pop_front();
            go_live(now);
            return;
        case command::ping:
        case command::resync_ping: {
            // ["pong", ""] in subscribed mode, +PONG before the first SUBSCRIBE.
            bool pong = (r.type == REDIS_REPLY_STATUS && str(r) == "PONG") ||
                        (r.type == REDIS_REPLY_ARRAY && r.elements >= 1 && is_string(*r.element[0]) &&
                         str(*r.element[0]) == "pong");
            if (!pong) {
                disconnect("unexpected reply to PING");
                return;
            }
            bool resynced = cmd.kind == command::resync_ping;
            _fifo.pop_front();
            if (resynced) {
                set_state(redis_status::ready);
                log::info("redis: subscribed to {} channels", _metrics.subscribed_channels.get());
            }
            return;
        }
        case command::marker:
            if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || !is_string(*r.element[0]) ||
                str(*r.element[0]) != "subscribe") {
                disconnect("unexpected reply to SUBSCRIBE");
                return;
            }
            _fifo.pop_front();
            _marker_ready = true;
            return;
        case command::subscribe:
        case command::unsubscribe: {
            std::string_view kind = cmd.kind == command::subscribe ? "subscribe" : "unsubscribe";
            if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 || !is_string(*r.element[0]) ||
                str(*r.element[0]) != kind || r.element[1]->type != REDIS_REPLY_STRING) {
                disconnect(fmt::format("unexpected reply to {}", kind));
                return;
            }
            if (r.element[2]->type == REDIS_REPLY_INTEGER)
                _metrics.subscribed_channels.set(static_cast<std::uint64_t>(r.element[2]->integer));
            const std::string& name = cmd.channels[cmd.answered];
            if (cmd.kind == command::subscribe) {
                if (_history) history_subscribed(name, now);
                notify(_table.on_subscribed(name), channel_notice::ready, name);
            } else
                _table.on_unsubscribed(name);
            if (++cmd.answered == cmd.channels.size()) _fifo.pop_front();
            return;
        }
    }
}

void redis_subscriber::route(std::string_view channel, std::string_view payload) noexcept {
    if (!channel.starts_with(_cfg.namespace_prefix)) {
        _metrics.messages_unrouted.bump();
        return;
    }
    channel.remove_prefix(_cfg.namespace_prefix.size());
    // A channel in its unsubscribe grace has no shard to deliver to, but its history window
    // must see every message, or a client back within the grace would be answered from a
    // window that lacks it.
    const shard_mask mask = _table.shards_for(channel);
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
    const bool live = _link == link_state::live;
    for (unsigned i = 0; i < _shards.size(); ++i) {
        while (auto m = _shards[i].from_shard.try_pop()) {
            if (m->kind == control_message::unsubscribe) {
                _table.unwant(m->channel, i, now);
                continue;
            }
            switch (_table.want(m->channel, i, live)) {
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
    send_batched(command::subscribe, std::move(to_subscribe), now);
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
    short want = POLLIN;
    if (_ctx && (_link == link_state::connecting || _write_pending)) want |= POLLOUT;
    pollfd fds[2] = {{_wake.eventfd, POLLIN, 0}, {_ctx ? _ctx->fd : -1, want, 0}};
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
    int n = ::poll(fds, 2, static_cast<int>(timeout_ms));
    _wake.flag.clear();
    if (n <= 0) return;
    if (fds[0].revents & POLLIN) {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(_wake.eventfd, &v, sizeof v);
    }
    if (!_ctx) return;
    std::int64_t now = monotonic_ms();
    if (_link == link_state::connecting) {
        if (fds[1].revents & (POLLOUT | POLLERR | POLLHUP)) on_connected(now);
        return;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) read_replies(now);
    if (_ctx && (fds[1].revents & POLLOUT)) flush_writes();
    wake_shards();
}

void redis_subscriber::set_state(redis_status::state_t s) noexcept {
    _status.state.store(s, std::memory_order_relaxed);
}

}  // namespace jugglite

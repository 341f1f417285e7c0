#include "redis/redis_subscriber.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>

#include "core/log.h"
#include "core/sse_frame.h"

namespace jugglite {

namespace {

std::int64_t monotonic_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

timeval to_timeval(std::chrono::milliseconds ms) {
    return {static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

std::string_view str(const redisReply& r) { return {r.str, static_cast<std::size_t>(r.len)}; }

}  // namespace

void redis_subscriber::context_deleter::operator()(redisContext* c) const noexcept { redisFree(c); }

redis_subscriber::redis_subscriber(const config& cfg, std::span<shard_link> shards, redis_wakeup& wake,
                       std::atomic<bool>& stop, std::atomic<bool>& healthy,
                       redis_metrics& metrics)
    : _cfg(cfg), _shards(shards), _wake(wake), _stop(stop), _healthy(healthy), _metrics(metrics) {}

redis_subscriber::~redis_subscriber() = default;

void redis_subscriber::run() noexcept {
    while (!_stop.load(std::memory_order_acquire)) {
        std::int64_t now = monotonic_ms();
        if (!_ctx && now >= _next_attempt_ms) try_connect();
        drain_control();
        if (_ctx) sync_subscriptions();
        if (_ctx && _write_pending) flush_writes();
        std::int64_t timeout = _ctx ? 1000 : std::max<std::int64_t>(1, _next_attempt_ms - monotonic_ms());
        wait_for_events(std::min<std::int64_t>(timeout, 1000));
    }
    _healthy.store(false);
    _ctx.reset();
    log::info("redis: subscriber stopped");
}

void redis_subscriber::try_connect() noexcept {
    const auto& ep = _cfg.redis;
    redisContext* raw =
        redisConnectWithTimeout(ep.host.c_str(), ep.port, to_timeval(limits::redis_connect_timeout));
    context_ptr ctx(raw);
    std::string error;
    if (!ctx) {
        error = "out of memory";
    } else if (ctx->err) {
        error = ctx->errstr;
    } else {
        // Writes (SUBSCRIBE batches) must not hang the thread forever on a dead peer.
        redisSetTimeout(ctx.get(), to_timeval(limits::redis_connect_timeout * 5));
        if (!ep.password.empty()) {
            auto* reply = static_cast<redisReply*>(
                ep.user.empty()
                    ? redisCommand(ctx.get(), "AUTH %b", ep.password.data(), ep.password.size())
                    : redisCommand(ctx.get(), "AUTH %b %b", ep.user.data(), ep.user.size(),
                                   ep.password.data(), ep.password.size()));
            if (!reply) {
                error = ctx->errstr;
            } else {
                if (reply->type == REDIS_REPLY_ERROR) error = "AUTH failed: " + std::string(str(*reply));
                freeReplyObject(reply);
            }
        }
    }
    if (!error.empty()) {
        ++_failures;
        // Capped exponential backoff with jitter, so a fleet of servers does not reconnect
        // in lockstep after a Redis restart.
        thread_local std::minstd_rand rng{std::random_device{}()};
        _backoff_ms = _backoff_ms == 0
                          ? limits::redis_backoff_min.count()
                          : std::min<std::int64_t>(_backoff_ms * 2, limits::redis_backoff_max.count());
        std::int64_t delay = _backoff_ms + static_cast<std::int64_t>(rng() % (_backoff_ms / 2 + 1));
        _next_attempt_ms = monotonic_ms() + delay;
        if (_failures == 1 || _failures % 10 == 0)
            log::warn("redis: cannot connect to {}: {} (attempt {}, next in {} ms)", ep.display(),
                      error, _failures, delay);
        return;
    }
    _ctx = std::move(ctx);
    if (_ever_connected) _metrics.reconnects.bump();
    log::info("redis: {} {} ({} channels to subscribe)", _ever_connected ? "reconnected to" : "connected to",
              ep.display(), _interest.size());
    _ever_connected = true;
    _failures = 0;
    _connected_at_ms = monotonic_ms();
    _subscribed.clear();
    // Re-subscribe everything that still has subscribers; /healthz turns ok once Redis has
    // acknowledged each of those channels (see sync_subscriptions and handle_reply).
    _touched = _interest.channels();
    _resyncing = true;
    _awaiting.clear();
}

void redis_subscriber::disconnect(std::string_view why) noexcept {
    log::warn("redis: connection to {} lost: {}; reconnecting", _cfg.redis.display(), why);
    _ctx.reset();
    _healthy.store(false);
    _subscribed.clear();
    _awaiting.clear();
    _touched.clear();  // try_connect re-seeds it from the interest table
    _metrics.subscribed_channels.set(0);
    _write_pending = false;
    // A link that lived a while is retried at once. One that died young (a Redis that
    // accepts and then drops us: maxclients, protected mode, a proxy) keeps backing off,
    // so that it can't turn into a reconnect loop.
    std::int64_t now = monotonic_ms();
    if (now - _connected_at_ms >= limits::redis_stable_link.count()) {
        _backoff_ms = 0;
        _next_attempt_ms = now;
    } else {
        _backoff_ms = std::min<std::int64_t>(std::max<std::int64_t>(_backoff_ms * 2, limits::redis_backoff_min.count()),
                                             limits::redis_backoff_max.count());
        _next_attempt_ms = now + _backoff_ms;
    }
}

void redis_subscriber::drain_control() noexcept {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        while (auto m = _shards[i].from_shard.try_pop()) {
            if (m->kind == control_message::subscribe)
                (void)_interest.add(m->channel, i);
            else
                (void)_interest.remove(m->channel, i);
            // While disconnected there is nothing to sync: try_connect re-seeds from _interest.
            if (_ctx) _touched.push_back(std::move(m->channel));
        }
    }
}

// Brings Redis' subscriptions in line with the interest table for every channel touched
// since the last call. Comparing end states (rather than replaying each report) keeps a
// quick unsubscribe/subscribe pair from ending in the wrong state.
void redis_subscriber::sync_subscriptions() noexcept {
    if (_touched.empty() && !_resyncing) return;
    std::vector<std::string> sub, unsub;
    for (auto& name : _touched) {
        std::string full = _cfg.namespace_prefix + name;
        bool wanted = _interest.shards_for(name) != 0;
        bool told = _subscribed.contains(full);
        if (wanted && !told) {
            _subscribed.insert(full);
            sub.push_back(std::move(full));
        } else if (!wanted && told) {
            _subscribed.erase(full);
            unsub.push_back(std::move(full));
        }
    }
    _touched.clear();
    for (const auto& full : unsub) _awaiting.erase(full);
    if (_resyncing) {
        // The first sync after a (re)connect: healthy once Redis confirms each of these.
        _resyncing = false;
        _awaiting.insert(sub.begin(), sub.end());
        if (_awaiting.empty()) mark_healthy();
    }
    if (!sub.empty()) send_command("SUBSCRIBE", sub);
    if (!unsub.empty()) send_command("UNSUBSCRIBE", unsub);
}

void redis_subscriber::mark_healthy() noexcept {
    if (_healthy.exchange(true)) return;
    log::info("redis: subscribed to {} channels", _subscribed.size());
}

void redis_subscriber::send_command(std::string_view verb, const std::vector<std::string>& channels) noexcept {
    if (!_ctx) return;  // an earlier command in this round already lost the connection
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.push_back(verb.data());
    lens.push_back(verb.size());
    for (const auto& c : channels) {
        argv.push_back(c.data());
        lens.push_back(c.size());
    }
    if (redisAppendCommandArgv(_ctx.get(), static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
        disconnect(_ctx->errstr);
        return;
    }
    _write_pending = true;
}

void redis_subscriber::flush_writes() noexcept {
    int done = 0;
    while (!done) {
        if (redisBufferWrite(_ctx.get(), &done) != REDIS_OK) {
            disconnect(_ctx->errstr);
            return;
        }
    }
    _write_pending = false;
}

void redis_subscriber::wait_for_events(std::int64_t timeout_ms) noexcept {
    pollfd fds[2] = {{_wake.eventfd, POLLIN, 0}, {_ctx ? _ctx->fd : -1, POLLIN, 0}};
    // Raise the flag, then look at the queues once more: a shard that pushes after this
    // look sees the flag and writes the eventfd.
    _wake.flag.set_sleeping();
    bool queued = false;
    for (auto& s : _shards) queued |= !s.from_shard.empty();
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
    if (_ctx && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) read_replies();
}

void redis_subscriber::read_replies() noexcept {
    if (redisBufferRead(_ctx.get()) != REDIS_OK) {
        disconnect(_ctx->errstr);
        return;
    }
    while (_ctx) {
        void* raw = nullptr;
        if (redisReaderGetReply(_ctx->reader, &raw) != REDIS_OK) {
            disconnect("protocol error");
            return;
        }
        if (!raw) break;
        auto* reply = static_cast<redisReply*>(raw);
        handle_reply(*reply);
        freeReplyObject(reply);
    }
    wake_shards();
}

void redis_subscriber::handle_reply(const redisReply& r) noexcept {
    if (r.type == REDIS_REPLY_ERROR) {
        log::error("redis: error reply: {}", str(r));
        return;
    }
    if (r.type != REDIS_REPLY_ARRAY || r.elements < 3 || r.element[0]->type != REDIS_REPLY_STRING)
        return;
    std::string_view kind = str(*r.element[0]);
    if (kind == "message" && r.element[1]->type == REDIS_REPLY_STRING &&
        r.element[2]->type == REDIS_REPLY_STRING) {
        _metrics.messages_in.bump();
        route(str(*r.element[1]), str(*r.element[2]));
    } else if (kind == "subscribe" || kind == "unsubscribe") {
        if (r.element[2]->type == REDIS_REPLY_INTEGER)
            _metrics.subscribed_channels.set(static_cast<std::uint64_t>(r.element[2]->integer));
        if (kind == "subscribe" && !_awaiting.empty() && r.element[1]->type == REDIS_REPLY_STRING) {
            std::string_view name = str(*r.element[1]);
            if (auto it = _awaiting.find(name); it != _awaiting.end()) _awaiting.erase(it);
            if (_awaiting.empty()) mark_healthy();
        }
    }
}

void redis_subscriber::route(std::string_view channel, std::string_view payload) noexcept {
    if (!channel.starts_with(_cfg.namespace_prefix)) {
        _metrics.messages_unrouted.bump();
        return;
    }
    channel.remove_prefix(_cfg.namespace_prefix.size());
    std::uint64_t mask = _interest.shards_for(channel);
    if (mask == 0) {  // the last subscriber left while this message was on its way
        _metrics.messages_unrouted.bump();
        return;
    }
    try {
        frame_ref f = frame_ref::make(build_sse_frame(payload), ++_seq);
        for (unsigned i = 0; i < _shards.size(); ++i) {
            if (!(mask & (std::uint64_t{1} << i))) continue;
            if (!_shards[i].to_shard.try_push(shard_message{f, std::string(channel)})) {
                _metrics.messages_dropped_full.bump();
                std::int64_t now = monotonic_ms();
                if (now - _last_drop_log_ms > 1000) {
                    _last_drop_log_ms = now;
                    log::warn("redis: shard {} queue full, dropping messages (dropped so far: {})",
                              i, _metrics.messages_dropped_full.get());
                }
                continue;
            }
            _shards_to_wake |= std::uint64_t{1} << i;
        }
    } catch (const std::bad_alloc&) {
        _metrics.messages_dropped_full.bump();
    }
}

void redis_subscriber::wake_shards() noexcept {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        if (!(_shards_to_wake & (std::uint64_t{1} << i))) continue;
        if (_shards[i].shard_wake.should_wake()) {
            std::uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(_shards[i].shard_eventfd, &one, sizeof one);
        }
    }
    _shards_to_wake = 0;
}

}  // namespace jugglite

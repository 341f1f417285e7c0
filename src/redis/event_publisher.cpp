#include "redis/event_publisher.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/connection_event.h"
#include "core/limits.h"
#include "core/log.h"
#include "redis/blocking_connect.h"

namespace jugglite {

namespace {

// Records taken from one shard per loop turn.
constexpr unsigned records_per_turn = 4096;

}  // namespace

event_publisher::event_publisher(const config& cfg, std::span<shard_link> shards,
                                 thread_wakeup& wake, std::atomic<bool>& stop,
                                 event_metrics& metrics, std::span<const shard_metrics> streams)
    : _cfg(cfg), _shards(shards), _wake(wake), _stop(stop), _metrics(metrics), _streams(streams) {}

event_publisher::~event_publisher() = default;

void event_publisher::run() noexcept {
    std::int64_t final_deadline = 0;
    while (true) {
        std::int64_t now = monotonic_ms();
        const bool stopping = _stop.load(std::memory_order_acquire);
        if (stopping && final_deadline == 0) final_deadline = now + limits::events_final_flush.count();
        if (!_ctx && now >= _next_attempt_ms) connect(now);
        std::size_t taken = take(now);
        if (_ctx) write_and_read(now);
        if (stopping) {
            bool queued = false;
            for (auto& link : _shards) queued |= !link.events->empty();
            if ((!queued && _unanswered == 0) || !_ctx || now >= final_deadline) break;
        }
        if (taken == 0) sleep(stopping ? 10 : 100);
    }
    log::info("events: stopped ({} published)", _metrics.published.get());
}

// A blocking connection whose reads and writes time out after 1 s. On a cluster, to one
// seed after the other: a PUBLISH on any node reaches SUBSCRIBErs on every node.
void event_publisher::connect(std::int64_t now) noexcept {
    const auto& ep = _cfg.cluster() ? _cfg.cluster_seeds[_next_seed++ % _cfg.cluster_seeds.size()] : _cfg.redis;
    auto ctx = blocking_connect(ep, std::chrono::milliseconds(1000), false);
    if (!ctx) {
        disconnect(ctx.error().c_str(), now);
        return;
    }
    _ctx = std::move(*ctx);
    _unanswered = 0;
    _progress_ms = now;
    log::info("events: publishing to {} on {}", _cfg.events_channel, ep.display());
}

void event_publisher::disconnect(const char* why, std::int64_t now) noexcept {
    log::warn(_link_log, now, "events: redis link lost ({}); events are dropped until it is back", why);
    if (_ctx) _metrics.link_errors.bump();
    // Records written but not answered may or may not have been published: not counted.
    _ctx.reset();
    _unanswered = 0;
    _next_attempt_ms = now + limits::redis_backoff_max.count() / 5;
}

std::size_t event_publisher::take(std::int64_t now) noexcept {
    std::size_t n = 0;
    if (now >= _next_heartbeat_ms) {
        _next_heartbeat_ms = now + std::chrono::milliseconds(_cfg.events_heartbeat).count();
        std::uint64_t streams = 0;
        for (const auto& m : _streams) streams += m.conns_open.get();
        try {
            append(node_event(_cfg.node_name, streams, unix_ms()));
        } catch (const std::bad_alloc&) {
        }
        ++n;
    }
    for (auto& link : _shards) {
        for (unsigned i = 0; i < records_per_turn; ++i) {
            auto record = link.events->try_pop();
            if (!record) break;
            append(*record);
            ++n;
        }
    }
    return n;
}

void event_publisher::append(std::string_view record) noexcept {
    if (!_ctx) {
        _metrics.dropped_redis_down.bump();
        return;
    }
    if (_unanswered >= limits::events_max_unanswered) {
        _metrics.dropped_backlog.bump();
        return;
    }
    const std::string& channel = _cfg.events_channel;
    if (redisAppendCommand(_ctx.get(), "PUBLISH %b %b", channel.data(), channel.size(),
                           record.data(), record.size()) != REDIS_OK) {
        _metrics.dropped_backlog.bump();
        return;
    }
    ++_unanswered;
}

// Writes what is appended, then reads the replies that have arrived without waiting.
void event_publisher::write_and_read(std::int64_t now) noexcept {
    int done = 0;
    while (!done) {
        if (redisBufferWrite(_ctx.get(), &done) != REDIS_OK) {
            disconnect(_ctx->errstr, now);
            return;
        }
    }
    while (_unanswered > 0) {
        pollfd p{_ctx->fd, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) break;
        if (redisBufferRead(_ctx.get()) != REDIS_OK) {
            disconnect(_ctx->errstr, now);
            return;
        }
        void* reply = nullptr;
        while (_unanswered > 0 && redisGetReplyFromReader(_ctx.get(), &reply) == REDIS_OK && reply) {
            auto* r = static_cast<redisReply*>(reply);
            if (r->type == REDIS_REPLY_ERROR) {
                log::warn(_refused_log, now, "events: PUBLISH refused: {}", std::string_view(r->str, r->len));
            } else {
                _metrics.published.bump();
            }
            freeReplyObject(r);
            reply = nullptr;
            --_unanswered;
            _progress_ms = now;
        }
    }
    if (_unanswered == 0) _progress_ms = now;
    else if (now - _progress_ms > limits::events_reply_timeout.count())
        disconnect("no answer from redis", now);
}

void event_publisher::sleep(std::int64_t timeout_ms) noexcept {
    _wake.flag.set_sleeping();
    bool queued = false;
    for (auto& link : _shards) queued |= !link.events->empty();
    if (!queued) {
        pollfd fds[2] = {{_wake.eventfd, POLLIN, 0},
                         {_ctx && _unanswered > 0 ? _ctx->fd : -1, POLLIN, 0}};
        std::int64_t until_heartbeat = std::max<std::int64_t>(1, _next_heartbeat_ms - monotonic_ms());
        if (::poll(fds, 2, static_cast<int>(std::min(timeout_ms, until_heartbeat))) > 0 &&
            (fds[0].revents & POLLIN)) {
            std::uint64_t v;
            [[maybe_unused]] auto r = ::read(_wake.eventfd, &v, sizeof v);
        }
    }
    _wake.flag.clear();
}

}  // namespace jugglite

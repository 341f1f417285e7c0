// The request side of a shard: a parsed request becomes a stream, a health or metrics
// answer, or an error answer; and refusals that a client should retry.
#include <fmt/format.h>

#include "core/http_request.h"
#include "core/log.h"
#include "core/request_router.h"
#include "shard/shard.h"

namespace jugglite {

void shard::on_request_bytes(connection& c, std::uint32_t id) noexcept {
    parse_result parsed = parse_request(c.request);
    if (std::holds_alternative<need_more>(parsed)) return;
    if (auto* err = std::get_if<http_error>(&parsed)) {
        answer_and_close(c, id, err->status, err->reason);
        return;
    }
    try {
        dispatch(c, id, std::get<http_request>(parsed));
    } catch (const std::bad_alloc&) {
        // Fail this one connection; the shard goes on.
        if (c.state == conn_state::reading) answer_and_close(c, id, 503, "out of memory");
        else close_conn(c, id, close_reason::client_gone);
    }
}

// `req` points into c.request. May throw std::bad_alloc; the caller fails the connection.
void shard::dispatch(connection& c, std::uint32_t id, const http_request& req) {
    c.wants_event_stream = req.wants_event_stream();
    route r = route_request(req, *_env.cfg);
    c.request = {};  // the views into it are dead from here on
    if (auto* s = std::get_if<stream_route>(&r)) {
        if (!c.counted) {  // admitted over --max-conns only to hear this answer
            refuse(c, id, refusal::capacity);
            return;
        }
        start_stream(c, id, std::move(s->channels), s->head_only);
    } else if (auto* h = std::get_if<health_route>(&r)) {
        if (h->kind == health_route::liveness) {
            if (live()) answer_and_close(c, id, 200, "ok");
            else answer_and_close(c, id, 503, "a loop has stalled");
            return;
        }
        switch (_env.redis_state->state.load(std::memory_order_relaxed)) {
            case redis_status::ready: answer_and_close(c, id, 200, "ok"); break;
            case redis_status::resubscribing:
                answer_and_close(c, id, 503, "redis subscriber is subscribing its channels again");
                break;
            default: answer_and_close(c, id, 503, "redis subscriber is not connected"); break;
        }
    } else if (std::holds_alternative<metrics_route>(r)) {
        answer_and_close(c, id, 200, metrics_text());
    } else {
        const auto& e = std::get<http_error>(r);
        answer_and_close(c, id, e.status, e.reason);
    }
}

// A stream starts in `registering`: it joins its channels at once (so that their
// SUBSCRIBE goes out), and its headers and registration comment are written only once
// Redis has confirmed every channel, so "registered" means a message published now
// arrives. Channels already confirmed on the live link cost no wait.
void shard::start_stream(connection& c, std::uint32_t id, std::vector<std::string> channels,
                         bool head_only) {
    if (head_only) {
        _metrics.conns_opened.bump();
        c.state = conn_state::closing_after_send;
        (void)c.enqueue(frame_ref::make(stream_response({{}, true})), SIZE_MAX);
        start_send(c, id);
        return;
    }
    // --max-channels is enforced by the redis thread, which alone knows every shard's
    // channels: a stream that needs a channel past the cap gets an over_capacity notice
    // while it waits here, and is turned away then (see on_channel_refused).
    c.state = conn_state::registering;
    c.deadline_ms = _now_ms + _env.cfg->register_timeout.count();
    join_channels(c, id, channels);
    if (c.unconfirmed == 0) begin_streaming(c, id);
}

void shard::answer_and_close(connection& c, std::uint32_t id, int status,
                             std::string_view body) noexcept {
    if (status >= 400) _metrics.conns_rejected.bump();
    if (status == 408) _metrics.request_timeouts.bump();
    send_final(c, id, [&] { return simple_response(status, body); });
}

// Queues the one answer `make()` builds, after which the connection closes. An answer
// that can't be allocated closes the connection at once.
template <class Make>
void shard::send_final(connection& c, std::uint32_t id, Make&& make) noexcept {
    c.request = {};
    c.state = conn_state::closing_after_send;
    try {
        (void)c.enqueue(frame_ref::make(make()), SIZE_MAX);
    } catch (const std::bad_alloc&) {
        close_conn(c, id, close_reason::client_gone);
        return;
    }
    if (!c.send_inflight) start_send(c, id);
}

void shard::refuse(connection& c, std::uint32_t id, refusal why) noexcept {
    std::string_view reason;
    switch (why) {
        case refusal::capacity:
            _metrics.refused_capacity.bump();
            reason = "connection limit reached";
            break;
        case refusal::channels:
            _metrics.refused_channels.bump();
            reason = "channel limit reached";
            break;
        case refusal::redis:
            _metrics.refused_redis.bump();
            reason = "redis is not ready";
            break;
    }
    if (!c.wants_event_stream) {
        answer_and_close(c, id, 503, reason);
        return;
    }
    // An EventSource comes back by itself after `retry:`; jitter spreads a storm of them.
    auto lo = static_cast<std::uint32_t>(limits::refusal_retry_min.count());
    auto hi = static_cast<std::uint32_t>(limits::refusal_retry_max.count());
    std::uint32_t retry_ms = lo + static_cast<std::uint32_t>(_rng() % (hi - lo + 1));
    _metrics.conns_rejected.bump();
    send_final(c, id, [&] { return retry_response(retry_ms, reason); });
}

bool shard::live() const noexcept {
    const std::int64_t limit = limits::liveness_stall.count();
    if (_now_ms - _env.redis_state->heartbeat_ms.load(std::memory_order_relaxed) > limit) return false;
    for (const auto& m : _env.all_shards)
        if (_now_ms - static_cast<std::int64_t>(m.heartbeat_ms.get()) > limit) return false;
    return true;
}

std::string shard::metrics_text() const {
    auto total = [&](auto field) {
        std::uint64_t n = 0;
        for (const auto& m : _env.all_shards) n += (m.*field).get();
        return n;
    };
    const redis_metrics& r = *_env.redis_counters;
    return fmt::format(
        "connections_open {}\nconnections_opened {}\nconnections_rejected {}\n"
        "connections_closed {}\nconnections_refused_capacity {}\nconnections_refused_channels {}\n"
        "connections_refused_redis {}\nslow_consumers {}\nrequest_timeouts {}\n"
        "channels_dropped_from_streams {}\naccept_errors {}\nsubmissions_deferred {}\nframes_out {}\nbytes_out {}\nframes_dropped_closed {}\n"
        "redis_messages_in {}\nredis_messages_dropped_queue_full {}\n"
        "redis_messages_dropped_too_large {}\nredis_messages_dropped_no_memory {}\n"
        "redis_reconnects {}\nredis_link_timeouts {}\nredis_channels_refused {}\n"
        "redis_channels_over_capacity {}\nredis_subscribed_channels {}",
        total(&shard_metrics::conns_open), total(&shard_metrics::conns_opened),
        total(&shard_metrics::conns_rejected), total(&shard_metrics::conns_closed),
        total(&shard_metrics::refused_capacity), total(&shard_metrics::refused_channels),
        total(&shard_metrics::refused_redis), total(&shard_metrics::slow_consumers),
        total(&shard_metrics::request_timeouts), total(&shard_metrics::channels_dropped),
        total(&shard_metrics::accept_errors), total(&shard_metrics::sqe_deferred),
        total(&shard_metrics::frames_out), total(&shard_metrics::bytes_out),
        total(&shard_metrics::frames_dropped_closed), r.messages_in.get(),
        r.messages_dropped_full.get(), r.messages_dropped_too_large.get(),
        r.messages_dropped_no_memory.get(), r.reconnects.get(), r.link_timeouts.get(),
        r.channels_refused.get(), r.channels_over_capacity.get(), r.subscribed_channels.get());
}

}  // namespace jugglite

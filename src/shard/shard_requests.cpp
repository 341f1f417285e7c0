// The request side of a shard: a parsed request becomes a stream, a health or metrics
// answer, or an error answer.
#include <fmt/format.h>

#include "core/log.h"
#include "shard/shard.h"
#include "core/http_request.h"
#include "core/request_router.h"

namespace jugglite {

void shard::on_request_bytes(connection& c, std::uint32_t slot) noexcept {
    parse_result parsed = parse_request(c.request);
    if (std::holds_alternative<need_more>(parsed)) return;
    if (auto* err = std::get_if<http_error>(&parsed)) {
        answer_and_close(c, slot, err->status, err->reason);
        return;
    }
    try {
        route r = route_request(std::get<http_request>(parsed), *_env.cfg);
        c.request = {};  // the views into it are dead from here on
        if (auto* s = std::get_if<stream_route>(&r)) {
            start_stream(c, slot, std::move(s->channels), s->head_only);
        } else if (std::holds_alternative<health_route>(r)) {
            if (_env.redis_healthy->load(std::memory_order_relaxed))
                answer_and_close(c, slot, 200, "ok");
            else
                answer_and_close(c, slot, 503, "redis subscriber is not connected");
        } else if (std::holds_alternative<metrics_route>(r)) {
            answer_and_close(c, slot, 200, metrics_text());
        } else {
            const auto& e = std::get<http_error>(r);
            answer_and_close(c, slot, e.status, e.reason);
        }
    } catch (const std::bad_alloc&) {
        answer_and_close(c, slot, 503, "out of memory");
    }
}

void shard::start_stream(connection& c, std::uint32_t slot, std::vector<std::string> channels,
                         bool head_only) noexcept {
    stream_route route{std::move(channels), head_only};
    frame_ref head = frame_ref::make(stream_response(route));
    _metrics.conns_opened.bump();
    if (head_only) {
        c.state = conn_state::closing_after_send;
        (void)c.enqueue(std::move(head), SIZE_MAX);
        start_send(c, slot);
        return;
    }
    c.state = conn_state::streaming;
    _metrics.conns_open.set(_metrics.conns_open.get() + 1);
    c.channels.reserve(route.channels.size());
    for (std::size_t k = 0; k < route.channels.size(); ++k) {
        auto added = _channels.add(route.channels[k],
                                   {slot, static_cast<std::uint16_t>(k)});
        c.channels.push_back({added.entry, added.pos});
        if (added.first) send_control({control_message::subscribe, route.channels[k]});
    }
    (void)c.enqueue(std::move(head), SIZE_MAX);
    start_send(c, slot);
}

void shard::answer_and_close(connection& c, std::uint32_t slot, int status,
                             std::string_view body) noexcept {
    if (status >= 400) _metrics.conns_rejected.bump();
    if (status == 408) _metrics.request_timeouts.bump();
    c.request = {};
    c.state = conn_state::closing_after_send;
    (void)c.enqueue(frame_ref::make(simple_response(status, body)), SIZE_MAX);
    if (!c.send_inflight) start_send(c, slot);
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
        "connections_closed {}\nslow_consumers {}\nrequest_timeouts {}\nframes_out {}\n"
        "bytes_out {}\nframes_dropped_closed {}\nredis_messages_in {}\n"
        "redis_messages_dropped_queue_full {}\nredis_reconnects {}\nredis_subscribed_channels {}",
        total(&shard_metrics::conns_open), total(&shard_metrics::conns_opened),
        total(&shard_metrics::conns_rejected), total(&shard_metrics::conns_closed),
        total(&shard_metrics::slow_consumers), total(&shard_metrics::request_timeouts),
        total(&shard_metrics::frames_out), total(&shard_metrics::bytes_out),
        total(&shard_metrics::frames_dropped_closed), r.messages_in.get(),
        r.messages_dropped_full.get(), r.reconnects.get(), r.subscribed_channels.get());
}

}  // namespace jugglite

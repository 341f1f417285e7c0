#include "core/metrics.h"

#include <fmt/format.h>

namespace jugglite {

std::string format_counters(const shard_metrics& m) {
    return fmt::format(
        "opened={} rejected={} closed={} open={} slow_consumers={} request_timeouts={} "
        "messages_in={} messages_unrouted={} frames_out={} bytes_out={} frames_dropped_closed={} "
        "accept_errors={} refused_capacity={} refused_channels={} refused_redis={} "
        "channels_dropped={} sqe_deferred={} refused_auth={} refused_auth_unavailable={} "
        "streams_expired={} streams_revoked={} longpolls_ended={} events_dropped_queue_full={}",
        m.conns_opened.get(), m.conns_rejected.get(), m.conns_closed.get(), m.conns_open.get(),
        m.slow_consumers.get(), m.request_timeouts.get(), m.messages_in.get(), m.messages_unrouted.get(),
        m.frames_out.get(), m.bytes_out.get(), m.frames_dropped_closed.get(),
        m.accept_errors.get(), m.refused_capacity.get(), m.refused_channels.get(),
        m.refused_redis.get(), m.channels_dropped.get(), m.sqe_deferred.get(),
        m.refused_auth.get(), m.refused_auth_unavailable.get(), m.streams_expired.get(),
        m.streams_revoked.get(), m.longpolls_ended.get(), m.events_dropped_queue_full.get());
}

std::string format_counters(const redis_metrics& m) {
    return fmt::format(
        "messages_in={} messages_unrouted={} messages_dropped_full={} "
        "messages_dropped_too_large={} messages_dropped_no_memory={} reconnects={} "
        "link_timeouts={} channels_refused={} channels_over_capacity={} subscribed_channels={}",
        m.messages_in.get(), m.messages_unrouted.get(), m.messages_dropped_full.get(),
        m.messages_dropped_too_large.get(), m.messages_dropped_no_memory.get(),
        m.reconnects.get(), m.link_timeouts.get(), m.channels_refused.get(),
        m.channels_over_capacity.get(), m.subscribed_channels.get());
}

}  // namespace jugglite

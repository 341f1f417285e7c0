#include "core/metrics.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include "core/prometheus.h"

namespace jugglite {

namespace {

using field = counter shard_metrics::*;

std::uint64_t total(std::span<const shard_metrics> shards, field f) {
    std::uint64_t n = 0;
    for (const auto& m : shards) n += (m.*f).get();
    return n;
}

// A family with one sample per shard, labelled with its index.
void per_shard(prom_writer& w, std::span<const shard_metrics> shards, std::string_view name,
               prom_writer::type t, std::string_view help, field f) {
    w.family(name, t, help);
    for (std::size_t i = 0; i < shards.size(); ++i) {
        const std::string shard = fmt::format("{}", i);
        w.sample(name, {{"shard", shard}}, (shards[i].*f).get());
    }
}

// A counter family whose samples tell reasons apart.
void by_reason(prom_writer& w, std::string_view name, std::string_view help,
               std::initializer_list<std::pair<std::string_view, std::uint64_t>> reasons) {
    w.family(name, prom_writer::type::counter, help);
    for (const auto& [reason, n] : reasons) w.sample(name, {{"reason", reason}}, n);
}

void render_shards(prom_writer& w, std::span<const shard_metrics> s) {
    using t = prom_writer::type;
    auto sum = [&](field f) { return total(s, f); };
    per_shard(w, s, "jugglite_connections_open", t::gauge, "Streams open now.",
              &shard_metrics::conns_open);
    per_shard(w, s, "jugglite_connections_opened_total", t::counter,
              "Connections accepted and answered with a stream.", &shard_metrics::conns_opened);
    w.counter("jugglite_connections_rejected_total",
              "Requests answered with an error status (4xx, 503).", sum(&shard_metrics::conns_rejected));
    w.counter("jugglite_connections_closed_total", "Connections fully closed.",
              sum(&shard_metrics::conns_closed));
    by_reason(w, "jugglite_connections_refused_total",
              "Stream requests turned away, to retry or for their credentials, by reason.",
              {{"capacity", sum(&shard_metrics::refused_capacity)},
               {"channels", sum(&shard_metrics::refused_channels)},
               {"redis", sum(&shard_metrics::refused_redis)},
               {"auth", sum(&shard_metrics::refused_auth)},
               {"auth_unavailable", sum(&shard_metrics::refused_auth_unavailable)},
               {"draining", sum(&shard_metrics::refused_draining)}});
    w.counter("jugglite_streams_drained_total",
              "Streams ended with retry: by the drain on SIGTERM.", sum(&shard_metrics::streams_drained));
    w.counter("jugglite_streams_expired_total", "Streams ended with retry: when their token expired.",
              sum(&shard_metrics::streams_expired));
    w.counter("jugglite_streams_revoked_total",
              "Streams ended with retry: the auth callback withdrew them.",
              sum(&shard_metrics::streams_revoked));
    w.counter("jugglite_longpolls_ended_total",
              "XHR long-polls ended after a message or --longpoll-max.",
              sum(&shard_metrics::longpolls_ended));
    per_shard(w, s, "jugglite_slow_consumers_total", t::counter,
              "Streams closed for exceeding --max-pending or the send-stall timeout.",
              &shard_metrics::slow_consumers);
    w.counter("jugglite_request_timeouts_total", "Connections closed (408) for not sending a full request in time.",
              sum(&shard_metrics::request_timeouts));
    w.counter("jugglite_stream_channels_dropped_total",
              "Channels removed from streams because Redis refused them.",
              sum(&shard_metrics::channels_dropped));
    w.counter("jugglite_accept_errors_total", "Accept failures other than a full table.",
              sum(&shard_metrics::accept_errors));
    per_shard(w, s, "jugglite_submissions_deferred_total", t::counter,
              "Operations retried on the next loop turn for want of a submission queue entry.",
              &shard_metrics::sqe_deferred);
    per_shard(w, s, "jugglite_frames_sent_total", t::counter,
              "Frames fully written to sockets, keepalives included.", &shard_metrics::frames_out);
    per_shard(w, s, "jugglite_sent_bytes_total", t::counter, "Bytes written to sockets.",
              &shard_metrics::bytes_out);
    w.counter("jugglite_frames_dropped_closed_total",
              "Frames still queued when their connection closed.",
              sum(&shard_metrics::frames_dropped_closed));

    constexpr std::size_t nd = delay_histogram::bounds_us.size();
    std::array<double, nd> bounds{};
    std::array<std::uint64_t, nd + 1> counts{};
    std::uint64_t sum_us = 0;
    for (std::size_t i = 0; i < nd; ++i) bounds[i] = static_cast<double>(delay_histogram::bounds_us[i]) / 1e6;
    for (const auto& m : s) {
        for (std::size_t i = 0; i <= nd; ++i) counts[i] += m.delivery_delay.counts[i].get();
        sum_us += m.delivery_delay.sum_us.get();
    }
    w.family("jugglite_delivery_delay_seconds", t::histogram,
             "Time from a message's receipt from Redis to the completion of the send that wrote "
             "the last byte of its frame, per delivered frame, summed over the shards.");
    w.histogram("jugglite_delivery_delay_seconds", {}, bounds, counts,
                static_cast<double>(sum_us) / 1e6);

    constexpr std::size_t nq = queued_bytes_gauge::bounds.size();
    w.family("jugglite_streams_by_queued_bytes", t::gauge,
             "Streams whose unsent bytes are at most `upto` bytes: a snapshot taken over the last "
             "timer round, cumulative like histogram buckets.");
    std::uint64_t streams = 0;
    for (std::size_t i = 0; i <= nq; ++i) {
        for (const auto& m : s) streams += m.queued.streams[i].get();
        const std::string upto = i < nq ? fmt::format("{}", queued_bytes_gauge::bounds[i]) : "+Inf";
        w.sample("jugglite_streams_by_queued_bytes", {{"upto", upto}}, streams);
    }
}

void render_redis(prom_writer& w, const redis_metrics& r, bool ready) {
    w.gauge("jugglite_redis_up",
            "1 while the subscriber link is up with every wanted channel subscribed.", ready ? 1 : 0);
    w.counter("jugglite_redis_messages_received_total", "Message pushes received from Redis.",
              r.messages_in.get());
    by_reason(w, "jugglite_messages_dropped_total",
              "Messages received from Redis but not delivered to some shard, by reason.",
              {{"queue_full", r.messages_dropped_full.get()},
               {"too_large", r.messages_dropped_too_large.get()},
               {"no_memory", r.messages_dropped_no_memory.get()}});
    w.counter("jugglite_redis_reconnects_total", "Subscriber links that went live after the first.",
              r.reconnects.get());
    w.counter("jugglite_redis_link_timeouts_total",
              "Subscriber links replaced because Redis did not answer in time.", r.link_timeouts.get());
    w.counter("jugglite_redis_channels_refused_total", "SUBSCRIBEs Redis refused (ACL), per channel.",
              r.channels_refused.get());
    w.counter("jugglite_redis_channels_over_capacity_total", "New channels refused at --max-channels.",
              r.channels_over_capacity.get());
    w.gauge("jugglite_redis_subscribed_channels", "Channels subscribed on Redis now.",
            r.subscribed_channels.get());
    const auto nodes = r.nodes.get();
    if (nodes.empty()) return;  // not a cluster
    w.counter("jugglite_redis_topology_reads_total", "Cluster topologies (CLUSTER SHARDS) read and applied.",
              r.topology_reads.get());
    w.gauge("jugglite_redis_cluster_slots", "Hash slots the last topology read assigns to a node.",
            r.cluster_slots.get());
    w.counter("jugglite_redis_channels_moved_total",
              "Subscribed channels that followed their slot to another node.", r.channels_moved.get());
    w.counter("jugglite_redis_channels_dropped_by_redis_total",
              "Channels a node unsubscribed on its own (slot migrated) or answered MOVED for.",
              r.channels_dropped_by_redis.get());
    w.family("jugglite_redis_node_up", prom_writer::type::gauge,
             "1 while the subscriber link to this cluster node is up.");
    for (const auto& n : nodes)
        w.sample("jugglite_redis_node_up", {{"node", n.node}, {"role", n.role}}, std::uint64_t{n.up});
    w.family("jugglite_redis_node_channels", prom_writer::type::gauge,
             "Channels that live on this cluster node's subscriber link.");
    for (const auto& n : nodes)
        w.sample("jugglite_redis_node_channels", {{"node", n.node}, {"role", n.role}}, n.channels);
}

void render_auth(prom_writer& w, const auth_metrics& a) {
    w.counter("jugglite_auth_calls_total", "Calls made to the authorization callback.", a.calls.get());
    w.counter("jugglite_auth_cache_hits_total", "Authorizations answered from --auth-cache-seconds.",
              a.cache_hits.get());
    w.counter("jugglite_auth_granted_total", "Callback answers 200 with a grant.", a.granted.get());
    w.counter("jugglite_auth_denied_total", "Callback answers 401 or 403.", a.denied.get());
    w.counter("jugglite_auth_failed_total",
              "Callback calls that timed out, failed, or answered another status or a malformed body.",
              a.failed.get());
    w.gauge("jugglite_auth_in_flight", "Callback calls being asked now.", a.in_flight.get());
}

void render_history(prom_writer& w, const history_metrics& h, std::span<const shard_metrics> s) {
    w.counter("jugglite_history_resumes_total", "Resume requests from streams.", h.resumes.get());
    w.family("jugglite_history_resumes_answered_total", prom_writer::type::counter,
             "Resume requests answered, by where the answer came from.");
    w.sample("jugglite_history_resumes_answered_total", {{"source", "memory"}}, h.from_memory.get());
    w.sample("jugglite_history_resumes_answered_total", {{"source", "redis"}}, h.from_redis.get());
    w.counter("jugglite_history_replayed_frames_total", "Frames sent in resume answers.",
              h.replayed.get());
    by_reason(w, "jugglite_history_resets_total", "jugglite-reset events sent, by reason.",
              {{"trimmed", h.resets_trimmed.get()},
               {"unknown", h.resets_unknown.get()},
               {"malformed", h.resets_malformed.get()},
               {"too_long", h.resets_too_long.get()}});
    w.counter("jugglite_history_resumes_unavailable_total",
              "Resume requests Redis did not answer in time.", h.unavailable.get());
    w.counter("jugglite_history_streams_resumed_total", "Streams given their replay or a reset.",
              total(s, &shard_metrics::streams_resumed));
    w.counter("jugglite_history_streams_resume_failed_total",
              "Streams ended with retry: because history could not be read.",
              total(s, &shard_metrics::resumes_failed));
    w.counter("jugglite_history_gaps_total", "Live messages whose previous id was missed.",
              h.gaps.get());
    w.counter("jugglite_history_catch_ups_total", "Channels caught up from Redis.", h.catch_ups.get());
    w.counter("jugglite_history_caught_up_messages_total", "Messages delivered by catching up.",
              h.caught_up.get());
    w.counter("jugglite_history_catch_ups_abandoned_total", "Catch-ups given up.",
              h.catch_ups_abandoned.get());
    w.gauge("jugglite_history_window_bytes", "Bytes held in the in-memory history windows.",
            h.window_bytes.get());
    w.counter("jugglite_history_window_evicted_total",
              "Entries evicted from the in-memory windows.", h.window_evicted.get());
    w.counter("jugglite_history_read_batches_total", "MULTI batches of history reads run.",
              h.batches.get());
    w.counter("jugglite_history_reads_total", "XRANGEs run.", h.reads.get());
    w.counter("jugglite_history_read_errors_total", "History read batches that failed.",
              h.read_errors.get());
    w.counter("jugglite_history_library_loads_total", "FUNCTION LOADs of the jugglite library.",
              h.library_loads.get());
}

void render_events(prom_writer& w, const event_metrics& e, std::span<const shard_metrics> s) {
    w.counter("jugglite_events_published_total", "Connection events PUBLISHed and answered by Redis.",
              e.published.get());
    by_reason(w, "jugglite_events_dropped_total", "Connection events dropped, by reason.",
              {{"queue_full", total(s, &shard_metrics::events_dropped_queue_full)},
               {"redis_down", e.dropped_redis_down.get()},
               {"backlog", e.dropped_backlog.get()}});
    w.counter("jugglite_events_link_errors_total", "Event links lost or replaced.",
              e.link_errors.get());
}

}  // namespace

std::string render_prometheus(const metrics_view& v) {
    prom_writer w;
    render_shards(w, v.shards);
    if (v.redis) render_redis(w, *v.redis, v.redis_ready);
    if (v.auth) render_auth(w, *v.auth);
    if (v.history) render_history(w, *v.history, v.shards);
    if (v.events) render_events(w, *v.events, v.shards);
    w.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", v.resident_bytes);
    w.family("process_cpu_seconds_total", prom_writer::type::counter,
             "Total user and system CPU time spent in seconds.");
    w.sample("process_cpu_seconds_total", {}, v.cpu_seconds);
    return w.take();
}

void read_process_figures(metrics_view& v) noexcept {
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        unsigned long size = 0, resident = 0;
        if (std::fscanf(f, "%lu %lu", &size, &resident) == 2)
            v.resident_bytes = static_cast<std::uint64_t>(resident) *
                               static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        std::fclose(f);
    }
    rusage u{};
    if (::getrusage(RUSAGE_SELF, &u) == 0) {
        auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
        v.cpu_seconds = secs(u.ru_utime) + secs(u.ru_stime);
    }
}

std::string format_counters(const shard_metrics& m) {
    return fmt::format(
        "opened={} rejected={} closed={} open={} slow_consumers={} request_timeouts={} "
        "messages_in={} messages_unrouted={} frames_out={} bytes_out={} frames_dropped_closed={} "
        "accept_errors={} refused_capacity={} refused_channels={} refused_redis={} "
        "channels_dropped={} sqe_deferred={} refused_auth={} refused_auth_unavailable={} "
        "streams_expired={} streams_revoked={} longpolls_ended={} events_dropped_queue_full={} "
        "refused_draining={} streams_drained={}",
        m.conns_opened.get(), m.conns_rejected.get(), m.conns_closed.get(), m.conns_open.get(),
        m.slow_consumers.get(), m.request_timeouts.get(), m.messages_in.get(), m.messages_unrouted.get(),
        m.frames_out.get(), m.bytes_out.get(), m.frames_dropped_closed.get(),
        m.accept_errors.get(), m.refused_capacity.get(), m.refused_channels.get(),
        m.refused_redis.get(), m.channels_dropped.get(), m.sqe_deferred.get(),
        m.refused_auth.get(), m.refused_auth_unavailable.get(), m.streams_expired.get(),
        m.streams_revoked.get(), m.longpolls_ended.get(), m.events_dropped_queue_full.get(),
        m.refused_draining.get(), m.streams_drained.get());
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

// Tests for the Prometheus exposition: the writer's escaping and histograms, and what
// /metrics renders from the counters (promtool checks the whole text in the integration tests).
#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

#include "core/metrics.h"
#include "core/prometheus.h"
#include "support/metric_text.h"

using namespace jugglite;

TEST_CASE("prom_writer: HELP and TYPE lines, labels escaped") {
    prom_writer w;
    w.family("x_total", prom_writer::type::counter, "a \\ b\nc \"q\"");
    w.sample("x_total", {{"reason", "a\"b\\c\nd"}, {"shard", "1"}}, std::uint64_t{7});
    w.gauge("y", "plain", 3);
    CHECK(w.text() ==
          "# HELP x_total a \\\\ b\\nc \"q\"\n"
          "# TYPE x_total counter\n"
          "x_total{reason=\"a\\\"b\\\\c\\nd\",shard=\"1\"} 7\n"
          "# HELP y plain\n"
          "# TYPE y gauge\n"
          "y 3\n");
}

TEST_CASE("prom_writer: a histogram's buckets are cumulative and end in +Inf") {
    prom_writer w;
    const std::array<double, 2> bounds{0.001, 0.5};
    const std::array<std::uint64_t, 3> counts{2, 0, 5};
    w.histogram("d_seconds", {{"shard", "0"}}, bounds, counts, 12.5);
    CHECK(w.text() ==
          "d_seconds_bucket{shard=\"0\",le=\"0.001\"} 2\n"
          "d_seconds_bucket{shard=\"0\",le=\"0.5\"} 2\n"
          "d_seconds_bucket{shard=\"0\",le=\"+Inf\"} 7\n"
          "d_seconds_sum{shard=\"0\"} 12.5\n"
          "d_seconds_count{shard=\"0\"} 7\n");
}

TEST_CASE("delay_histogram: each observation lands in the first bucket that holds it") {
    delay_histogram h;
    h.observe(0);
    h.observe(100);      // at a bound: that bucket
    h.observe(101);      // just past it: the next
    h.observe(20'000'000);  // past the last bound
    CHECK(h.counts[0].get() == 2);
    CHECK(h.counts[1].get() == 1);
    CHECK(h.counts[delay_histogram::bounds_us.size()].get() == 1);
    CHECK(h.sum_us.get() == 20'000'201);
}

TEST_CASE("render_prometheus: per-shard families carry a shard label, others are summed") {
    std::vector<shard_metrics> shards(2);
    shards[0].conns_open.set(3);
    shards[1].conns_open.set(4);
    shards[0].refused_capacity.bump(2);
    shards[1].refused_capacity.bump(5);
    shards[0].delivery_delay.observe(300);
    shards[1].delivery_delay.observe(300);
    shards[1].delivery_delay.observe(3'000'000);
    shards[0].queued.streams[0].set(3);  // nothing queued
    shards[1].queued.streams[2].set(4);  // up to 4 KiB
    redis_metrics redis;
    redis.messages_dropped_too_large.bump();
    metrics_view v{.shards = shards, .redis = &redis, .redis_ready = true};
    const std::string text = render_prometheus(v);
    INFO(text);

    CHECK(text.find("jugglite_connections_open{shard=\"0\"} 3\n") != std::string::npos);
    CHECK(text.find("jugglite_connections_open{shard=\"1\"} 4\n") != std::string::npos);
    CHECK(test::metric_in(text, "jugglite_connections_open") == 7);
    CHECK(test::metric_in(text, R"(jugglite_connections_refused_total{reason="capacity"})") == 7);
    CHECK(test::metric_in(text, R"(jugglite_messages_dropped_total{reason="too_large"})") == 1);
    CHECK(test::metric_in(text, "jugglite_redis_up") == 1);
    // Summed over the shards: 300 µs twice, 3 s once.
    CHECK(test::metric_in(text, R"(jugglite_delivery_delay_seconds_bucket{le="0.0005"})") == 2);
    CHECK(test::metric_in(text, R"(jugglite_delivery_delay_seconds_bucket{le="2.5"})") == 2);
    CHECK(test::metric_in(text, R"(jugglite_delivery_delay_seconds_bucket{le="10"})") == 3);
    CHECK(test::metric_in(text, "jugglite_delivery_delay_seconds_count") == 3);
    CHECK(text.find("jugglite_delivery_delay_seconds_sum 3.0006\n") != std::string::npos);
    CHECK(test::metric_in(text, R"(jugglite_streams_by_queued_bytes{upto="0"})") == 3);
    CHECK(test::metric_in(text, R"(jugglite_streams_by_queued_bytes{upto="1024"})") == 3);
    CHECK(test::metric_in(text, R"(jugglite_streams_by_queued_bytes{upto="4096"})") == 7);
    CHECK(test::metric_in(text, R"(jugglite_streams_by_queued_bytes{upto="+Inf"})") == 7);
    // The side threads that don't run have no families.
    CHECK(text.find("jugglite_auth_") == std::string::npos);
    CHECK(text.find("jugglite_history_") == std::string::npos);
    // Every family is typed, and every counter ends in _total.
    for (std::size_t p = 0; (p = text.find("# TYPE ", p)) != std::string::npos; ++p) {
        const std::string line = text.substr(p, text.find('\n', p) - p);
        if (line.ends_with(" counter")) CHECK(line.find("_total counter") != std::string::npos);
    }
}

TEST_CASE("metrics: cluster nodes get a series each, and a selector sums those carrying its labels") {
    std::vector<shard_metrics> shards(1);
    redis_metrics redis;
    metrics_view v{.shards = shards, .redis = &redis, .redis_ready = true};
    CHECK(render_prometheus(v).find("jugglite_redis_node_up") == std::string::npos);  // one Redis
    redis.nodes.set({{"10.0.0.1:7001", "master", true, 5}, {"10.0.0.2:7002", "replica", true, 7},
                     {"10.0.0.3:7003", "replica", false, 0}});
    const std::string text = render_prometheus(v);
    INFO(text);
    CHECK(text.find("jugglite_redis_node_up{node=\"10.0.0.3:7003\",role=\"replica\"} 0\n") != std::string::npos);
    CHECK(test::metric_in(text, "jugglite_redis_node_channels") == 12);
    CHECK(test::metric_in(text, R"(jugglite_redis_node_channels{role="replica"})") == 7);
    CHECK(test::metric_in(text, R"(jugglite_redis_node_up{role="replica"})") == 1);
    CHECK(test::metric_in(text, R"(jugglite_redis_node_channels{node="10.0.0.1:7001",role="master"})") == 5);
    CHECK(test::metric_in(text, R"(jugglite_redis_node_channels{role="master",node="10.0.0.1:7001"})") == 5);
    CHECK(test::metric_in(text, R"(jugglite_redis_node_channels{role="classic"})") == -1);
    CHECK(test::metric_in(text, R"(jugglite_redis_node_channels{role="replic"})") == -1);
}

// Redis Cluster (--redis-cluster): a real 3-master, 3-replica cluster on local ports, two
// jugglite nodes, sharded pub/sub across every master, a master killed, a slot moved.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/history.h"
#include "support/cluster.h"
#include "support/sse.h"

using namespace test;
using jugglite::history_clock_key;
using jugglite::history_key;
using jugglite::history_settings;
using jugglite::stream_id;
using namespace std::chrono_literals;

namespace {

// The payloads of every data: line in `body`.
std::multiset<std::string> payloads(const std::string& body) {
    std::multiset<std::string> out;
    std::size_t at = 0;
    while ((at = body.find("data: ", at)) != std::string::npos) {
        auto end = body.find('\n', at);
        out.insert(body.substr(at + 6, end - at - 6));
        at = end;
    }
    return out;
}

// Streams on one jugglite, each on a group of channels.
struct streams {
    std::vector<raw_client> clients;
    std::vector<std::vector<std::string>> channels;  // per client

    void open(int port, const std::vector<std::string>& all, std::size_t per_stream) {
        for (std::size_t i = 0; i < all.size(); i += per_stream) {
            std::vector<std::string> group(all.begin() + static_cast<long>(i),
                                           all.begin() + static_cast<long>(std::min(all.size(), i + per_stream)));
            std::string target = "/stream?channel=";
            for (std::size_t k = 0; k < group.size(); ++k) target += (k ? "," : "") + group[k];
            clients.push_back(open_stream(port, target));
            channels.push_back(std::move(group));
        }
    }
    [[nodiscard]] bool wants(const std::string& channel) const {
        for (const auto& g : channels)
            if (std::find(g.begin(), g.end(), channel) != g.end()) return true;
        return false;
    }
    // Every stream received exactly "<round>:<channel>" for each of its channels in
    // `published` (and what earlier rounds sent), nothing else; and none was closed.
    void check_round(const std::string& round, const std::set<std::string>& published) {
        for (std::size_t i = 0; i < clients.size(); ++i) {
            std::multiset<std::string> expect;
            for (const auto& ch : channels[i])
                if (published.count(ch)) expect.insert(round + ":" + ch);
            auto& c = clients[i];
            for (const auto& e : expect) CHECK_MESSAGE(c.read_until("data: " + e + "\n", 15s), e);
            std::multiset<std::string> got;
            for (const auto& p : payloads(c.body()))
                if (p.starts_with(round + ":")) got.insert(p);
            CHECK(got == expect);
            CHECK_FALSE(c.closed());
        }
    }
};

// Publishes "<round>:<channel>" to each channel; returns the channels whose SPUBLISH
// reached as many Redis subscribers as `nodes` says want it.
std::set<std::string> publish_round(redis_cluster& cluster, const std::string& round,
                                    const std::vector<std::string>& channels,
                                    const std::vector<const streams*>& nodes) {
    std::set<std::string> reached;
    for (const auto& ch : channels) {
        long long want = 0;
        for (const auto* n : nodes) want += n->wants(ch) ? 1 : 0;
        long long got = cluster.spublish(ch, round + ":" + ch);
        CHECK_MESSAGE(got == want, ch);
        if (got == want) reached.insert(ch);
    }
    return reached;
}

}  // namespace

TEST_CASE("cluster: sharded pub/sub on every master reaches exactly its subscribers on two nodes") {
    redis_cluster cluster;
    const auto masters = cluster.masters();
    REQUIRE(masters.size() == 3);

    std::vector<std::string> channels;
    std::map<int, int> per_master;
    for (int i = 0; i < 200; ++i) {
        channels.push_back("ch-" + std::to_string(i));
        ++per_master[cluster.master_of(channels.back())];
    }
    for (int m : masters) CHECK(per_master[m] > 30);  // spread over all three

    jugglite_server a({"--redis-cluster", cluster.seeds()});
    jugglite_server b({"--redis-cluster", cluster.seeds(3)});
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz") && answers_200(b.port(), "/healthz"); }));

    // Node a streams all 200 channels, node b the first 100.
    streams on_a, on_b;
    on_a.open(a.port(), channels, 20);
    on_b.open(b.port(), {channels.begin(), channels.begin() + 100}, 25);

    auto reached = publish_round(cluster, "r1", channels, {&on_a, &on_b});
    CHECK(reached.size() == channels.size());
    on_a.check_round("r1", reached);
    on_b.check_round("r1", reached);

    // One subscriber connection per master on each node, and the channels where they live.
    const std::string m = http_get(a.port(), "/metrics");
    CHECK(metric_in(m, "jugglite_redis_cluster_slots") == 16384);
    for (int master : masters) {
        const std::string series = "jugglite_redis_node_channels{node=\"127.0.0.1:" + std::to_string(master) +
                                   "\",role=\"master\"}";
        CHECK(metric_in(m, series) == per_master[master]);
    }
    CHECK(metric_in(m, "jugglite_redis_subscribed_channels") == 200);
}

TEST_CASE("cluster: a master killed fails over and its channels' streams stay open and get messages again") {
    redis_cluster cluster;
    const auto masters = cluster.masters();
    REQUIRE(masters.size() == 3);
    const int victim = masters[0];

    std::vector<std::string> channels, elsewhere;
    for (int i = 0; i < 60; ++i) {
        channels.push_back("fo-" + std::to_string(i));
        if (cluster.master_of(channels.back()) != victim) elsewhere.push_back(channels.back());
    }
    REQUIRE(elsewhere.size() < channels.size());

    // Node a needs the victim's slots, node b does not.
    jugglite_server a({"--redis-cluster", cluster.seeds(6)});
    jugglite_server b({"--redis-cluster", cluster.seeds(6)});
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz") && answers_200(b.port(), "/healthz"); }));
    streams on_a, on_b;
    on_a.open(a.port(), channels, 10);
    on_b.open(b.port(), elsewhere, 10);
    auto reached = publish_round(cluster, "before", channels, {&on_a, &on_b});
    on_a.check_round("before", reached);
    on_b.check_round("before", reached);

    const auto killed = std::chrono::steady_clock::now();
    cluster.kill(victim);
    // a knows at once that its link to the victim is gone.
    CHECK(eventually([&] { return !answers_200(a.port(), "/healthz"); }, 5s));
    // b needs nothing from the victim: it stays healthy throughout.
    bool b_healthy = true;
    const bool failed_over = eventually(
        [&] {
            b_healthy &= answers_200(b.port(), "/healthz");
            return cluster.healthy() && answers_200(a.port(), "/healthz");
        },
        30s);
    if (!failed_over)
        MESSAGE("cluster healthy: " << cluster.healthy() << "\n" << cluster.command(masters[1], {"CLUSTER", "NODES"})
                                    << cluster.command(masters[1], {"CLUSTER", "INFO"}) << "\nnode a's log:\n" << a.log());
    REQUIRE(failed_over);
    const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    MESSAGE("killed master 127.0.0.1:" << victim << "; node a healthy again after " << seconds << " s");
    CHECK(seconds < 15);
    CHECK(b_healthy);

    reached = publish_round(cluster, "after", channels, {&on_a, &on_b});
    CHECK(reached.size() == channels.size());
    on_a.check_round("after", reached);
    on_b.check_round("after", reached);
    CHECK(metric(a.port(), "jugglite_redis_channels_moved_total") == static_cast<long long>(channels.size() - elsewhere.size()));
}

TEST_CASE("cluster: a slot moved to another master takes its subscriptions along, no stream closes") {
    redis_cluster cluster;
    const auto masters = cluster.masters();
    REQUIRE(masters.size() == 3);

    const std::string moving = "mv-0";
    const int from = cluster.master_of(moving);
    const int to = from == masters[0] ? masters[1] : masters[0];
    jugglite_server a({"--redis-cluster", cluster.seeds()});
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz"); }));
    streams on_a;
    on_a.open(a.port(), {moving, "mv-1", "mv-2"}, 3);
    auto reached = publish_round(cluster, "before", {moving, "mv-1", "mv-2"}, {&on_a});
    on_a.check_round("before", reached);

    const int slot = std::stoi(cluster.command(from, {"CLUSTER", "KEYSLOT", moving}));
    const auto moved_at = std::chrono::steady_clock::now();
    cluster.move_slot(slot, to);
    CHECK(cluster.master_of(moving) == to);
    // The old owner unsubscribed us on its own; jugglite subscribes on the new one.
    CHECK(eventually([&] { return cluster.spublish(moving, "probe") == 1; }, 10s));
    MESSAGE("slot " << slot << " moved; subscribed on its new master after "
                    << std::chrono::duration<double>(std::chrono::steady_clock::now() - moved_at).count() << " s");
    reached = publish_round(cluster, "after", {moving, "mv-1", "mv-2"}, {&on_a});
    CHECK(reached.size() == 3);
    on_a.check_round("after", reached);
    CHECK(metric(a.port(), "jugglite_redis_channels_dropped_by_redis_total") >= 1);
}

TEST_CASE("cluster: classic pub/sub subscribes on one node and moves to another when it dies") {
    redis_cluster cluster;
    jugglite_server a({"--redis-cluster", cluster.seeds(6), "--redis-cluster-pubsub", "classic"});
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz"); }));
    streams on_a;
    on_a.open(a.port(), {"cl-1", "cl-2", "cl-3"}, 3);
    auto& c = on_a.clients.front();
    // PUBLISH on any node reaches every node's SUBSCRIBErs.
    for (const auto& ch : on_a.channels.front()) cluster.publish(ch, "before:" + ch);
    for (const auto& ch : on_a.channels.front()) CHECK(c.read_until("data: before:" + ch + "\n", 10s));

    // The node it subscribes on, from /metrics.
    const std::string m = http_get(a.port(), "/metrics");
    int node = 0;
    for (int p : cluster.ports())
        if (metric_in(m, "jugglite_redis_node_up{node=\"127.0.0.1:" + std::to_string(p) + "\",role=\"classic\"}") == 1)
            node = p;
    REQUIRE(node != 0);
    CHECK(metric_in(m, "jugglite_redis_node_channels") == 3);
    cluster.kill(node);
    CHECK(eventually([&] { return !answers_200(a.port(), "/healthz"); }, 5s));
    // Another node is taken at once: no need to wait for the cluster's failover.
    CHECK(eventually([&] { return answers_200(a.port(), "/healthz"); }, 10s));
    CHECK(eventually([&] {
        cluster.publish("cl-1", "probe");
        return c.read_until("data: probe\n", 200ms);
    }, 10s));
    for (const auto& ch : on_a.channels.front()) cluster.publish(ch, "after:" + ch);
    for (const auto& ch : on_a.channels.front()) CHECK(c.read_until("data: after:" + ch + "\n", 10s));
    CHECK_FALSE(c.closed());
}

TEST_CASE("cluster: flags that don't go together are refused with a clear error") {
    auto r = run_jugglite({"--redis", "redis://127.0.0.1:1", "--redis-cluster", "redis://127.0.0.1:2"});
    CHECK(r.status != 0);
    CHECK(r.output.find("--redis and --redis-cluster exclude each other") != std::string::npos);
    r = run_jugglite({"--redis-cluster", "redis://127.0.0.1:2/3"});
    CHECK(r.output.find("a cluster has only database 0") != std::string::npos);
    r = run_jugglite({"--redis-cluster", "redis://127.0.0.1:2", "--redis-cluster-pubsub", "fast"});
    CHECK(r.output.find("--redis-cluster-pubsub must be sharded or classic (got fast)") != std::string::npos);
    r = run_jugglite({"--redis-read-from", "replica"});
    CHECK(r.output.find("need --redis-cluster") != std::string::npos);
    r = run_jugglite({"--redis-cluster", "redis://127.0.0.1:2", "--redis-cluster-pubsub", "classic",
                      "--redis-read-from", "replica"});
    CHECK(r.output.find("--redis-read-from replica needs sharded pub/sub") != std::string::npos);
    r = run_jugglite({"--redis-cluster", "redis://127.0.0.1:2", "--redis-cluster-pubsub", "classic", "--history"});
    CHECK(r.output.find("--history on --redis-cluster needs --redis-cluster-pubsub sharded") != std::string::npos);
}

TEST_CASE("cluster: --redis-read-from replica subscribes on replicas, and on the master while one is cut off") {
    redis_cluster cluster;
    const auto masters = cluster.masters();
    jugglite_server a({"--redis-cluster", cluster.seeds(6), "--redis-read-from", "replica"});
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz"); }));
    std::vector<std::string> channels;
    for (int i = 0; i < 30; ++i) channels.push_back("rr-" + std::to_string(i));
    streams on_a;
    on_a.open(a.port(), channels, 10);

    // Every channel lives on a replica: SPUBLISH counts only the master's own subscribers.
    auto replica_channels = [&] {
        return metric_in(http_get(a.port(), "/metrics"), "jugglite_redis_node_channels{role=\"replica\"}");
    };
    if (!eventually([&] { return replica_channels() == 30; }))
        MESSAGE(http_get(a.port(), "/metrics") << a.log());
    REQUIRE(replica_channels() == 30);
    for (const auto& ch : channels) CHECK(cluster.spublish(ch, "r1:" + ch) == 0);
    on_a.check_round("r1", {channels.begin(), channels.end()});

    // Cut one replica off its master: it can't authenticate to it any more.
    const int master = cluster.master_of(channels[0]);
    int replica = 0;
    for (int p : cluster.ports()) {
        const std::string info = cluster.command(p, {"INFO", "replication"});
        if (info.find("role:slave") != std::string::npos &&
            info.find("master_port:" + std::to_string(master) + "\r") != std::string::npos)
            replica = p;
    }
    REQUIRE(replica != 0);
    cluster.command(replica, {"CONFIG", "SET", "masterauth", "not-the-password"});
    cluster.command(replica, {"CLIENT", "KILL", "TYPE", "master"});
    // Its shard's channels go to the master; the other replicas keep theirs.
    auto on_master = [&] {
        return metric_in(http_get(a.port(), "/metrics"),
                         "jugglite_redis_node_channels{node=\"127.0.0.1:" + std::to_string(master) +
                             "\",role=\"master\"}");
    };
    REQUIRE(eventually([&] { return on_master() > 0; }, 10s));
    CHECK(replica_channels() + on_master() == 30);
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz"); }, 10s));
    std::set<std::string> all(channels.begin(), channels.end());
    for (const auto& ch : channels) cluster.spublish(ch, "r2:" + ch);
    on_a.check_round("r2", all);

    // Back in touch: the replica serves them again.
    cluster.command(replica, {"CONFIG", "SET", "masterauth", ""});
    REQUIRE(eventually([&] { return replica_channels() == 30; }, 15s));
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz"); }, 10s));
    for (const auto& ch : channels) CHECK(cluster.spublish(ch, "r3:" + ch) == 0);
    on_a.check_round("r3", all);
    (void)masters;
}

TEST_CASE("cluster: connection events go out through one seed after the other") {
    redis_cluster cluster;
    const auto& ports = cluster.ports();
    // An application listening on a node that no seed names: PUBLISH reaches it over the bus.
    redis_client listener(ports[5]);
    listener.subscribe("cl-events");
    jugglite_server a({"--redis-cluster", cluster.seeds(3), "--events-channel", "cl-events",
                       "--events-heartbeat", "1"});
    REQUIRE(eventually([&] { return answers_200(a.port(), "/healthz"); }));
    // The next event of `type` stamped at `since` (unix ms) or later.
    auto next_of_type = [&](std::string_view type, std::int64_t since = 0) {
        for (int i = 0; i < 20; ++i) {
            std::string m = listener.next_message(1s);
            if (m.empty()) continue;
            auto j = nlohmann::json::parse(m);
            if (j["type"] == type && j["at"].get<std::int64_t>() >= since) return m;
        }
        return std::string{};
    };
    auto unix_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch()).count();
    };
    auto s1 = open_stream(a.port(), "/stream?channel=ev-1");
    CHECK(next_of_type("register").find("ev-1") != std::string::npos);

    // The first seed dies: heartbeats come again through the next one.
    cluster.kill(ports[0]);
    const std::int64_t killed = unix_ms();
    CHECK_FALSE(next_of_type("node", killed + 1500).empty());
    // A channel whose master is alive, so that the stream needs no failover to start.
    std::string channel;
    for (int i = 2; channel.empty(); ++i) {
        std::string c = "ev-" + std::to_string(i);
        if (cluster.master_of(c) != 0 && cluster.master_of(c) != ports[0]) channel = c;
    }
    auto s2 = open_stream(a.port(), "/stream?channel=" + channel);
    CHECK(next_of_type("register").find(channel) != std::string::npos);
}

TEST_CASE("cluster: the history library runs on each channel's master: per-slot clock, SPUBLISHed envelope") {
    redis_cluster cluster;
    auto printed = run_jugglite({"--print-history-library", "--redis-cluster", cluster.seeds(1)});
    REQUIRE(printed.status == 0);
    for (int m : cluster.masters()) REQUIRE(cluster.command(m, {"FUNCTION", "LOAD", "REPLACE", printed.output}) == "jugglite");

    history_settings settings;
    settings.clock_per_slot = true;
    for (const std::string channel : {"hist-a", "hist-b", "user:{7}:feed"}) {
        const int master = cluster.master_of(channel);
        redis_client sub(master);
        sub.command({"SSUBSCRIBE", channel});
        // FCALL declares the channel as its key: the node that owns its slot runs it, and the
        // stream and the clock it touches live in that slot too (no cross-slot error).
        const std::string first = cluster.command(master, {"FCALL", "jugglite_publish", "1", channel, "one"});
        const std::string second = cluster.command(master, {"FCALL", "jugglite_publish", "1", channel, "two"});
        INFO(channel << ": " << first << " " << second);
        auto id1 = stream_id::parse(first), id2 = stream_id::parse(second);
        REQUIRE(id1);
        REQUIRE(id2);
        CHECK(*id1 < *id2);
        CHECK(sub.next_message() == "\x1fjugglite 1 " + first + " \none");
        CHECK(sub.next_message() == "\x1fjugglite 1 " + second + " " + first + "\ntwo");
        CHECK(cluster.command(master, {"GET", history_clock_key(settings, channel)}) == second);
        CHECK(cluster.command(master, {"XLEN", history_key(settings, channel)}) == "2");
    }
}

namespace {

// FCALL jugglite_publish on the channel's master now; the entry id.
std::string fcall(redis_cluster& cluster, const std::string& channel, const std::string& payload) {
    return cluster.command(cluster.master_of(channel), {"FCALL", "jugglite_publish", "1", channel, payload});
}

// Until jugglite has loaded its library into every master.
bool library_everywhere(redis_cluster& cluster) {
    for (int m : cluster.masters())
        if (cluster.command(m, {"FCALL_RO", "jugglite_version", "0"}) != "1") return false;
    return true;
}

// Two channels whose slots live on different masters.
std::pair<std::string, std::string> two_masters(redis_cluster& cluster, const std::string& stem) {
    const std::string a = stem + "-a";
    for (int i = 0;; ++i) {
        std::string b = stem + "-b" + std::to_string(i);
        if (cluster.master_of(b) != cluster.master_of(a)) return {a, b};
    }
}

}  // namespace

TEST_CASE("cluster: a stream resumes channels of two masters, each from its own slot's history") {
    redis_cluster cluster;
    jugglite_server node({"--redis-cluster", cluster.seeds(6), "--history"});
    REQUIRE(eventually([&] { return answers_200(node.port(), "/healthz") && library_everywhere(cluster); }));
    const auto [a, b] = two_masters(cluster, "rs");
    const std::string target = "/stream?channel=" + a + "," + b;

    auto live = open_stream(node.port(), target);
    // Holds both channels on the node however slow the machine is (past their unsubscribe
    // grace), so that its windows answer the resume below.
    auto keeper = open_stream(node.port(), target);
    for (const auto& m : {"1", "2"}) {
        fcall(cluster, a, std::string("a") + m);
        fcall(cluster, b, std::string("b") + m);
    }
    REQUIRE(live.read_until("data: b2\n\n"));
    auto seen = events_of(live.body());
    REQUIRE(seen.size() == 4);
    const std::string last = seen.back().id;
    live.close();

    // Published while the client was away, on both masters, each with its slot's clock.
    std::vector<std::string> missed;
    for (const auto& m : {"3", "4"}) {
        for (const auto& [ch, stem] : {std::pair{a, "a"}, std::pair{b, "b"}}) {
            missed.push_back(stem + std::string(m));
            fcall(cluster, ch, missed.back());
        }
    }
    // Resumes on `n` from `last`, publishes `next` on `ch` once the replay reached `seen`,
    // and checks the whole stream and where the answer came from.
    auto resume_on = [&](jugglite_server& n, const std::string& seen, const std::string& ch,
                         const std::string& next, const std::string& source) {
        auto c = resume(n.port(), target, last);
        REQUIRE(c.read_until("data: " + seen + "\n\n", 10s));
        fcall(cluster, ch, next);
        REQUIRE(c.read_until("data: " + next + "\n\n", 10s));
        missed.push_back(next);
        CHECK(data_of(events_of(c.body())) == missed);
        CHECK(metric(n.port(), "jugglite_history_resumes_answered_total{source=\"" + source + "\"}") == 1);
    };
    // The node still has both channels: its windows answer.
    resume_on(node, "b4", a, "a5", "memory");
    // A node that has never seen these channels reads both masters.
    jugglite_server other({"--redis-cluster", cluster.seeds(6), "--history"});
    REQUIRE(eventually([&] { return answers_200(other.port(), "/healthz"); }));
    resume_on(other, "a5", b, "b5", "redis");
}

TEST_CASE("cluster: with history, a stream whose master fails over misses nothing and gets nothing twice") {
    redis_cluster cluster;
    jugglite_server node({"--redis-cluster", cluster.seeds(6), "--history"});
    REQUIRE(eventually([&] { return answers_200(node.port(), "/healthz") && library_everywhere(cluster); }));
    const auto [a, b] = two_masters(cluster, "fh");
    auto stream = open_stream(node.port(), "/stream?channel=" + a + "," + b);
    std::vector<std::string> sent;
    std::map<std::string, std::string> on;  // payload -> channel
    auto publish = [&](const std::string& ch, const std::string& payload) {
        fcall(cluster, ch, payload);
        sent.push_back(payload);
        on[payload] = ch;
    };
    for (int i = 0; i < 3; ++i) publish(i % 2 ? b : a, "m" + std::to_string(i));
    REQUIRE(stream.read_until("data: m2\n\n"));
    // The replicas hold what was published before the master goes.
    REQUIRE(eventually([&] { return cluster.replicas_synced(); }));

    const int victim = cluster.master_of(a);
    cluster.kill(victim);
    // Publish on a as soon as its new master takes writes: part of it lands while jugglite
    // has no subscription there, and comes back by catching up from the stream.
    int i = 3;
    const bool written = eventually(
        [&] {
            const int m = cluster.master_of(a);
            if (m == 0 || m == victim) return false;
            const std::string payload = "m" + std::to_string(i);
            if (!stream_id::parse(cluster.command(m, {"FCALL", "jugglite_publish", "1", a, payload}))) return false;
            sent.push_back(payload);
            on[payload] = a;
            ++i;
            return answers_200(node.port(), "/healthz");
        },
        30s);
    REQUIRE(written);
    for (int k = 0; k < 3; ++k, ++i) publish(i % 2 ? b : a, "m" + std::to_string(i));
    REQUIRE(stream.read_until("data: " + sent.back() + "\n\n", 15s));
    CHECK_FALSE(stream.closed());
    // Each exactly once, in publish order within each channel.
    auto got = data_of(events_of(stream.body()));
    CHECK(std::multiset<std::string>(got.begin(), got.end()) == std::multiset<std::string>(sent.begin(), sent.end()));
    for (const std::string& ch : {a, b}) {
        std::vector<std::string> on_ch;
        for (const auto& p : got)
            if (on.at(p) == ch) on_ch.push_back(p);
        std::vector<std::string> want;
        for (const auto& p : sent)
            if (on.at(p) == ch) want.push_back(p);
        CHECK(on_ch == want);
    }
    MESSAGE("published " << sent.size() << " messages across the failover; catch-ups "
                         << metric(node.port(), "jugglite_history_catch_ups_total") << ", messages caught up "
                         << metric(node.port(), "jugglite_history_caught_up_messages_total"));
    CHECK(metric(node.port(), "jugglite_history_catch_ups_total") >= 1);
}

TEST_CASE("cluster: each channel's replay ends at its own slot's clock, so a slot far ahead hides no live message") {
    redis_cluster cluster;
    jugglite_server node({"--redis-cluster", cluster.seeds(6), "--history"});
    REQUIRE(eventually([&] { return answers_200(node.port(), "/healthz") && library_everywhere(cluster); }));
    const auto [a, b] = two_masters(cluster, "ahead");
    const std::string from = fcall(cluster, a, "a-first");
    // b's slot clock an hour ahead (a master whose clock ran fast): its ids are all greater
    // than anything a publishes meanwhile. One bound for both channels would count a's live
    // messages held during the resume as replayed, and drop them.
    history_settings settings;
    settings.clock_per_slot = true;
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    REQUIRE(cluster.command(cluster.master_of(b), {"SET", history_clock_key(settings, b),
                                                   std::to_string(now_ms + 3'600'000) + "-0"}) == "OK");
    fcall(cluster, b, "b-ahead");

    // a publishes without pause while the stream resumes.
    std::atomic<int> published{0};
    std::atomic<bool> stop{false};
    std::thread publisher([&, a = a] {
        redis_client r(cluster.master_of(a));
        for (int i = 0; !stop.load() && i < 100'000; ++i) {
            r.command({"FCALL", "jugglite_publish", "1", a, "a" + std::to_string(i)});
            published = i + 1;
        }
    });
    REQUIRE(eventually([&] { return published.load() >= 50; }));
    auto c = resume(node.port(), "/stream?channel=" + a + "," + b, from);
    const bool started = c.read_until(": registered", 10s);
    std::this_thread::sleep_for(300ms);
    stop = true;
    publisher.join();
    REQUIRE(started);
    const std::string last = "a" + std::to_string(published.load() - 1);
    REQUIRE(c.read_until("data: " + last + "\n\n", 10s));
    std::vector<std::string> want{"b-ahead"}, got_a;
    for (int i = 0; i < published.load(); ++i) want.push_back("a" + std::to_string(i));
    auto got = data_of(events_of(c.body()));
    CHECK(std::multiset<std::string>(got.begin(), got.end()) == std::multiset<std::string>(want.begin(), want.end()));
    for (const auto& p : got)
        if (p != "b-ahead") got_a.push_back(p);
    CHECK(std::equal(got_a.begin(), got_a.end(), want.begin() + 1, want.end()));
    MESSAGE(published.load() << " messages published on a during the resume");
}

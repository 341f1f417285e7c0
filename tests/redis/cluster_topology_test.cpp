#include "redis/cluster_topology.h"

#include <doctest/doctest.h>
#include <hiredis/hiredis.h>

#include <initializer_list>
#include <memory>
#include <string>

using namespace jugglite;

namespace {

// RESP builders, to write CLUSTER SHARDS replies as Redis 7 sends them.
std::string bulk(std::string_view s) { return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n"; }
std::string num(long long v) { return ":" + std::to_string(v) + "\r\n"; }
std::string array(std::initializer_list<std::string> items) {
    std::string out = "*" + std::to_string(items.size()) + "\r\n";
    for (const auto& i : items) out += i;
    return out;
}

std::string node(std::string_view id, int port, std::string_view role, std::string_view health,
                 long long offset = 100, std::string_view endpoint = "127.0.0.1") {
    return array({bulk("id"), bulk(id), bulk("port"), num(port), bulk("ip"), bulk("127.0.0.1"),
                  bulk("endpoint"), bulk(endpoint), bulk("role"), bulk(role), bulk("replication-offset"),
                  num(offset), bulk("health"), bulk(health)});
}

struct reply_deleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

reply_ptr read_reply(const std::string& resp) {
    redisReader* reader = redisReaderCreate();
    REQUIRE(redisReaderFeed(reader, resp.data(), resp.size()) == REDIS_OK);
    void* raw = nullptr;
    REQUIRE(redisReaderGetReply(reader, &raw) == REDIS_OK);
    redisReaderFree(reader);
    REQUIRE(raw != nullptr);
    return reply_ptr(static_cast<redisReply*>(raw));
}

// Three shards over the whole slot space, each a master and a replica.
std::string three_shards() {
    return array({
        array({bulk("slots"), array({num(0), num(5460)}), bulk("nodes"),
               array({node("a", 7001, "master", "online", 500), node("d", 7004, "replica", "online", 480)})}),
        array({bulk("slots"), array({num(5461), num(10922)}), bulk("nodes"),
               array({node("b", 7002, "master", "online"), node("e", 7005, "replica", "online")})}),
        array({bulk("slots"), array({num(10923), num(16383)}), bulk("nodes"),
               array({node("c", 7003, "master", "online"), node("f", 7006, "replica", "online")})}),
    });
}

}  // namespace

TEST_CASE("cluster topology: CLUSTER SHARDS gives each slot its shard, master and replica") {
    auto r = read_reply(three_shards());
    auto t = cluster_topology::parse(*r);
    REQUIRE(t);
    CHECK(t->covered_slots() == cluster_slots);
    CHECK(t->shards().size() == 3);
    CHECK(t->shard_for(std::uint16_t{0})->master()->address() == "127.0.0.1:7001");
    CHECK(t->shard_for(std::uint16_t{5460})->master()->port == 7001);
    CHECK(t->shard_for(std::uint16_t{5461})->master()->port == 7002);
    CHECK(t->shard_for(std::uint16_t{16383})->master()->port == 7003);
    CHECK(t->shard_for(std::uint16_t{0})->replica()->port == 7004);
    // A channel is placed by its own slot: "foo" is in 12182, "{user1000}.following" in 3443.
    CHECK(t->shard_for(std::string_view("foo"))->master()->port == 7003);
    CHECK(t->shard_for(std::string_view("{user1000}.following"))->master()->port == 7001);
}

TEST_CASE("cluster topology: a failed master leaves its slots without a master until a replica is promoted") {
    auto during = read_reply(array({
        array({bulk("slots"), array({num(0), num(16383)}), bulk("nodes"),
               array({node("a", 7001, "master", "failed"), node("d", 7004, "replica", "online")})}),
    }));
    auto t = cluster_topology::parse(*during);
    REQUIRE(t);
    const cluster_shard* s = t->shard_for(std::uint16_t{42});
    REQUIRE(s);
    CHECK(s->master() == nullptr);
    CHECK(s->replica() == nullptr);  // a replica of nothing is not read from

    auto after = read_reply(array({
        array({bulk("slots"), array({num(0), num(16383)}), bulk("nodes"),
               array({node("d", 7004, "master", "online"), node("a", 7001, "master", "failed")})}),
    }));
    t = cluster_topology::parse(*after);
    REQUIRE(t);
    CHECK(t->shard_for(std::uint16_t{42})->master()->port == 7004);
}

TEST_CASE("cluster topology: the most up-to-date replica that has not failed is read from") {
    auto r = read_reply(array({
        array({bulk("slots"), array({num(0), num(16383)}), bulk("nodes"),
               array({node("a", 7001, "master", "online", 900), node("d", 7004, "replica", "online", 700),
                      node("e", 7005, "replica", "online", 880), node("f", 7006, "replica", "failed", 899)})}),
    }));
    auto t = cluster_topology::parse(*r);
    REQUIRE(t);
    CHECK(t->shard_for(std::uint16_t{1})->replica()->port == 7005);

    // A fresh cluster's replicas show as loading (offset 0): still candidates.
    auto fresh = read_reply(array({
        array({bulk("slots"), array({num(0), num(16383)}), bulk("nodes"),
               array({node("a", 7001, "master", "online", 0), node("d", 7004, "replica", "loading", 0)})}),
    }));
    t = cluster_topology::parse(*fresh);
    REQUIRE(t);
    CHECK(t->shard_for(std::uint16_t{1})->replica()->port == 7004);
}

TEST_CASE("cluster topology: slots in several ranges, as strings, and a shard with none") {
    auto r = read_reply(array({
        array({bulk("slots"), array({bulk("0"), bulk("99"), num(200), num(16383)}), bulk("nodes"),
               array({node("a", 7001, "master", "online")})}),
        array({bulk("slots"), array({num(100), num(100)}), bulk("nodes"),
               array({node("b", 7002, "master", "online")})}),
        array({bulk("slots"), array({}), bulk("nodes"), array({node("c", 7003, "master", "online")})}),
    }));
    auto t = cluster_topology::parse(*r);
    REQUIRE(t);
    CHECK(t->covered_slots() == cluster_slots - 99);  // 101..199 are in nobody's hands
    CHECK(t->shard_for(std::uint16_t{99})->master()->port == 7001);
    CHECK(t->shard_for(std::uint16_t{100})->master()->port == 7002);
    CHECK(t->shard_for(std::uint16_t{150}) == nullptr);
    CHECK(t->shard_for(std::uint16_t{200})->master()->port == 7001);
    CHECK(t->shards()[2].slots.empty());
}

TEST_CASE("cluster topology: unknown fields are skipped and an unknown endpoint falls back to the ip") {
    auto r = read_reply(array({
        array({bulk("slots"), array({num(0), num(16383)}), bulk("future"), bulk("x"), bulk("nodes"),
               array({array({bulk("id"), bulk("a"), bulk("port"), num(7001), bulk("tls-port"), num(0),
                             bulk("ip"), bulk("10.0.0.5"), bulk("endpoint"), bulk("?"), bulk("hostname"),
                             bulk(""), bulk("role"), bulk("master"), bulk("health"), bulk("online")})})}),
    }));
    auto t = cluster_topology::parse(*r);
    REQUIRE(t);
    CHECK(t->shard_for(std::uint16_t{7})->master()->address() == "10.0.0.5:7001");
}

TEST_CASE("cluster topology: replies of another shape are errors that say what is wrong") {
    auto not_cluster = read_reply("-ERR This instance has cluster support disabled\r\n");
    auto e = cluster_topology::parse(*not_cluster);
    REQUIRE_FALSE(e);
    CHECK(e.error().find("cluster support disabled") != std::string::npos);

    auto odd = read_reply(array({array({bulk("slots"), array({num(5)}), bulk("nodes"), array({})})}));
    e = cluster_topology::parse(*odd);
    REQUIRE_FALSE(e);
    CHECK(e.error() == "shard 0: a shard's slots are not pairs");

    auto range = read_reply(array({array({bulk("slots"), array({num(10), num(16384)}), bulk("nodes"), array({})})}));
    e = cluster_topology::parse(*range);
    REQUIRE_FALSE(e);
    CHECK(e.error().find("16384") != std::string::npos);

    auto no_port = read_reply(array({array({bulk("slots"), array({}), bulk("nodes"),
                                            array({array({bulk("id"), bulk("z"), bulk("ip"), bulk("h")})})})}));
    e = cluster_topology::parse(*no_port);
    REQUIRE_FALSE(e);
    CHECK(e.error() == "shard 0: node z has no port");

    auto status = read_reply("+OK\r\n");
    CHECK_FALSE(cluster_topology::parse(*status));
}

// Redis Cluster's topology as jugglite needs it: which node serves each hash slot. Read
// from CLUSTER SHARDS (Redis 7), whose reply lists each shard's slot ranges and nodes with
// their role and health. The slot function itself is core/key_slot.h.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/key_slot.h"

struct redisReply;

namespace jugglite {

struct cluster_node {
    std::string id;
    std::string host;  // the node's endpoint (cluster-preferred-endpoint-type), else its ip
    std::string ip;    // its ip (what a replica's ROLE names its master by), else host
    std::uint16_t port = 0;
    bool master = false;
    bool online = false;  // health "online": not failed, not loading
    bool failed = false;  // health "fail"/"failed": the cluster gave up on it
    std::int64_t replication_offset = 0;

    // host:port, the name jugglite gives the node in logs and metrics.
    [[nodiscard]] std::string address() const;
};

struct cluster_shard {
    std::vector<std::pair<std::uint16_t, std::uint16_t>> slots;  // inclusive ranges
    std::vector<cluster_node> nodes;

    // The node writes go to: the online master, else null (a failover is under way).
    [[nodiscard]] const cluster_node* master() const noexcept;
    // The replica of master() that has not failed with the highest replication offset, else
    // null. Its health may say "loading" (CLUSTER SHARDS says so of a replica whose offset
    // it saw as 0, as in a cluster that has had no writes yet): what the replica itself
    // says (ROLE) decides whether it is read from.
    [[nodiscard]] const cluster_node* replica() const noexcept;
};

class cluster_topology {
public:
    static constexpr std::int32_t no_shard = -1;

    cluster_topology();

    // Parses a CLUSTER SHARDS reply. Fields it doesn't know are skipped (later Redis
    // versions add some); a reply of another shape is an error that says where.
    // `queried_host` stands in for a node that reports no address of its own.
    [[nodiscard]] static std::expected<cluster_topology, std::string> parse(
        const redisReply& reply, std::string_view queried_host = {});

    // The shard serving `slot`, or null when no shard claims it.
    [[nodiscard]] const cluster_shard* shard_for(std::uint16_t slot) const noexcept;
    [[nodiscard]] const cluster_shard* shard_for(std::string_view channel) const noexcept {
        return shard_for(key_slot(channel));
    }
    // Slots some shard claims (16384 on a healthy cluster).
    [[nodiscard]] std::size_t covered_slots() const noexcept { return _covered; }
    [[nodiscard]] const std::vector<cluster_shard>& shards() const noexcept { return _shards; }

private:
    std::vector<cluster_shard> _shards;
    std::vector<std::int32_t> _owner;  // per slot: an index into _shards, or no_shard
    std::size_t _covered = 0;
};

}  // namespace jugglite

// A real Redis Cluster for integration tests: redis-servers in cluster mode on free local
// ports, joined with `redis-cli --cluster create`, with a short cluster-node-timeout so
// that a failover takes seconds.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/servers.h"

namespace test {

class redis_cluster {
public:
    static constexpr int node_timeout_ms = 1500;

    // `masters` masters with `replicas` replicas each.
    explicit redis_cluster(int masters = 3, int replicas = 1);
    ~redis_cluster();

    [[nodiscard]] const std::vector<int>& ports() const { return _ports; }
    // "redis://127.0.0.1:<p1>,redis://127.0.0.1:<p2>": seeds for --redis-cluster.
    [[nodiscard]] std::string seeds(std::size_t count = 2) const;
    // The port of the master serving `key`'s slot now, as the live nodes see it (0: none).
    [[nodiscard]] int master_of(std::string_view key);
    // The ports of the masters serving slots now.
    [[nodiscard]] std::vector<int> masters();
    // A node's cluster id.
    [[nodiscard]] std::string node_id(int port);
    // Runs a command on the node at `port`; its reply as text (an error as "ERR ...").
    std::string command(int port, const std::vector<std::string>& args);
    // SPUBLISH on the channel's master (following MOVED); the number of receivers, or -1.
    long long spublish(std::string_view channel, std::string_view payload);
    // PUBLISH on any live node (classic pub/sub reaches the whole cluster).
    long long publish(std::string_view channel, std::string_view payload);
    // Kills the node at `port` (SIGKILL); restart() brings it back with its cluster state.
    void kill(int port);
    void restart(int port);
    // Moves `slot` to the master at `to`, as redis-cli --cluster reshard does (no keys).
    void move_slot(int slot, int to);
    // True once every live node says cluster_state:ok and agrees that every slot has an
    // online master.
    bool healthy();
    // True once every live replica's link to its master is up.
    bool replicas_synced();

private:
    [[nodiscard]] bool alive(int port) const;
    std::vector<int> _ports;
    std::map<int, std::unique_ptr<redis_server>> _nodes;
    std::vector<int> _dead;
};

}  // namespace test

#include "support/cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <sstream>
#include <stdexcept>

#include "support/process.h"

namespace test {

namespace {

bool can_bind(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    ::close(fd);
    return ok;
}

// A port whose cluster bus port (+10000) is free too.
int free_cluster_port(const std::vector<int>& taken) {
    static std::minstd_rand rng{std::random_device{}()};
    for (int attempt = 0; attempt < 1000; ++attempt) {
        int p = 20000 + static_cast<int>(rng() % 25000);
        bool clash = false;
        for (int t : taken) clash |= t == p || t + 10000 == p || p + 10000 == t;
        if (!clash && can_bind(p) && can_bind(p + 10000)) return p;
    }
    throw std::runtime_error("no free port pair for a cluster node");
}

// One line of CLUSTER NODES: "<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch>
// <link> <slot ranges...>".
struct node_line {
    std::string id;
    int port = 0;
    bool master = false;
    bool failed = false;
    std::vector<std::pair<int, int>> slots;
};

std::vector<node_line> parse_nodes(const std::string& text) {
    std::vector<node_line> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        node_line n;
        std::string addr, flags, master, ping, pong, epoch, link;
        if (!(f >> n.id >> addr >> flags >> master >> ping >> pong >> epoch >> link)) continue;
        auto colon = addr.find(':');
        auto at = addr.find('@');
        if (colon == std::string::npos) continue;
        n.port = std::atoi(addr.substr(colon + 1, at - colon - 1).c_str());
        n.master = flags.find("master") != std::string::npos;
        n.failed = flags.find("fail") != std::string::npos;
        std::string range;
        while (f >> range) {
            if (range.starts_with('[')) continue;  // a slot being migrated
            auto dash = range.find('-');
            int lo = std::atoi(range.substr(0, dash).c_str());
            int hi = dash == std::string::npos ? lo : std::atoi(range.substr(dash + 1).c_str());
            n.slots.emplace_back(lo, hi);
        }
        out.push_back(std::move(n));
    }
    return out;
}

}  // namespace

redis_cluster::redis_cluster(int masters, int replicas) {
    const int count = masters * (1 + replicas);
    for (int i = 0; i < count; ++i) {
        int port = free_cluster_port(_ports);
        _ports.push_back(port);
        _nodes[port] = std::make_unique<redis_server>(
            port, std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                           "--cluster-node-timeout", std::to_string(node_timeout_ms),
                                           "--repl-diskless-sync-delay", "0"});
    }
    std::vector<std::string> argv{"/usr/bin/redis-cli", "--cluster", "create"};
    for (int p : _ports) argv.push_back("127.0.0.1:" + std::to_string(p));
    argv.insert(argv.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
    const std::string log = temp_dir() + "/create.log";
    auto create = child_process::spawn(argv, {}, log);
    std::optional<int> status;
    eventually([&] { return (status = create.poll_exit()).has_value(); }, 60s);
    if (status != 0) throw std::runtime_error("redis-cli --cluster create failed: " + create.log());
    // A replica that never finished its first sync refuses to fail over (its data counts
    // as too old): wait for every replica's link to its master.
    if (!eventually([&] { return healthy() && replicas_synced(); }, 30s))
        throw std::runtime_error("the cluster did not become healthy");
}

bool redis_cluster::replicas_synced() {
    try {
        for (int port : _ports) {
            if (!alive(port)) continue;
            const std::string info = command(port, {"INFO", "replication"});
            if (info.find("role:slave") != std::string::npos &&
                info.find("master_link_status:up") == std::string::npos)
                return false;
        }
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

redis_cluster::~redis_cluster() = default;

std::string redis_cluster::seeds(std::size_t count) const {
    std::string out;
    for (std::size_t i = 0; i < count && i < _ports.size(); ++i) {
        if (!out.empty()) out += ',';
        out += "redis://127.0.0.1:" + std::to_string(_ports[i]);
    }
    return out;
}

std::string redis_cluster::command(int port, const std::vector<std::string>& args) {
    redis_client c(port);
    return c.command(args);
}

int redis_cluster::master_of(std::string_view key) {
    for (int p : _ports) {
        if (!alive(p)) continue;
        try {
            const int slot = std::stoi(command(p, {"CLUSTER", "KEYSLOT", std::string(key)}));
            for (const auto& n : parse_nodes(command(p, {"CLUSTER", "NODES"}))) {
                if (!n.master || n.failed) continue;
                for (auto [lo, hi] : n.slots)
                    if (slot >= lo && slot <= hi) return n.port;
            }
            return 0;
        } catch (const std::exception&) {
        }
    }
    return 0;
}

std::vector<int> redis_cluster::masters() {
    for (int p : _ports) {
        if (!alive(p)) continue;
        try {
            std::vector<int> out;
            for (const auto& n : parse_nodes(command(p, {"CLUSTER", "NODES"})))
                if (n.master && !n.failed && !n.slots.empty()) out.push_back(n.port);
            return out;
        } catch (const std::exception&) {
        }
    }
    return {};
}

std::string redis_cluster::node_id(int port) { return command(port, {"CLUSTER", "MYID"}); }

long long redis_cluster::spublish(std::string_view channel, std::string_view payload) {
    int port = master_of(channel);
    for (int hop = 0; hop < 3 && port != 0; ++hop) {
        std::string r = command(port, {"SPUBLISH", std::string(channel), std::string(payload)});
        if (r.starts_with("MOVED")) {
            port = std::atoi(r.substr(r.rfind(':') + 1).c_str());
            continue;
        }
        try {
            return std::stoll(r);
        } catch (const std::exception&) {
            return -1;
        }
    }
    return -1;
}

long long redis_cluster::publish(std::string_view channel, std::string_view payload) {
    for (int p : _ports) {
        if (!alive(p)) continue;
        try {
            return std::stoll(command(p, {"PUBLISH", std::string(channel), std::string(payload)}));
        } catch (const std::exception&) {
        }
    }
    return -1;
}

void redis_cluster::kill(int port) {
    _nodes.at(port)->stop();  // SIGKILL
    _dead.push_back(port);
}

void redis_cluster::restart(int port) {
    _nodes.at(port)->start();
    std::erase(_dead, port);
}

bool redis_cluster::alive(int port) const { return std::find(_dead.begin(), _dead.end(), port) == _dead.end(); }

void redis_cluster::move_slot(int slot, int to) {
    const std::string s = std::to_string(slot);
    int from = 0;
    for (int p : masters()) {
        for (const auto& n : parse_nodes(command(p, {"CLUSTER", "NODES"})))
            if (n.port == p && n.master)
                for (auto [lo, hi] : n.slots)
                    if (slot >= lo && slot <= hi) from = p;
    }
    if (from == 0 || from == to) throw std::runtime_error("move_slot: no master to move slot " + s + " from");
    const std::string to_id = node_id(to), from_id = node_id(from);
    command(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", from_id});
    command(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", to_id});
    // No keys to MIGRATE: pub/sub channels are not keys.
    command(to, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
    command(from, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
    for (int p : masters())
        if (p != to && p != from) command(p, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
}

bool redis_cluster::healthy() {
    try {
        for (int port : _ports) {
            if (!alive(port)) continue;
            if (command(port, {"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos) return false;
            std::vector<bool> covered(16384, false);
            for (const auto& n : parse_nodes(command(port, {"CLUSTER", "NODES"}))) {
                if (!n.master || n.failed) continue;
                for (auto [lo, hi] : n.slots)
                    for (int s = lo; s <= hi; ++s) covered[static_cast<std::size_t>(s)] = true;
            }
            for (bool c : covered)
                if (!c) return false;
        }
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace test

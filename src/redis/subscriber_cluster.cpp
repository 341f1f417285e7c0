// The redis thread on a Redis Cluster (--redis-cluster).
//
// A command link (the topology link) reads CLUSTER SHARDS from a seed, then from any node
// it has learnt of, and keeps reading it: every limits::cluster_refresh_interval (a
// replica re-pointed to another master sends no notice), and, at most every
// limits::cluster_refresh_min, whenever something says it changed (a link lost, a node's
// own sunsubscribe, a MOVED) until every channel is subscribed again.
//
// Each shard that serves slots gets a subscriber link to its master. With
// --redis-read-from replica, to its most up-to-date online replica instead, while that
// replica's ROLE (asked every second on a command link of its own) says it replicates from
// that master with its link up; else to the master again. A channel lives on the link of
// its slot's shard (with classic pub/sub, every channel lives on one node's link, kept
// while that node stays online and reachable). A channel whose link changed moves: the
// shards are told it is unconfirmed, and it is subscribed on its new link. Links no longer
// needed are closed.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <unordered_map>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/log.h"
#include "redis/redis_subscriber.h"

namespace jugglite {

redis_subscriber::node_link* redis_subscriber::find_link(link_id id) noexcept {
    for (auto& l : _links)
        if (l->id == id) return l.get();
    return nullptr;
}

redis_subscriber::link_id redis_subscriber::link_for(std::string_view channel) const noexcept {
    if (!_topology_link) return 0;
    if (!_cfg.sharded_pubsub()) return _links.empty() ? subscription_table::no_link : _links.front()->id;
    // Redis places the channel by the name it sees, namespace included.
    std::uint16_t slot = _cfg.namespace_prefix.empty()
                             ? key_slot(channel)
                             : key_slot(_cfg.namespace_prefix + std::string(channel));
    return _slot_links[slot];
}

bool redis_subscriber::link_live(link_id id) noexcept {
    const node_link* l = find_link(id);
    return l && l->state == link_state::live;
}

void redis_subscriber::refresh_topology(std::string_view why) noexcept {
    if (!_refresh_wanted) log::info("redis: reading the cluster topology again: {}", why);
    _refresh_wanted = true;
}

void redis_subscriber::topology_turn(std::int64_t now) noexcept {
    node_link& t = *_topology_link;
    if (t.state == link_state::down && now >= t.next_attempt_ms) {
        // Seeds first, then the nodes the last topology named: any node can answer.
        t.endpoint = _known_nodes[_next_seed++ % _known_nodes.size()];
        t.endpoint.user = _cfg.redis.user;
        t.endpoint.password = _cfg.redis.password;
        start_connect(t, now);
    }
    if (t.state == link_state::live && t.fifo.empty()) {
        const bool urgent = _refresh_wanted || _status.state.load(std::memory_order_relaxed) != redis_status::ready;
        if (now >= _next_refresh_ms || (urgent && now - _last_refresh_ms >= limits::cluster_refresh_min.count())) {
            send(t, command::cluster_shards, {}, now);
            _last_refresh_ms = now;
            _refresh_wanted = false;
        }
    }
    check_deadlines(t, now);
    if (t.ctx && t.state != link_state::connecting) flush_writes(t);
    if (_replace_wanted) {
        try {
            place_channels(now);
        } catch (const std::bad_alloc&) {
            _replace_wanted = true;  // again next turn
        }
    }
}

void redis_subscriber::on_topology(const redisReply& r, std::int64_t now) noexcept {
    node_link& t = *_topology_link;
    _next_refresh_ms = now + limits::cluster_refresh_interval.count();
    auto topology = cluster_topology::parse(r, t.endpoint.host);
    if (!topology) {
        // Not a cluster node, or one that can't tell: ask another.
        disconnect(t, topology.error());
        return;
    }
    // A node that knows of no slot (a fresh node, one that lost its nodes.conf) would
    // unplace every channel: ask another.
    if (topology->covered_slots() == 0) {
        disconnect(t, "it knows of no slot served");
        return;
    }
    try {
        apply_topology(std::move(*topology), now);
    } catch (const std::bad_alloc&) {
        disconnect(t, "out of memory applying the topology");
        return;
    }
    // Channels left without a node read after read: this node's view may be the odd one
    // (a minority partition): ask another.
    _unplaced_reads = _table.load(subscription_table::no_link) > 0 ? _unplaced_reads + 1 : 0;
    if (_unplaced_reads >= 3) {
        _unplaced_reads = 0;
        disconnect(t, "channels have no node in its view");
    }
}

void redis_subscriber::apply_topology(cluster_topology t, std::int64_t now) {
    _metrics.topology_reads.bump();
    _metrics.cluster_slots.set(t.covered_slots());
    _known_nodes = _cfg.cluster_seeds;
    for (const auto& s : t.shards())
        for (const auto& n : s.nodes) {
            redis_endpoint ep = _cfg.redis;
            ep.host = n.host;
            ep.port = n.port;
            _known_nodes.push_back(std::move(ep));
        }
    if (_history) {
        // The history thread keeps the library loaded on every master.
        std::vector<history_node> masters;
        for (const auto& s : t.shards())
            if (const cluster_node* m = s.master(); m && !s.slots.empty()) masters.push_back({m->host, m->port});
        std::lock_guard lock(_history->masters_mutex);
        _history->masters = std::move(masters);
    }
    _topology = std::move(t);
    _unsettled = false;
    place_channels(now);
}

// `l` is the subscriber link to node `n` in its role.
bool redis_subscriber::serves(const node_link& l, const cluster_node& n) noexcept {
    return l.endpoint.host == n.host && l.endpoint.port == n.port && l.replica == !n.master;
}

// The link to `n` among the current ones, or null.
redis_subscriber::node_link* redis_subscriber::existing_link(const cluster_node& n) noexcept {
    for (auto& l : _links)
        if (serves(*l, n)) return l.get();
    return nullptr;
}

std::unique_ptr<redis_subscriber::node_link> redis_subscriber::new_link(const cluster_node& n) {
    auto l = std::make_unique<node_link>();
    l->id = _next_link++;
    l->endpoint = _cfg.redis;
    l->endpoint.host = n.host;
    l->endpoint.port = n.port;
    l->replica = !n.master;
    if (l->replica && _cfg.sharded_pubsub() && _cfg.read_from_replicas) {
        l->checker = std::make_unique<node_link>();
        l->checker->kind = node_link::role_check;
        l->checker->endpoint = l->endpoint;
        l->checker->owner = l.get();
    }
    log::info("redis: cluster node {} ({}) may serve channels", l->endpoint.display(),
              n.master ? "master" : "replica");
    return l;
}

// Puts every channel on the link of the node that serves its slot now, from the last
// topology read and, with --redis-read-from replica, what the replicas' ROLE says.
void redis_subscriber::place_channels(std::int64_t now) {
    _replace_wanted = false;
    if (!_topology) return;
    const cluster_topology& t = *_topology;

    // First what each shard's channels live on, as nodes; nothing changes until every
    // allocation is done, so that running out of memory leaves the links as they were.
    std::vector<const cluster_node*> picked(t.shards().size(), nullptr);
    if (_cfg.sharded_pubsub()) {
        for (std::size_t i = 0; i < t.shards().size(); ++i) {
            const cluster_shard& s = t.shards()[i];
            const cluster_node* master = s.master();
            if (s.slots.empty() || !master) continue;
            picked[i] = master;
            if (!_cfg.read_from_replicas) continue;
            // The replica read from so far stays while it has not failed (which replica is
            // ahead under writes is close to random); else the most up-to-date one. Its
            // link is kept while it is a candidate, so that its ROLE is known, and the
            // shard's channels live on it only while that says it is fit.
            const cluster_node* replica = nullptr;
            for (const auto& n : s.nodes) {
                const node_link* l = n.master || n.failed ? nullptr : existing_link(n);
                if (l && l->fit && l->expected_master == fmt::format("{}:{}", master->ip, master->port))
                    replica = &n;
            }
            if (!replica) replica = s.replica();
            if (replica) picked[i] = replica;
        }
    } else {
        // Classic pub/sub reaches every node: keep the node subscribed on while it is online
        // and its link is not failing to reconnect; else move to another online master.
        const node_link* current = _links.empty() ? nullptr : _links.front().get();
        const bool failing = current && current->state != link_state::live && current->failures > 0;
        const cluster_node* same = nullptr;
        const cluster_node* other = nullptr;
        for (const auto& s : t.shards())
            for (const auto& n : s.nodes) {
                if (!n.online) continue;
                if (n.address() == _classic_node) same = &n;
                else if (!other && n.master) other = &n;
            }
        if (const cluster_node* keep = same && !failing ? same : other ? other : same) {
            _classic_node = keep->address();
            std::fill(picked.begin(), picked.end(), keep);
        }
    }

    // The links those nodes need, existing or new; a replica not fit yet sends its shard's
    // channels to the master meanwhile.
    std::vector<std::unique_ptr<node_link>> fresh;
    std::vector<node_link*> needed;
    auto link_of_node = [&](const cluster_node& n) -> node_link* {
        if (node_link* l = existing_link(n)) return l;
        for (auto& f : fresh)
            if (serves(*f, n)) return f.get();
        fresh.push_back(new_link(n));
        return fresh.back().get();
    };
    std::vector<link_id> shard_links(picked.size(), subscription_table::no_link);
    for (std::size_t i = 0; i < picked.size(); ++i) {
        if (!picked[i]) continue;
        node_link* l = link_of_node(*picked[i]);
        needed.push_back(l);
        if (l->replica && _cfg.sharded_pubsub()) {
            const cluster_node* master = t.shards()[i].master();
            const std::string expected = fmt::format("{}:{}", master->ip, master->port);
            if (l->expected_master != expected) {
                l->expected_master = expected;
                l->fit = false;  // until its ROLE names that master
            }
            if (!l->fit) {
                l = link_of_node(*master);
                needed.push_back(l);
            }
        }
        shard_links[i] = l->id;
    }
    std::vector<std::unique_ptr<node_link>> next;
    next.reserve(needed.size());
    std::vector<std::unique_ptr<node_link>> retired;
    retired.reserve(_links.size());

    // Commit: from here on nothing allocates but the table's own work.
    for (auto& l : _links) {
        if (std::find(needed.begin(), needed.end(), l.get()) != needed.end()) next.push_back(std::move(l));
        else retired.push_back(std::move(l));
    }
    for (auto& f : fresh)
        if (std::find(needed.begin(), needed.end(), f.get()) != needed.end()) next.push_back(std::move(f));
    _links = std::move(next);
    for (auto& old : retired) {
        log::info("redis: cluster node {} no longer serves channels; closing its link", old->endpoint.display());
        for (const auto& [name, mask] : _table.on_link_lost(old->id)) notify(mask, channel_notice::unconfirmed, name);
    }
    retired.clear();
    update_subscribed_gauge();

    // Each slot's link, then every channel on the link of its slot. A channel that left a
    // link which stays up is unsubscribed there.
    std::fill(_slot_links.begin(), _slot_links.end(), subscription_table::no_link);
    for (unsigned slot = 0; slot < cluster_slots; ++slot) {
        const cluster_shard* s = t.shard_for(static_cast<std::uint16_t>(slot));
        if (s) _slot_links[slot] = shard_links[static_cast<std::size_t>(s - t.shards().data())];
    }
    std::size_t moved = 0;
    std::unordered_map<link_id, std::vector<std::string>> leave;
    for (auto& m : _table.place([&](std::string_view channel) { return link_for(channel); })) {
        notify(m.shards, channel_notice::unconfirmed, m.name);
        if (_history && m.shards == 0) _windows->forget(m.name);
        else if (_history) history_missed(m.name);
        if (m.subscribed_there && link_live(m.from)) leave[m.from].push_back(std::move(m.name));
        if (m.shards == 0 || m.from == subscription_table::no_link) continue;  // forgotten, or had no node
        _metrics.channels_moved.bump();
        ++moved;
    }
    if (moved > 0) log::info("redis: {} channels moved to another node", moved);
    for (auto& [id, names] : leave) send_batched(*find_link(id), command::unsubscribe, std::move(names), now);
    for (auto& l : _links) {
        if (l->state != link_state::live) continue;
        auto channels = _table.on_link_up(l->id);
        if (channels.empty()) continue;
        send_batched(*l, command::subscribe, std::move(channels), now);
        send(*l, command::resync_ping, {}, now);
    }
}

// A replica's command link: ROLE every PING interval.
void redis_subscriber::check_turn(node_link& c, std::int64_t now) noexcept {
    if (c.state == link_state::down && now >= c.next_attempt_ms) start_connect(c, now);
    if (c.state == link_state::live && c.fifo.empty() && now >= c.next_ping_ms) {
        send(c, command::role, {}, now);
        c.next_ping_ms = now + limits::redis_ping_interval.count();
    }
    check_deadlines(c, now);
    if (c.ctx && c.state != link_state::connecting) flush_writes(c);
}

// ROLE on a replica: ["slave", master host, master port, link state, offset]. It is fit to
// read from while it replicates from the master its shard names, with the link up: a
// replica cut off from its master, or moved to another, goes quiet without an error.
void redis_subscriber::on_role(node_link& c, const redisReply& r) noexcept {
    if (!c.owner) return;
    node_link& replica = *c.owner;
    auto text = [](const redisReply& e) {
        return e.type == REDIS_REPLY_STRING || e.type == REDIS_REPLY_STATUS
                   ? std::string_view(e.str, static_cast<std::size_t>(e.len))
                   : std::string_view{};
    };
    if (r.type != REDIS_REPLY_ARRAY || r.elements < 4 || text(*r.element[0]) != "slave") {
        set_fit(replica, false, r.type == REDIS_REPLY_ERROR ? text(r) : "it is not a replica");
        return;
    }
    const long long port = r.element[2]->type == REDIS_REPLY_INTEGER ? r.element[2]->integer : 0;
    const std::string master = fmt::format("{}:{}", text(*r.element[1]), port);
    const std::string_view state = text(*r.element[3]);
    if (master != replica.expected_master)
        set_fit(replica, false, fmt::format("it replicates from {}, not {}", master, replica.expected_master));
    else if (state != "connected")
        set_fit(replica, false, fmt::format("its link to {} is {}", master, state));
    else
        set_fit(replica, true, "");
}

void redis_subscriber::set_fit(node_link& replica, bool fit, std::string_view why) noexcept {
    if (replica.fit == fit) return;
    replica.fit = fit;
    if (fit)
        log::info("redis: replica {} replicates from {}: reading from it", replica.endpoint.display(),
                  replica.expected_master);
    else
        log::warn("redis: replica {} is not fit to read from ({}); reading from its master",
                  replica.endpoint.display(), why);
    _replace_wanted = true;
}

// `l`'s node dropped `channel` on its own: its slot is elsewhere now.
void redis_subscriber::on_dropped(node_link& l, const std::string& channel) noexcept {
    _metrics.channels_dropped_by_redis.bump();
    notify(_table.on_dropped(channel, l.id), channel_notice::unconfirmed, channel);
    if (_history) history_missed(channel);
    _unsettled = true;
    refresh_topology("a node dropped a channel");
}

// Ready when the topology is known, some node answers, and every channel jugglite needs
// lives on a node whose link is up with its channels answered. A lost node whose slots
// jugglite doesn't need leaves it ready.
void redis_subscriber::update_cluster_state() noexcept {
    bool any_live = _topology_link->state == link_state::live;
    bool all_ready = _topology.has_value() && !_unsettled && _table.load(subscription_table::no_link) == 0;
    bool any_connecting = _topology_link->state != link_state::down;
    for (const auto& l : _links) {
        any_live |= l->state == link_state::live;
        any_connecting |= l->state != link_state::down;
        if (_table.load(l->id) > 0 && !(l->state == link_state::live && l->resynced)) all_ready = false;
    }
    redis_status::state_t s = all_ready && any_live ? redis_status::ready
                              : any_live            ? redis_status::resubscribing
                              : any_connecting      ? redis_status::connecting
                                                    : redis_status::disconnected;
    _status.state.store(s, std::memory_order_relaxed);
    // /metrics' per-node series, rebuilt (strings and all) only when a link's id, state or
    // channel count changed: the comparison reuses one vector and allocates nothing.
    _node_sig.clear();
    for (const auto& l : _links) _node_sig.push_back({l->id, l->state == link_state::live, _table.load(l->id)});
    if (_node_sig != _published_sig) {
        _published_sig = _node_sig;
        publish_node_states();
    }
}

void redis_subscriber::publish_node_states() noexcept {
    try {
        std::vector<redis_node_state> nodes;
        nodes.reserve(_links.size());
        for (const auto& l : _links) {
            nodes.push_back({l->endpoint.display(),
                             !_cfg.sharded_pubsub() ? "classic" : l->replica ? "replica" : "master",
                             l->state == link_state::live, _table.load(l->id)});
        }
        _metrics.nodes.set(std::move(nodes));
    } catch (const std::bad_alloc&) {
    }
}

}  // namespace jugglite

// The redis thread on a Redis Cluster (--redis-cluster).
//
// A command link (the topology link) reads CLUSTER SHARDS from a seed, then from any node
// it has learnt of, and keeps reading it: every limits::cluster_refresh_interval, and, at
// most every limits::cluster_refresh_min, whenever something says it changed (a link lost,
// a node's own sunsubscribe, a MOVED) until every channel is subscribed again.
//
// Each topology picks one node per shard that serves slots: its master, or with
// --redis-read-from replica its most up-to-date online replica. Each picked node gets a
// subscriber link; a channel lives on the link of its slot's node (with classic pub/sub,
// every channel lives on one node's link, kept while that node stays online). A channel
// whose node changed moves: the shards are told it is unconfirmed, and it is subscribed on
// its new link. Links of nodes no longer picked are closed.
#include <hiredis/hiredis.h>

#include <algorithm>

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
    try {
        apply_topology(std::move(*topology), now);
    } catch (const std::bad_alloc&) {
        disconnect(t, "out of memory applying the topology");
    }
}

void redis_subscriber::apply_topology(cluster_topology t, std::int64_t now) {
    _metrics.topology_reads.bump();
    _metrics.cluster_slots.set(t.covered_slots());
    const bool sharded = _cfg.sharded_pubsub();

    // The node each shard's channels live on.
    std::vector<const cluster_node*> picked(t.shards().size(), nullptr);
    if (sharded) {
        for (std::size_t i = 0; i < t.shards().size(); ++i) {
            const cluster_shard& s = t.shards()[i];
            if (s.slots.empty()) continue;
            picked[i] = _cfg.read_from_replicas && s.replica() ? s.replica() : s.master();
        }
    } else {
        // Classic pub/sub reaches every node: keep the node subscribed on while it is online.
        const cluster_node* keep = nullptr;
        const cluster_node* first = nullptr;
        for (const auto& s : t.shards())
            for (const auto& n : s.nodes) {
                if (!n.online) continue;
                if (n.address() == _classic_node) keep = &n;
                if (!first && n.master) first = &n;
            }
        if (!keep) keep = first;
        if (keep) {
            _classic_node = keep->address();
            for (auto& p : picked) p = keep;
        }
    }

    // A link per picked node; links of nodes no longer picked are closed.
    std::vector<link_id> shard_links(picked.size(), subscription_table::no_link);
    std::vector<std::unique_ptr<node_link>> kept;
    for (std::size_t i = 0; i < picked.size(); ++i) {
        const cluster_node* n = picked[i];
        if (!n) continue;
        const std::string address = n->address();
        auto match = [&](const std::unique_ptr<node_link>& l) {
            return l && l->endpoint.display() == address && l->replica == !n->master;
        };
        node_link* l = nullptr;
        if (auto it = std::find_if(kept.begin(), kept.end(), match); it != kept.end()) {
            l = it->get();
        } else if (auto old = std::find_if(_links.begin(), _links.end(), match); old != _links.end()) {
            kept.push_back(std::move(*old));
            l = kept.back().get();
        } else {
            auto fresh = std::make_unique<node_link>();
            fresh->id = _next_link++;
            fresh->endpoint = _cfg.redis;
            fresh->endpoint.host = n->host;
            fresh->endpoint.port = n->port;
            fresh->replica = !n->master;
            log::info("redis: cluster node {} ({}) serves channels", address, n->master ? "master" : "replica");
            kept.push_back(std::move(fresh));
            l = kept.back().get();
        }
        shard_links[i] = l->id;
    }
    for (auto& old : _links) {
        if (!old) continue;
        log::info("redis: cluster node {} no longer serves channels; closing its link", old->endpoint.display());
        for (const auto& [name, mask] : _table.on_link_lost(old->id)) notify(mask, channel_notice::unconfirmed, name);
    }
    _links = std::move(kept);
    std::uint64_t subscribed = 0;
    for (const auto& l : _links) subscribed += l->subscribed;
    _metrics.subscribed_channels.set(subscribed);

    // Each slot's link, then every channel on the link of its slot.
    std::fill(_slot_links.begin(), _slot_links.end(), subscription_table::no_link);
    for (unsigned slot = 0; slot < cluster_slots; ++slot) {
        const cluster_shard* s = t.shard_for(static_cast<std::uint16_t>(slot));
        if (s) _slot_links[slot] = shard_links[static_cast<std::size_t>(s - t.shards().data())];
    }
    std::size_t moved = 0;
    for (const auto& m : _table.place([&](std::string_view channel) { return link_for(channel); })) {
        notify(m.shards, channel_notice::unconfirmed, m.name);
        if (m.from == subscription_table::no_link) continue;  // it had no node yet
        _metrics.channels_moved.bump();
        ++moved;
    }
    if (moved > 0) log::info("redis: {} channels moved to another node", moved);
    for (auto& l : _links) {
        if (l->state != link_state::live) continue;
        auto channels = _table.on_link_up(l->id);
        if (channels.empty()) continue;
        l->resynced = false;
        send_batched(*l, command::subscribe, std::move(channels), now);
        send(*l, command::resync_ping, {}, now);
    }

    _known_nodes = _cfg.cluster_seeds;
    for (const auto& s : t.shards())
        for (const auto& n : s.nodes) {
            redis_endpoint ep = _cfg.redis;
            ep.host = n.host;
            ep.port = n.port;
            _known_nodes.push_back(std::move(ep));
        }
    _topology = std::move(t);
    _unsettled = false;
}

// `l`'s node dropped `channel` on its own: its slot is elsewhere now.
void redis_subscriber::on_dropped(node_link& l, const std::string& channel) noexcept {
    _metrics.channels_dropped_by_redis.bump();
    notify(_table.on_dropped(channel, l.id), channel_notice::unconfirmed, channel);
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
    publish_node_states();
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
        if (nodes == _published_nodes) return;
        _metrics.nodes.set(nodes);
        _published_nodes = std::move(nodes);
    } catch (const std::bad_alloc&) {
    }
}

}  // namespace jugglite

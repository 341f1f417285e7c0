#include "redis/cluster_topology.h"

#include <hiredis/hiredis.h>

#include <charconv>

#include <fmt/format.h>

namespace jugglite {

namespace {

std::string_view text(const redisReply& r) {
    if (r.type != REDIS_REPLY_STRING && r.type != REDIS_REPLY_STATUS) return {};
    return {r.str, static_cast<std::size_t>(r.len)};
}

// An integer field: RESP integer, or its decimal text.
std::expected<std::int64_t, std::string> integer(const redisReply& r, std::string_view what) {
    if (r.type == REDIS_REPLY_INTEGER) return r.integer;
    std::string_view t = text(r);
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc{} || end != t.data() + t.size())
        return std::unexpected(fmt::format("{} is not an integer", what));
    return v;
}

// Calls `field(name, value)` for each pair of a flat map ([k1, v1, k2, v2, ...]).
template <class F>
std::expected<void, std::string> for_each_field(const redisReply& map, std::string_view what, F&& field) {
    if (map.type != REDIS_REPLY_ARRAY || map.elements % 2 != 0)
        return std::unexpected(fmt::format("{} is not a map", what));
    for (std::size_t i = 0; i < map.elements; i += 2) {
        if (auto r = field(text(*map.element[i]), *map.element[i + 1]); !r) return r;
    }
    return {};
}

std::expected<cluster_node, std::string> parse_node(const redisReply& r, std::string_view queried_host) {
    cluster_node n;
    std::string ip, endpoint;
    bool has_port = false;
    auto ok = for_each_field(r, "a node", [&](std::string_view key, const redisReply& v)
                                              -> std::expected<void, std::string> {
        if (key == "id") {
            n.id = std::string(text(v));
        } else if (key == "port") {
            auto p = integer(v, "a node's port");
            if (!p) return std::unexpected(p.error());
            if (*p <= 0 || *p > 65535) return std::unexpected(fmt::format("port {} is out of range", *p));
            n.port = static_cast<std::uint16_t>(*p);
            has_port = true;
        } else if (key == "ip") {
            ip = std::string(text(v));
        } else if (key == "endpoint") {
            endpoint = std::string(text(v));
        } else if (key == "role") {
            n.master = text(v) == "master";
        } else if (key == "health") {
            n.online = text(v) == "online";
            n.failed = text(v) == "fail" || text(v) == "failed";
        } else if (key == "replication-offset") {
            auto o = integer(v, "a node's replication-offset");
            if (!o) return std::unexpected(o.error());
            n.replication_offset = *o;
        }
        return {};
    });
    if (!ok) return std::unexpected(ok.error());
    // A node with no TLS-less port (TLS only) can't be reached by hiredis without TLS.
    if (!has_port) return std::unexpected(fmt::format("node {} has no port", n.id));
    // "?" is an endpoint the node doesn't know; an empty ip, a node that doesn't know its
    // own address (it answers as the node queried).
    n.host = !endpoint.empty() && endpoint != "?" ? endpoint : !ip.empty() ? ip : std::string(queried_host);
    if (n.host.empty()) return std::unexpected(fmt::format("node {} has no address", n.id));
    n.ip = ip.empty() ? n.host : ip;
    return n;
}

std::expected<cluster_shard, std::string> parse_shard(const redisReply& r, std::string_view queried_host) {
    cluster_shard s;
    auto ok = for_each_field(r, "a shard", [&](std::string_view key, const redisReply& v)
                                               -> std::expected<void, std::string> {
        if (key == "slots") {
            if (v.type != REDIS_REPLY_ARRAY || v.elements % 2 != 0)
                return std::unexpected("a shard's slots are not pairs");
            for (std::size_t i = 0; i < v.elements; i += 2) {
                auto lo = integer(*v.element[i], "a slot");
                auto hi = integer(*v.element[i + 1], "a slot");
                if (!lo) return std::unexpected(lo.error());
                if (!hi) return std::unexpected(hi.error());
                if (*lo < 0 || *hi >= cluster_slots || *lo > *hi)
                    return std::unexpected(fmt::format("slot range {}-{} is not valid", *lo, *hi));
                s.slots.emplace_back(static_cast<std::uint16_t>(*lo), static_cast<std::uint16_t>(*hi));
            }
        } else if (key == "nodes") {
            if (v.type != REDIS_REPLY_ARRAY) return std::unexpected("a shard's nodes are not a list");
            for (std::size_t i = 0; i < v.elements; ++i) {
                auto n = parse_node(*v.element[i], queried_host);
                if (!n) return std::unexpected(n.error());
                s.nodes.push_back(std::move(*n));
            }
        }
        return {};
    });
    if (!ok) return std::unexpected(ok.error());
    return s;
}

}  // namespace

std::string cluster_node::address() const { return fmt::format("{}:{}", host, port); }

const cluster_node* cluster_shard::master() const noexcept {
    for (const auto& n : nodes)
        if (n.master && n.online) return &n;
    return nullptr;
}

const cluster_node* cluster_shard::replica() const noexcept {
    if (!master()) return nullptr;
    const cluster_node* best = nullptr;
    for (const auto& n : nodes)
        if (!n.master && !n.failed && (!best || n.replication_offset > best->replication_offset)) best = &n;
    return best;
}

cluster_topology::cluster_topology() : _owner(cluster_slots, no_shard) {}

std::expected<cluster_topology, std::string> cluster_topology::parse(const redisReply& reply,
                                                                     std::string_view queried_host) {
    if (reply.type == REDIS_REPLY_ERROR)
        return std::unexpected(fmt::format("CLUSTER SHARDS failed: {}", std::string_view(reply.str, reply.len)));
    if (reply.type != REDIS_REPLY_ARRAY) return std::unexpected("CLUSTER SHARDS did not answer a list");
    cluster_topology t;
    for (std::size_t i = 0; i < reply.elements; ++i) {
        auto s = parse_shard(*reply.element[i], queried_host);
        if (!s) return std::unexpected(fmt::format("shard {}: {}", i, s.error()));
        const auto index = static_cast<std::int32_t>(t._shards.size());
        const bool serving = s->master() != nullptr;
        for (auto [lo, hi] : s->slots) {
            for (unsigned slot = lo; slot <= hi; ++slot) {
                std::int32_t& owner = t._owner[slot];
                if (owner == no_shard) {
                    ++t._covered;
                    owner = index;
                } else if (serving && !t._shards[static_cast<std::size_t>(owner)].master()) {
                    // Two shards claim the slot (after a failover, the failed master's
                    // shard may still list it): the one with an online master serves it.
                    owner = index;
                }
            }
        }
        t._shards.push_back(std::move(*s));
    }
    return t;
}

const cluster_shard* cluster_topology::shard_for(std::uint16_t slot) const noexcept {
    if (slot >= cluster_slots) return nullptr;
    std::int32_t i = _owner[slot];
    return i == no_shard ? nullptr : &_shards[static_cast<std::size_t>(i)];
}

}  // namespace jugglite

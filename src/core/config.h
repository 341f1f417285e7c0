// The effective server configuration. Built once by main, read-only afterwards.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/auth_call.h"
#include "core/cors.h"
#include "core/history.h"
#include "core/limits.h"
#include "core/token_verifier.h"

namespace jugglite {

// Where the Redis subscriber connects. Parsed from redis://[user[:password]@]host[:port][/db].
struct redis_endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string user;      // empty: AUTH with the password only
    std::string password;  // empty: no AUTH
    int db = 0;

    // Parses a redis:// URL. Errors name the part that is wrong.
    [[nodiscard]] static std::expected<redis_endpoint, std::string> parse(std::string_view url);
    // host:port, without credentials (safe to log).
    [[nodiscard]] std::string display() const;
};

struct config {
    std::string address = "0.0.0.0";
    std::uint16_t port = 3000;
    std::string socket_path;  // non-empty: listen on this unix socket instead of TCP
    std::uint32_t max_conns = 100'000;
    redis_endpoint redis;  // with --redis-cluster, the first seed
    // --redis-cluster: seed nodes of a Redis Cluster (non-empty: cluster mode). Every node
    // is reached with the first seed's credentials.
    std::vector<redis_endpoint> cluster_seeds;
    enum class cluster_pubsub_t : std::uint8_t { sharded, classic };
    cluster_pubsub_t cluster_pubsub = cluster_pubsub_t::sharded;  // --redis-cluster-pubsub
    bool read_from_replicas = false;                               // --redis-read-from replica
    std::string namespace_prefix;
    std::optional<std::string> path;           // unset: every path streams
    std::vector<std::string> allowed_channels;  // glob patterns; empty: all allowed
    std::chrono::seconds keepalive{20};
    unsigned shards = 1;
    std::size_t max_pending_bytes = limits::default_max_pending_bytes;
    std::size_t max_message_bytes = limits::default_max_message_bytes;
    std::uint32_t max_channels = limits::default_max_channels;
    std::chrono::milliseconds unsubscribe_grace = limits::default_unsubscribe_grace;
    std::chrono::milliseconds register_timeout = limits::default_register_timeout;
    double drain_rate = limits::default_drain_rate;  // --drain-rate: closes/s on SIGTERM, all shards
    std::chrono::milliseconds drain_window = limits::default_drain_window;  // --drain-seconds

    // Authorization. With either configured, a stream needs valid credentials.
    std::optional<token_verifier> tokens;      // --jwt-secret / --jwt-public-key
    std::string jwt_cookie = "jugglite_token";  // --jwt-cookie
    cors_policy cors;                           // --cors-origins
    std::chrono::seconds longpoll_max{limits::default_longpoll_max};

    std::optional<auth_endpoint> auth_url;     // --auth-url: ask the application
    std::chrono::milliseconds auth_timeout = limits::default_auth_timeout;
    std::chrono::seconds auth_cache{0};         // --auth-cache-seconds; 0: no cache
    std::chrono::seconds auth_revalidate{0};    // --auth-revalidate; 0: never
    std::vector<std::string> trusted_proxies;  // peers whose X-Forwarded-For is passed on

    // Connection events (--events-channel): register/unregister/node records PUBLISHed.
    std::string events_channel;                 // empty: no events
    std::chrono::seconds events_heartbeat{10};
    std::string node_name;                      // names this process in events
    std::string instance;                       // this process' start (unix ms, hex), in event ids

    // History and resume (--history): FCALL jugglite_publish messages carry their entry id,
    // and streams resume from Last-Event-ID.
    bool history_enabled = false;
    history_settings history;                   // --history-prefix/-length/-ttl
    std::size_t history_memory = limits::default_history_memory;  // --history-memory

    bool log_json = false;  // --log-format json

    [[nodiscard]] bool cluster() const noexcept { return !cluster_seeds.empty(); }
    // SSUBSCRIBE, one link per node serving the channels' slots (else SUBSCRIBE on one link).
    [[nodiscard]] bool sharded_pubsub() const noexcept {
        return cluster() && cluster_pubsub == cluster_pubsub_t::sharded;
    }

    // A connection keeps stream_extras (its peer's address, its event record, what its
    // revalidation asks) only when something reads them.
    [[nodiscard]] bool needs_stream_extras() const noexcept {
        return !trusted_proxies.empty() || !events_channel.empty() ||
               (auth_url && auth_revalidate.count() > 0);
    }
    // True when `peer` is one of --trusted-proxies.
    [[nodiscard]] bool trusted_proxy(std::string_view peer) const noexcept;

    [[nodiscard]] bool auth_required() const noexcept {
        return tokens.has_value() || auth_url.has_value();
    }

    // True when `channel` matches one of allowed_channels (or the list is empty).
    [[nodiscard]] bool channel_allowed(std::string_view channel) const;
};

}  // namespace jugglite

// jugglite: flags -> config, start the shards and the Redis subscriber, wait for a signal.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cxxopts.hpp>
#include <fstream>
#include <sstream>
#include <iostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/request_router.h"
#include "net/auth_client.h"
#include "net/listener.h"
#include "redis/event_publisher.h"
#include "redis/history_reader.h"
#include "redis/redis_subscriber.h"
#include "shard/shard_set.h"

namespace {

using namespace jugglite;

// A bad flag: main prints the message on one line and exits 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

cxxopts::Options make_options(unsigned cpus) {
    cxxopts::Options o("jugglite",
                       "Server-Sent Events fan-out server for Redis pub/sub.\n"
                       "Every flag can also be set with JUGGLITE_<FLAG> (e.g. JUGGLITE_PORT); "
                       "a flag overrides its variable.");
    auto cpu_text = std::to_string(cpus);
    o.add_options()
        ("address", "listen address", cxxopts::value<std::string>()->default_value("0.0.0.0"))
        ("port", "listen port", cxxopts::value<int>()->default_value("3000"))
        ("socket", "listen on this unix socket instead of TCP", cxxopts::value<std::string>())
        ("max-conns", "cap on open connections; above it clients get 503",
         cxxopts::value<long long>()->default_value("100000"))
        ("redis", "Redis URL redis://[user:password@]host[:port][/db] (default: $REDIS_URL, "
                  "else redis://127.0.0.1:6379/0)", cxxopts::value<std::string>())
        ("redis-cluster", "Redis Cluster seed nodes, comma-separated redis:// URLs (the first "
                          "one's credentials reach every node); replaces --redis",
         cxxopts::value<std::string>())
        ("redis-cluster-pubsub", "on a cluster: sharded (SSUBSCRIBE on each slot's node) or "
                                 "classic (SUBSCRIBE on one node)",
         cxxopts::value<std::string>()->default_value("sharded"))
        ("redis-read-from", "on a cluster with sharded pub/sub: master, or replica (subscribe "
                            "on each shard's replica)", cxxopts::value<std::string>()->default_value("master"))
        ("namespace", "prefix prepended to every channel name in Redis",
         cxxopts::value<std::string>()->default_value(""))
        ("path", "stream only on this path (404 elsewhere); default: any path",
         cxxopts::value<std::string>())
        ("allowed-channels", "comma-separated glob patterns; other channels are dropped "
                             "(default: all)", cxxopts::value<std::string>())
        ("keepalive", "seconds between keepalive comments",
         cxxopts::value<long long>()->default_value("20"))
        ("shards", "shard threads", cxxopts::value<long long>()->default_value(cpu_text))
        ("max-pending", "bytes queued per connection behind the frame being sent before it is "
                        "dropped as a slow consumer",
         cxxopts::value<long long>()->default_value(std::to_string(limits::default_max_pending_bytes)))
        ("max-message-bytes", "largest payload delivered; larger messages are dropped and counted",
         cxxopts::value<long long>()->default_value(std::to_string(limits::default_max_message_bytes)))
        ("max-channels", "distinct channels subscribed in Redis at once; streams that need "
                         "more are turned away with a retry",
         cxxopts::value<long long>()->default_value(std::to_string(limits::default_max_channels)))
        ("unsubscribe-grace", "seconds a channel nobody wants stays subscribed (page reloads "
                              "cost no Redis command)",
         cxxopts::value<double>()->default_value(std::to_string(limits::default_unsubscribe_grace.count())))
        ("drain-rate", "on SIGTERM, streams closed per second at most (each with a jittered "
                       "retry:), so their browsers don't reconnect to the other nodes at once",
         cxxopts::value<double>()->default_value(fmt::format("{}", limits::default_drain_rate)))
        ("drain-seconds", "on SIGTERM, seconds within which every stream is closed (the rest "
                          "close then, their retry: spread to keep --drain-rate); 0: all at once",
         cxxopts::value<double>()->default_value(fmt::format("{}", limits::default_drain_window.count())))
        ("register-timeout", "seconds a new stream waits for Redis to confirm its channels "
                             "before it is turned away with a retry",
         cxxopts::value<double>()->default_value(std::to_string(limits::default_register_timeout.count() / 1000)))
        ("jwt-secret", "HMAC secret for HS256/384/512 tokens (better: $JUGGLITE_JWT_SECRET or "
                       "--jwt-secret-file, which keep it out of ps)",
         cxxopts::value<std::string>())
        ("jwt-secret-file", "[KID=]FILE: an HMAC secret read from FILE (trailing newline "
                            "dropped); repeat or comma-separate for rotation, picked by the "
                            "token's kid",
         cxxopts::value<std::vector<std::string>>())
        ("jwt-public-key", "[KID=]FILE: a PEM public key, RSA (RS256) or EC P-256 (ES256); "
                           "repeatable",
         cxxopts::value<std::vector<std::string>>())
        ("jwt-cookie", "cookie that may carry the token",
         cxxopts::value<std::string>()->default_value("jugglite_token"))
        ("jwt-audience", "tokens must name this audience (aud)", cxxopts::value<std::string>())
        ("jwt-issuer", "tokens must come from this issuer (iss)", cxxopts::value<std::string>())
        ("jwt-allow-no-exp", "accept tokens without an exp claim")
        ("auth-url", "ask the application which channels a stream request may hear: "
                     "http://host:port/path or unix:/path/to.sock:/path (see README)",
         cxxopts::value<std::string>())
        ("auth-timeout", "seconds to wait for the auth callback; then the request fails closed",
         cxxopts::value<double>()->default_value("2"))
        ("auth-cache-seconds", "keep the callback's answers this long, keyed by the Cookie, "
                               "Authorization and Origin headers (0: no cache)",
         cxxopts::value<long long>()->default_value("0"))
        ("auth-revalidate", "seconds between asking the callback again about open streams "
                            "(0: never)",
         cxxopts::value<long long>()->default_value("0"))
        ("trusted-proxies", "comma-separated addresses of proxies whose X-Forwarded-For is "
                            "passed to the auth callback",
         cxxopts::value<std::string>())
        ("events-channel", "PUBLISH register/unregister events of every stream, and a node "
                           "heartbeat, to this Redis channel (see README)",
         cxxopts::value<std::string>())
        ("events-heartbeat", "seconds between node heartbeat events",
         cxxopts::value<long long>()->default_value("10"))
        ("node-name", "this node's name in events (default: host name and port)",
         cxxopts::value<std::string>())
        ("cors-origins", "comma-separated origins allowed to read streams cross-origin, or * "
                         "(which never allows credentials)",
         cxxopts::value<std::string>())
        ("longpoll-max", "seconds an XHR long-poll (X-Requested-With: XMLHttpRequest) stays "
                         "open at the latest",
         cxxopts::value<long long>()->default_value(std::to_string(limits::default_longpoll_max.count())))
        ("history", "resume streams from Last-Event-ID: messages published with "
                    "FCALL jugglite_publish carry their history id (see README)")
        ("history-prefix", "prefix of the history keys in Redis (streams and clock)",
         cxxopts::value<std::string>()->default_value("jugglite:"))
        ("history-length", "entries kept per channel's history",
         cxxopts::value<long long>()->default_value("1000"))
        ("history-ttl", "seconds a message stays in history (and a silent channel's history "
                        "lives)", cxxopts::value<long long>()->default_value("3600"))
        ("history-memory", "bytes of recent history kept in memory to answer resumes without "
                           "asking Redis",
         cxxopts::value<long long>()->default_value(std::to_string(limits::default_history_memory)))
        ("print-history-library", "print the Redis Function library that --history loads "
                                  "(for FUNCTION LOAD by hand), with these history flags, and exit")
        ("log-format", "text (one line per record) or json (one JSON object per line, for log "
                       "shippers)", cxxopts::value<std::string>()->default_value("text"))
        ("version", "print the version and exit")
        ("h,help", "print this help and exit");
    return o;
}

// Appends --flag=value for every JUGGLITE_FLAG variable whose flag is not on the command line.
std::vector<std::string> with_environment(int argc, char** argv, const cxxopts::Options& opts) {
    std::vector<std::string> args(argv, argv + argc);
    for (const auto& group : opts.groups()) {
        for (const auto& opt : opts.group_help(group).options) {
            const std::string& name = opt.l.empty() ? std::string() : opt.l.front();
            if (name.empty() || name == "help" || name == "version") continue;
            std::string var = "JUGGLITE_";
            for (char c : name) var.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
            const char* value = std::getenv(var.c_str());
            if (!value) continue;
            bool given = false;
            for (int i = 1; i < argc; ++i) {
                std::string_view a = argv[i];
                if (a == "--" + name || a.starts_with("--" + name + "=")) given = true;
            }
            if (given) continue;
            if (!opt.is_boolean) {
                args.push_back("--" + name + "=" + value);
                continue;
            }
            // A switch (--history): its variable says whether it is on.
            const std::string_view v = value;
            if (v == "1" || v == "true" || v == "yes" || v == "on") args.push_back("--" + name);
            else if (!v.empty() && v != "0" && v != "false" && v != "no" && v != "off")
                throw usage_error(fmt::format("{}={} must be true or false", var, v));
        }
    }
    return args;
}

template <class T>
T in_range(const cxxopts::ParseResult& r, const std::string& name, T lo, T hi) {
    auto v = r[name].as<long long>();
    if (v < static_cast<long long>(lo) || v > static_cast<long long>(hi))
        throw usage_error(fmt::format("--{} must be between {} and {} (got {})", name, lo, hi, v));
    return static_cast<T>(v);
}

// A flag given in (fractional) seconds, within [lo, hi], as milliseconds.
std::chrono::milliseconds seconds_in_range(const cxxopts::ParseResult& r, const std::string& name,
                                           double lo, double hi) {
    double v = r[name].as<double>();
    if (!(v >= lo && v <= hi))
        throw usage_error(fmt::format("--{} must be between {} and {} (got {})", name, lo, hi, v));
    return std::chrono::milliseconds(static_cast<long long>(v * 1000));
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        auto comma = s.find(',', start);
        auto piece = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!piece.empty()) out.push_back(piece);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

std::string read_file(const std::string& flag, const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw usage_error(fmt::format("--{}: cannot read {}", flag, path));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// [KID=]FILE as --jwt-secret-file and --jwt-public-key take it.
std::pair<std::string, std::string> kid_and_path(const std::string& value) {
    auto eq = value.find('=');
    if (eq == std::string::npos) return {"", value};
    return {value.substr(0, eq), value.substr(eq + 1)};
}

std::optional<token_verifier> parse_jwt(const cxxopts::ParseResult& r) {
    jwt_settings s;
    if (r.count("jwt-secret")) s.keys.push_back({"", r["jwt-secret"].as<std::string>(), false});
    if (r.count("jwt-secret-file")) {
        for (const auto& v : r["jwt-secret-file"].as<std::vector<std::string>>()) {
            auto [kid, path] = kid_and_path(v);
            std::string secret = read_file("jwt-secret-file", path);
            while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
            s.keys.push_back({kid, std::move(secret), false});
        }
    }
    if (r.count("jwt-public-key")) {
        for (const auto& v : r["jwt-public-key"].as<std::vector<std::string>>()) {
            auto [kid, path] = kid_and_path(v);
            s.keys.push_back({kid, read_file("jwt-public-key", path), true});
        }
    }
    if (r.count("jwt-audience")) s.audience = r["jwt-audience"].as<std::string>();
    if (r.count("jwt-issuer")) s.issuer = r["jwt-issuer"].as<std::string>();
    s.allow_no_exp = r.count("jwt-allow-no-exp") > 0;
    if (s.keys.empty()) {
        for (const char* dependent : {"jwt-audience", "jwt-issuer", "jwt-allow-no-exp"})
            if (r.count(dependent))
                throw usage_error(fmt::format("--{} needs a key: --jwt-secret, --jwt-secret-file "
                                              "or --jwt-public-key", dependent));
        return std::nullopt;
    }
    auto v = token_verifier::make(std::move(s));
    if (!v) throw usage_error(fmt::format("JWT keys: {}", v.error()));
    return std::move(*v);
}

config parse_config(const cxxopts::ParseResult& r) {
    config cfg;
    cfg.address = r["address"].as<std::string>();
    long long port = r["port"].as<int>();
    if (port < 0 || port > 65535) throw usage_error(fmt::format("--port must be 0..65535 (got {})", port));
    cfg.port = static_cast<std::uint16_t>(port);
    if (r.count("socket")) cfg.socket_path = r["socket"].as<std::string>();
    cfg.max_conns = in_range<std::uint32_t>(r, "max-conns", 1, 10'000'000);
    std::string url = "redis://127.0.0.1:6379/0";
    if (const char* env = std::getenv("REDIS_URL"); env && *env) url = env;
    if (r.count("redis")) url = r["redis"].as<std::string>();
    auto ep = redis_endpoint::parse(url);
    if (!ep) throw usage_error(fmt::format("--redis: {}", ep.error()));
    cfg.redis = std::move(*ep);
    if (r.count("redis-cluster")) {
        if (r.count("redis")) throw usage_error("--redis and --redis-cluster exclude each other");
        for (const auto& seed : split_list(r["redis-cluster"].as<std::string>())) {
            auto node = redis_endpoint::parse(seed);
            if (!node) throw usage_error(fmt::format("--redis-cluster: {}: {}", seed, node.error()));
            if (node->db != 0) throw usage_error("--redis-cluster: a cluster has only database 0");
            cfg.cluster_seeds.push_back(std::move(*node));
        }
        if (cfg.cluster_seeds.empty()) throw usage_error("--redis-cluster: no seed node given");
        cfg.redis = cfg.cluster_seeds.front();
    }
    if (const auto mode = r["redis-cluster-pubsub"].as<std::string>(); mode == "classic")
        cfg.cluster_pubsub = config::cluster_pubsub_t::classic;
    else if (mode != "sharded")
        throw usage_error(fmt::format("--redis-cluster-pubsub must be sharded or classic (got {})", mode));
    if (const auto from = r["redis-read-from"].as<std::string>(); from == "replica")
        cfg.read_from_replicas = true;
    else if (from != "master")
        throw usage_error(fmt::format("--redis-read-from must be master or replica (got {})", from));
    if ((r.count("redis-cluster-pubsub") || cfg.read_from_replicas) && !cfg.cluster())
        throw usage_error("--redis-cluster-pubsub and --redis-read-from need --redis-cluster");
    if (cfg.read_from_replicas && !cfg.sharded_pubsub())
        throw usage_error("--redis-read-from replica needs sharded pub/sub");
    cfg.namespace_prefix = r["namespace"].as<std::string>();
    if (r.count("path")) {
        cfg.path = r["path"].as<std::string>();
        if (!cfg.path->starts_with('/')) throw usage_error("--path must start with '/'");
        if (reserved_route(*cfg.path))
            throw usage_error(fmt::format("--path {} is reserved", *cfg.path));
    }
    if (r.count("allowed-channels"))
        cfg.allowed_channels = split_list(r["allowed-channels"].as<std::string>());
    cfg.keepalive = std::chrono::seconds(in_range<long long>(r, "keepalive", 1, 3600));
    cfg.shards = in_range<unsigned>(r, "shards", 1, 64);
    cfg.max_pending_bytes = in_range<std::size_t>(r, "max-pending", 1024, 1LL << 32);
    cfg.max_message_bytes = in_range<std::size_t>(r, "max-message-bytes", 1024, 512LL << 20);
    cfg.max_channels = in_range<std::uint32_t>(r, "max-channels", 1, 100'000'000);
    cfg.unsubscribe_grace = seconds_in_range(r, "unsubscribe-grace", 0, 3600);
    cfg.register_timeout = seconds_in_range(r, "register-timeout", 0.1, 600);
    cfg.drain_rate = r["drain-rate"].as<double>();
    if (!(cfg.drain_rate >= 1 && cfg.drain_rate <= 10'000'000))
        throw usage_error(fmt::format("--drain-rate must be between 1 and 10000000 (got {})", cfg.drain_rate));
    cfg.drain_window = seconds_in_range(r, "drain-seconds", 0, 3600);
    cfg.tokens = parse_jwt(r);
    cfg.jwt_cookie = r["jwt-cookie"].as<std::string>();
    if (r.count("cors-origins")) {
        auto origins = split_list(r["cors-origins"].as<std::string>());
        for (const auto& o : origins)
            if (o != "*" && !o.starts_with("http://") && !o.starts_with("https://"))
                throw usage_error(fmt::format("--cors-origins: '{}' is not an origin "
                                              "(https://host[:port]) or *", o));
        cfg.cors = cors_policy(std::move(origins));
    }
    cfg.longpoll_max = std::chrono::seconds(in_range<long long>(r, "longpoll-max", 1, 3600));
    if (r.count("auth-url")) {
        auto ep = auth_endpoint::parse(r["auth-url"].as<std::string>());
        if (!ep) throw usage_error(ep.error());
        cfg.auth_url = std::move(*ep);
    }
    cfg.auth_timeout = seconds_in_range(r, "auth-timeout", 0.1, 60);
    cfg.auth_cache = std::chrono::seconds(in_range<long long>(r, "auth-cache-seconds", 0, 86400));
    cfg.auth_revalidate = std::chrono::seconds(in_range<long long>(r, "auth-revalidate", 0, 86400));
    cfg.instance = fmt::format("{:x}", unix_ms());
    if (r.count("events-channel")) cfg.events_channel = r["events-channel"].as<std::string>();
    cfg.events_heartbeat = std::chrono::seconds(in_range<long long>(r, "events-heartbeat", 1, 3600));
    if (r.count("node-name")) {
        cfg.node_name = r["node-name"].as<std::string>();
    } else {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        cfg.node_name = cfg.socket_path.empty() ? fmt::format("{}:{}", host, cfg.port)
                                                : fmt::format("{}:{}", host, cfg.socket_path);
    }
    if (r.count("trusted-proxies")) cfg.trusted_proxies = split_list(r["trusted-proxies"].as<std::string>());
    cfg.history_enabled = r.count("history") > 0;
    if (cfg.history_enabled && cfg.cluster() && !cfg.sharded_pubsub())
        throw usage_error("--history on --redis-cluster needs --redis-cluster-pubsub sharded");
    cfg.history.prefix = r["history-prefix"].as<std::string>();
    if (cfg.history.prefix.empty()) throw usage_error("--history-prefix must not be empty");
    cfg.history.length = in_range<std::uint32_t>(r, "history-length", 1, 1'000'000);
    cfg.history.ttl = std::chrono::seconds(in_range<long long>(r, "history-ttl", 1, 30LL * 86400));
    cfg.history.clock_per_slot = cfg.cluster();
    cfg.history.sharded_publish = cfg.sharded_pubsub();
    cfg.history_memory = in_range<std::size_t>(r, "history-memory", 0, 1LL << 40);
    const std::string log_format = r["log-format"].as<std::string>();
    if (log_format != "text" && log_format != "json")
        throw usage_error(fmt::format("--log-format must be text or json (got '{}')", log_format));
    cfg.log_json = log_format == "json";
    return cfg;
}

// The auth and events threads do background work: when the cores are short, the shards'
// fan-out to open streams goes first, and a connect's authorization or an event waits.
void run_in_background(auto&& body) {
    [[maybe_unused]] int rc = ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()),
                                            limits::side_thread_nice);
    body();
}

std::string describe(const config& cfg) {
    std::string listen = cfg.socket_path.empty() ? fmt::format("{}:{}", cfg.address, cfg.port)
                                                 : "unix:" + cfg.socket_path;
    std::string allowed;
    for (const auto& p : cfg.allowed_channels) allowed += (allowed.empty() ? "" : ",") + p;
    return fmt::format(
        "jugglite {} listen={} shards={} max_conns={} redis={} namespace='{}' path={} "
        "allowed_channels={} keepalive={}s max_pending={} max_message_bytes={} max_channels={} unsubscribe_grace={}ms "
        "tokens={} auth_url={} cors_origins={} history={}",
        JUGGLITE_VERSION, listen, cfg.shards, cfg.max_conns, cfg.redis.display(),
        cfg.namespace_prefix, cfg.path.value_or("(any)"), allowed.empty() ? "(all)" : allowed,
        cfg.keepalive.count(), cfg.max_pending_bytes, cfg.max_message_bytes, cfg.max_channels,
        cfg.unsubscribe_grace.count(), cfg.tokens ? "required" : "off",
        cfg.auth_url ? (cfg.auth_url->unix_socket.empty() ? cfg.auth_url->url
                                                          : "unix:" + cfg.auth_url->unix_socket)
                     : "(off)",
        cfg.cors.enabled() ? fmt::format("{}", fmt::join(cfg.cors.origins(), ",")) : "(off)",
        cfg.history_enabled ? fmt::format("on(prefix='{}' length={} ttl={}s memory={})", cfg.history.prefix,
                                          cfg.history.length, cfg.history.ttl.count() / 1000,
                                          cfg.history_memory)
                            : "off");
}

int serve(const config& cfg) {
    // Signals are taken synchronously by this thread only: block them before any thread
    // starts (threads inherit the mask). Sends use MSG_NOSIGNAL; SIGPIPE from hiredis is ignored.
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    std::atomic<bool> stop{false};
    redis_status redis_state;
    redis_state.heartbeat_ms.store(monotonic_ms(), std::memory_order_relaxed);  // starting, not stalled
    redis_metrics redis_counters;
    auto efd = make_eventfd(true);
    if (!efd) {
        log::error("{}", efd.error());
        return 1;
    }
    thread_wakeup wake;
    wake.eventfd = efd->get();

    // The auth and events threads run only when configured; the shards wake them as they
    // wake the redis thread.
    auth_metrics auth_counters;
    event_metrics event_counters;
    thread_wakeup auth_wake, events_wake;
    std::optional<unique_fd> auth_efd, events_efd;
    for (auto [wanted, wake, efd] : {std::tuple{cfg.auth_url.has_value(), &auth_wake, &auth_efd},
                                     std::tuple{!cfg.events_channel.empty(), &events_wake, &events_efd}}) {
        if (!wanted) continue;
        auto e = make_eventfd(true);
        if (!e) {
            log::error("{}", e.error());
            return 1;
        }
        *efd = std::move(*e);
        wake->eventfd = (*efd)->get();
    }
    // --history: the history thread, with its own command connection.
    history_metrics history_counters;
    history_link history;
    std::optional<unique_fd> history_efd;
    if (cfg.history_enabled) {
        auto e = make_eventfd(true);
        if (!e) {
            log::error("{}", e.error());
            return 1;
        }
        history_efd = std::move(*e);
        history.reader_wake.eventfd = history_efd->get();
        history.subscriber_wake = &wake;
    }
    side_threads side;
    if (cfg.history_enabled) side.history_counters = &history_counters;
    if (cfg.auth_url) side.auth = &auth_wake, side.auth_counters = &auth_counters;
    if (events_efd) side.events = &events_wake, side.event_counters = &event_counters;
    auto shards = shard_set::start(cfg, stop, wake, redis_state, redis_counters, side);
    if (!shards) {
        log::error("cannot start: {}", shards.error());
        return 1;
    }
    log::info("{}", describe(cfg));
    log::info("accepting on {} with {} shards x {} rings x {} slots (capacity {} connections)",
              cfg.socket_path.empty() ? fmt::format("{}:{}", cfg.address, cfg.port) : cfg.socket_path,
              cfg.shards, (*shards)->rings_per_shard(), (*shards)->slots_per_ring(),
              (*shards)->capacity());

    redis_subscriber sub(cfg, (*shards)->links(), wake, stop, redis_state, redis_counters,
                         cfg.history_enabled ? &history : nullptr,
                         cfg.history_enabled ? &history_counters : nullptr);
    std::thread redis_thread([&sub] { sub.run(); });
    pthread_setname_np(redis_thread.native_handle(), "jugglite-redis");
    std::optional<history_reader> reader;
    std::thread history_thread;
    if (cfg.history_enabled) {
        reader.emplace(cfg, history, stop, history_counters);
        history_thread = std::thread([&reader] { reader->run(); });
        pthread_setname_np(history_thread.native_handle(), "jugglite-hist");
    }
    // The events thread outlives the shards: it publishes their shutdown unregisters.
    std::atomic<bool> events_stop{false};
    std::optional<event_publisher> events;
    std::thread events_thread;
    if (events_efd) {
        events.emplace(cfg, (*shards)->links(), events_wake, events_stop, event_counters,
                       (*shards)->metrics());
        events_thread = std::thread([&events] { run_in_background([&] { events->run(); }); });
        pthread_setname_np(events_thread.native_handle(), "jugglite-events");
    }
    std::optional<auth_client> auth;
    std::thread auth_thread;
    if (cfg.auth_url) {
        auth.emplace(cfg, (*shards)->links(), auth_wake, stop, auth_counters);
        auth_thread = std::thread([&auth] { run_in_background([&] { auth->run(); }); });
        pthread_setname_np(auth_thread.native_handle(), "jugglite-auth");
    }

    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGTERM) {
        // The drain: streams end paced, /readyz says draining. SIGINT, or a second signal,
        // stops at once.
        log::info("received SIGTERM, draining");
        (*shards)->begin_drain();
        const timespec poll{0, 20'000'000};
        while (!(*shards)->drained()) {
            if (sigtimedwait(&signals, nullptr, &poll) > 0) {
                log::info("received another signal, stopping without finishing the drain");
                break;
            }
        }
    }
    log::info("shutting down");
    stop.store(true, std::memory_order_release);
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake.eventfd, &one, sizeof one);
    (*shards)->join();
    redis_thread.join();
    if (history_thread.joinable()) {
        [[maybe_unused]] auto w = ::write(history.reader_wake.eventfd, &one, sizeof one);
        history_thread.join();
    }
    if (auth_thread.joinable()) auth_thread.join();
    if (events_thread.joinable()) {
        events_stop.store(true, std::memory_order_release);
        [[maybe_unused]] auto w = ::write(events_wake.eventfd, &one, sizeof one);
        events_thread.join();
    }

    auto all = (*shards)->metrics();
    for (std::size_t i = 0; i < all.size(); ++i) log::info("shard {}: {}", i, format_counters(all[i]));
    log::info("redis: {}", format_counters(redis_counters));
    shards->reset();
    log::info("stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // A fixed threshold turns off glibc's dynamic one, which after freeing a large message
    // serves the next ones from arena heaps that keep their size (see limits.h).
    mallopt(M_MMAP_THRESHOLD, static_cast<int>(limits::malloc_mmap_threshold));
    unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    auto opts = make_options(cpus);
    config cfg;
    try {
        auto args = with_environment(argc, argv, opts);
        std::vector<char*> cargs;
        for (auto& a : args) cargs.push_back(a.data());
        auto r = opts.parse(static_cast<int>(cargs.size()), cargs.data());
        if (r.count("help")) {
            std::cout << opts.help() << std::endl;
            return 0;
        }
        if (r.count("version")) {
            std::cout << "jugglite " << JUGGLITE_VERSION << std::endl;
            return 0;
        }
        if (!r.unmatched().empty())
            throw usage_error(fmt::format("unexpected argument '{}'", r.unmatched().front()));
        cfg = parse_config(r);
        log::use_json(cfg.log_json);
        if (r.count("print-history-library")) {
            std::cout << history_library(cfg.history);
            return 0;
        }
    } catch (const std::exception& e) {
        std::cerr << "jugglite: " << e.what() << " (see --help)" << std::endl;
        return 2;
    }
    try {
        return serve(cfg);
    } catch (const std::exception& e) {
        log::error("fatal: {}", e.what());
        return 1;
    }
}

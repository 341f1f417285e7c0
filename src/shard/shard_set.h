// Starts and stops all shard threads, and owns what they share: the links to the redis
// thread, the listeners, the counters and the process-wide connection count.
#pragma once

#include <atomic>
#include <expected>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"
#include "core/shard_link.h"
#include "net/unique_fd.h"

namespace jugglite {

class shard;

// How many rings each shard drives and how large each ring's table is, for --max-conns
// connections over `shards` threads when RLIMIT_NOFILE (which caps one ring's table) is
// `nofile`. `capacity` is what the plan holds, at most max_conns.
struct ring_plan {
    std::uint32_t rings;
    std::uint32_t slots;
    std::uint64_t capacity;
};
[[nodiscard]] ring_plan plan_rings(std::uint32_t max_conns, unsigned shards, std::uint64_t nofile);

class shard_set {
public:
    // Opens the listeners and starts cfg.shards threads; returns once every shard has its
    // ring and is accepting, or with the first shard's setup error (all threads stopped).
    // `stop`, `redis`, `redis_state`, `redis_counters` and what `side` points to must
    // outlive the set; `side` has the auth thread exactly when cfg.auth_url is set, and
    // the events thread exactly when cfg.events_channel is.
    [[nodiscard]] static std::expected<std::unique_ptr<shard_set>, std::string> start(
        const config& cfg, std::atomic<bool>& stop, thread_wakeup& redis,
        const redis_status& redis_state, const redis_metrics& redis_counters,
        side_threads side = {});
    ~shard_set();

    // The redis thread's ends of the queues, one per shard.
    [[nodiscard]] std::span<shard_link> links() noexcept { return {_links.get(), _count}; }
    [[nodiscard]] std::span<const shard_metrics> metrics() const noexcept {
        return {_metrics.get(), _count};
    }
    // Starts the drain (SIGTERM): every shard ends its streams at its share of
    // --drain-rate, within --drain-seconds. drained() tells when all of them are done.
    void begin_drain() noexcept;
    [[nodiscard]] bool drained() const noexcept {
        return _drained.load(std::memory_order_acquire) == _count;
    }
    // Sets `stop`, wakes every shard and joins them.
    void join() noexcept;
    // Connections held at most (see ring_plan), and the plan behind it.
    [[nodiscard]] std::uint64_t capacity() const noexcept { return _plan.capacity; }
    [[nodiscard]] std::uint32_t rings_per_shard() const noexcept { return _plan.rings; }
    [[nodiscard]] std::uint32_t slots_per_ring() const noexcept { return _plan.slots; }

private:
    shard_set() = default;
    void wake_all() noexcept;
    unsigned _count = 0;
    ring_plan _plan{};
    std::unique_ptr<shard_link[]> _links;
    std::unique_ptr<shard_metrics[]> _metrics;
    std::vector<unique_fd> _listeners;
    std::vector<unique_fd> _eventfds;
    std::vector<std::unique_ptr<shard>> _shards;
    std::vector<std::promise<std::expected<void, std::string>>> _ready;
    std::vector<std::thread> _threads;
    std::atomic<std::uint32_t> _open_conns{0};
    std::atomic<bool> _drain{false};
    std::atomic<unsigned> _drained{0};
    std::atomic<bool>* _stop = nullptr;
    std::string _socket_path;  // unlinked at exit
};

}  // namespace jugglite

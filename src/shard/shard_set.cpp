#include "shard/shard_set.h"

#include <pthread.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <future>

#include "core/clock.h"
#include "core/log.h"
#include "net/conn_table.h"
#include "net/listener.h"
#include "shard/shard.h"

namespace jugglite {

ring_plan plan_rings(std::uint32_t max_conns, unsigned shards, std::uint64_t nofile) {
    // A direct-descriptor table can't exceed RLIMIT_NOFILE, but each ring has its own, so
    // the process holds rings x table connections while using almost no ordinary fds.
    constexpr std::uint64_t reserve = 64;  // listeners, eventfds, Redis, logs
    const std::uint64_t table = std::clamp<std::uint64_t>(nofile > reserve ? nofile - reserve : 0,
                                                          limits::spare_slots + 16, conn_id::max_slots);
    // SO_REUSEPORT spreads connections over the shards by a hash, unevenly: a shard must
    // hold its share plus a margin of 4 standard deviations of a binomial spread.
    const double share = static_cast<double>(max_conns) / shards;
    const auto per_shard = static_cast<std::uint64_t>(std::ceil(share + 4 * std::sqrt(share)));
    const std::uint64_t usable = table - limits::spare_slots;
    std::uint64_t rings = std::max<std::uint64_t>(1, (per_shard + usable - 1) / usable);
    rings = std::min<std::uint64_t>(rings, conn_id::max_rings);
    // Within a shard the rings fill one after another, so the last one need only hold the
    // rest; every ring gets the same table, just large enough.
    const std::uint64_t slots =
        std::min(table, (per_shard + rings - 1) / rings + limits::spare_slots);
    return {static_cast<std::uint32_t>(rings), static_cast<std::uint32_t>(slots),
            std::min<std::uint64_t>(std::uint64_t{max_conns},
                                    shards * rings * (slots - limits::spare_slots))};
}

std::expected<std::unique_ptr<shard_set>, std::string> shard_set::start(
    const config& cfg, std::atomic<bool>& stop, thread_wakeup& redis,
    const redis_status& redis_state, const redis_metrics& redis_counters, side_threads side) {
    std::unique_ptr<shard_set> set(new shard_set);
    set->_count = cfg.shards;
    set->_stop = &stop;
    set->_links = std::make_unique<shard_link[]>(cfg.shards);
    set->_metrics = std::make_unique<shard_metrics[]>(cfg.shards);
    // Live from the start: a shard whose loop has not turned yet is starting, not stalled
    // (/livez would answer 503 in the instant before every shard's first turn).
    for (unsigned i = 0; i < cfg.shards; ++i)
        set->_metrics[i].heartbeat_ms.set(static_cast<std::uint64_t>(monotonic_ms()));
    if (cfg.auth_url) {
        for (unsigned i = 0; i < cfg.shards; ++i) {
            set->_links[i].auth_calls = std::make_unique<spsc_queue<auth_call>>(limits::auth_queue_capacity);
            set->_links[i].auth_answers = std::make_unique<spsc_queue<auth_answer>>(limits::auth_queue_capacity);
        }
    }
    if (!cfg.events_channel.empty()) {
        for (unsigned i = 0; i < cfg.shards; ++i)
            set->_links[i].events = std::make_unique<spsc_queue<std::string>>(limits::event_queue_capacity);
    }
    if (cfg.history_enabled) {
        for (unsigned i = 0; i < cfg.shards; ++i)
            set->_links[i].resumes = std::make_unique<spsc_queue<resume_request>>(limits::resume_queue_capacity);
    }

    // With --socket every shard accepts on the one unix socket; otherwise each shard has
    // its own SO_REUSEPORT listener and the kernel spreads connections between them.
    if (!cfg.socket_path.empty()) {
        auto l = listen_unix(cfg.socket_path);
        if (!l) return std::unexpected(l.error());
        set->_listeners.push_back(std::move(*l));
        set->_socket_path = cfg.socket_path;
    } else {
        for (unsigned i = 0; i < cfg.shards; ++i) {
            auto l = listen_tcp(cfg.address, cfg.port);
            if (!l) return std::unexpected(l.error());
            set->_listeners.push_back(std::move(*l));
        }
    }

    auto plan = plan_rings(cfg.max_conns, cfg.shards, raise_nofile_limit());
    set->_plan = plan;
    if (plan.capacity < cfg.max_conns)
        log::warn("{} shards x {} rings x {} slots hold {} connections, fewer than --max-conns {}",
                  cfg.shards, plan.rings, plan.slots, plan.capacity, cfg.max_conns);

    shard_environment env{&cfg,           &stop,           &set->_drain,      &set->_drained,
                          &set->_open_conns, &redis_state, &redis, set->metrics(),
                          &redis_counters, side};
    for (unsigned i = 0; i < cfg.shards; ++i) {
        auto efd = make_eventfd(true);  // polled, and signalled by the rings and the redis thread
        if (!efd) return std::unexpected(efd.error());
        set->_links[i].shard_eventfd = efd->get();
        set->_eventfds.push_back(std::move(*efd));
        int lfd = set->_listeners[set->_listeners.size() == 1 ? 0 : i].get();
        set->_shards.push_back(
            std::make_unique<shard>(i, env, set->_links[i], set->_metrics[i], lfd, plan.rings, plan.slots));
    }

    std::string failure;
    // The promises live as long as the set: a shard may still be inside set_value when
    // this thread wakes from get().
    set->_ready.resize(cfg.shards);
    for (unsigned i = 0; i < cfg.shards; ++i) {
        auto started = set->_ready[i].get_future();
        set->_threads.emplace_back(
            [s = set->_shards[i].get(), r = &set->_ready[i]] { s->run(*r); });
        // Named, so that `top -H` and /proc/<pid>/task/*/comm tell the threads apart.
        pthread_setname_np(set->_threads.back().native_handle(), fmt::format("jugglite-sh{}", i).c_str());
        auto ok = started.get();
        if (!ok) {
            failure = fmt::format("shard {}: {}", i, ok.error());
            break;
        }
    }
    if (!failure.empty()) {
        set->join();
        return std::unexpected(failure);
    }
    return set;
}

void shard_set::wake_all() noexcept {
    for (unsigned i = 0; i < _count && i < _eventfds.size(); ++i) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(_links[i].shard_eventfd, &one, sizeof one);
    }
}

void shard_set::begin_drain() noexcept {
    _drain.store(true, std::memory_order_release);
    wake_all();
}

void shard_set::join() noexcept {
    if (_stop) _stop->store(true, std::memory_order_release);
    wake_all();
    for (auto& t : _threads)
        if (t.joinable()) t.join();
    _threads.clear();
}

shard_set::~shard_set() {
    join();
    if (!_socket_path.empty()) ::unlink(_socket_path.c_str());
}

}  // namespace jugglite

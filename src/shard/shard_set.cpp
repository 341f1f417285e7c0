#include "shard/shard_set.h"

#include <unistd.h>

#include <algorithm>
#include <future>

#include "core/log.h"
#include "net/listener.h"
#include "shard/shard.h"

namespace jugglite {

std::expected<std::unique_ptr<shard_set>, std::string> shard_set::start(
    const config& cfg, std::atomic<bool>& stop, redis_wakeup& redis,
    const redis_status& redis_state, const redis_metrics& redis_counters) {
    std::unique_ptr<shard_set> set(new shard_set);
    set->_count = cfg.shards;
    set->_stop = &stop;
    set->_links = std::make_unique<shard_link[]>(cfg.shards);
    set->_metrics = std::make_unique<shard_metrics[]>(cfg.shards);

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

    // A direct-descriptor table can't exceed RLIMIT_NOFILE, but each ring has its own, so
    // the process holds shards x table connections while using almost no ordinary fds.
    std::uint64_t nofile = raise_nofile_limit();
    std::uint64_t reserve = 64;  // listeners, eventfds, Redis, logs
    std::uint64_t want = std::uint64_t{cfg.max_conns} + limits::spare_slots;
    // Also capped by the CQ: a fan-out to every slot must fit in one drain.
    std::uint64_t cap = std::min<std::uint64_t>(nofile > reserve ? nofile - reserve : 16,
                                                limits::ring_cq_entries / 2);
    auto slots = static_cast<std::uint32_t>(std::max<std::uint64_t>(
        limits::spare_slots + 16, std::min(want, cap)));
    set->_capacity = std::uint64_t{slots} * cfg.shards;
    if (set->_capacity < cfg.max_conns)
        log::warn("{} shards x {} slots (RLIMIT_NOFILE {}) hold {} connections, fewer than "
                  "--max-conns {}; run more shards to reach it",
                  cfg.shards, slots, nofile, set->_capacity, cfg.max_conns);

    shard_environment env{&cfg,          &stop,           &set->_open_conns, &redis_state,
                          &redis,        set->metrics(), &redis_counters};
    for (unsigned i = 0; i < cfg.shards; ++i) {
        auto efd = make_eventfd(false);
        if (!efd) return std::unexpected(efd.error());
        set->_links[i].shard_eventfd = efd->get();
        set->_eventfds.push_back(std::move(*efd));
        int lfd = set->_listeners[set->_listeners.size() == 1 ? 0 : i].get();
        set->_shards.push_back(
            std::make_unique<shard>(i, env, set->_links[i], set->_metrics[i], lfd, slots));
    }

    std::string failure;
    // The promises live as long as the set: a shard may still be inside set_value when
    // this thread wakes from get().
    set->_ready.resize(cfg.shards);
    for (unsigned i = 0; i < cfg.shards; ++i) {
        auto started = set->_ready[i].get_future();
        set->_threads.emplace_back(
            [s = set->_shards[i].get(), r = &set->_ready[i]] { s->run(*r); });
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

void shard_set::join() noexcept {
    if (_stop) _stop->store(true, std::memory_order_release);
    for (unsigned i = 0; i < _count && i < _eventfds.size(); ++i) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(_links[i].shard_eventfd, &one, sizeof one);
    }
    for (auto& t : _threads)
        if (t.joinable()) t.join();
    _threads.clear();
}

shard_set::~shard_set() {
    join();
    if (!_socket_path.empty()) ::unlink(_socket_path.c_str());
}

}  // namespace jugglite

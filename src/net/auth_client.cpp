#include "net/auth_client.h"

#include <poll.h>
#include <unistd.h>

#include <stdexcept>

#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"

namespace jugglite {

namespace {

// Calls taken from one shard per loop turn, so that one busy shard can't starve the others
// or the completions.
constexpr unsigned calls_per_turn = 256;

void add_header(curl_slist*& list, std::string_view name, std::string_view value) {
    // The request parser refuses control bytes in values; a value holding one anyway would
    // end the line here and forge a header, so it is left out.
    if (value.empty() || value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
        return;
    std::string line;
    line.reserve(name.size() + 2 + value.size());
    line.append(name).append(": ").append(value);
    if (curl_slist* l = curl_slist_append(list, line.c_str())) list = l;
    else throw std::bad_alloc();
}

}  // namespace

auth_client::auth_client(const config& cfg, std::span<shard_link> shards, thread_wakeup& wake,
                         std::atomic<bool>& stop, auth_metrics& metrics)
    : _cfg(cfg),
      _shards(shards),
      _wake(wake),
      _stop(stop),
      _metrics(metrics),
      _cache(std::chrono::milliseconds(cfg.auth_cache).count(), limits::auth_cache_entries),
      _backlog(shards.size()),
      _woken(shards.size()) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        throw std::runtime_error("curl_global_init failed");
    _multi = curl_multi_init();
    if (!_multi) throw std::runtime_error("curl_multi_init failed");
    curl_multi_setopt(_multi, CURLMOPT_MAX_HOST_CONNECTIONS, limits::auth_max_connections);
    curl_multi_setopt(_multi, CURLMOPT_MAXCONNECTS, limits::auth_max_connections);
}

auth_client::~auth_client() {
    // Calls still in flight at shutdown are abandoned with their connections.
    for (transfer* t : _transfers) {
        curl_multi_remove_handle(_multi, t->easy);
        curl_easy_cleanup(t->easy);
        t->easy = nullptr;
        discard(t);
    }
    for (CURL* e : _idle_handles) curl_easy_cleanup(e);
    if (_multi) curl_multi_cleanup(_multi);
}

void auth_client::run() noexcept {
    while (!_stop.load(std::memory_order_acquire)) {
        std::int64_t now = monotonic_ms();
        take_calls(now);
        int running = 0;
        curl_multi_perform(_multi, &running);
        finish_transfers(now);
        flush_answers();
        if (now >= _next_purge_ms) {
            _cache.purge(now);
            _next_purge_ms = now + 1000;
        }
        sleep();
    }
}

// Takes the shards' calls: each is answered from the cache or started.
void auth_client::take_calls(std::int64_t now) noexcept {
    for (std::uint32_t s = 0; s < _shards.size(); ++s) {
        auto& queue = *_shards[s].auth_calls;
        for (unsigned n = 0; n < calls_per_turn; ++n) {
            auto call = queue.try_pop();
            if (!call) break;
            // Out of time already (it waited behind a burst): its stream has been refused,
            // so the application is not asked for nothing.
            if (now >= call->deadline_ms) {
                fail(*call, "auth callback: timed out in the queue");
                continue;
            }
            if (_cfg.auth_cache.count() > 0) {
                try {
                    if (const auth_answer* hit = _cache.find(call->cache_key(), now)) {
                        _metrics.cache_hits.bump();
                        auth_answer a = *hit;
                        a.conn = call->conn;
                        a.gen = call->gen;
                        answer(s, std::move(a));
                        continue;
                    }
                } catch (const std::bad_alloc&) {  // asked instead
                }
            }
            start(std::move(*call));
        }
    }
}

// Answers `call` with a failure: its request fails closed.
void auth_client::fail(const auth_call& call, const char* reason) noexcept {
    auth_answer a{call.conn, call.gen, auth_answer::failed, 0, {}, {}};
    try {
        a.reason = reason;
    } catch (const std::bad_alloc&) {  // fails closed without its reason
    }
    answer(call.shard, std::move(a));
}

// Frees a transfer that is not (or no longer) in the multi handle; its easy handle, if
// any, goes back to the pool.
void auth_client::discard(transfer* t) noexcept {
    curl_slist_free_all(t->headers);
    if (t->easy) recycle(t->easy);
    delete t;
}

void auth_client::start(auth_call call) noexcept {
    auto* t = new (std::nothrow) transfer;
    if (!t) {
        fail(call, "out of memory");
        return;
    }
    t->call = std::move(call);
    try {
        const auth_call& c = t->call;
        add_header(t->headers, "Cookie", c.cookie);
        add_header(t->headers, "Authorization", c.authorization);
        add_header(t->headers, "Origin", c.origin);
        add_header(t->headers, "X-Forwarded-For", c.forwarded_for);
        add_header(t->headers, "X-Jugglite-Channels", c.channels.empty() ? std::string_view() : c.channels);
        add_header(t->headers, "X-Original-URI", c.original_uri);
        add_header(t->headers, "Accept", "application/json");
        // The client's User-Agent, or none: curl's own would mislead the application.
        if (c.user_agent.empty()) {
            if (curl_slist* l = curl_slist_append(t->headers, "User-Agent:")) t->headers = l;
        } else {
            add_header(t->headers, "User-Agent", c.user_agent);
        }
        if (c.channels.empty()) {  // say so explicitly: the stream asked for no channel
            if (curl_slist* l = curl_slist_append(t->headers, "X-Jugglite-Channels;")) t->headers = l;
        }
    } catch (const std::bad_alloc&) {
        fail(t->call, "out of memory");
        discard(t);
        return;
    }
    if (!_idle_handles.empty()) {
        t->easy = _idle_handles.back();
        _idle_handles.pop_back();
        curl_easy_reset(t->easy);
    } else {
        t->easy = curl_easy_init();
    }
    if (!t->easy) {
        fail(t->call, "out of memory");
        discard(t);
        return;
    }
    const auth_endpoint& ep = *_cfg.auth_url;
    CURL* e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, ep.url.c_str());
    if (!ep.unix_socket.empty()) curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, ep.unix_socket.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    // What is left of --auth-timeout since the request arrived, not a fresh one.
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(std::max<std::int64_t>(1, t->call.deadline_ms - monotonic_ms())));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &auth_client::on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(_multi, e) != CURLM_OK) {
        fail(t->call, "curl refused the call");
        discard(t);
        return;
    }
    try {
        _transfers.insert(t);
    } catch (const std::bad_alloc&) {
        curl_multi_remove_handle(_multi, e);
        fail(t->call, "out of memory");
        discard(t);
        return;
    }
    _metrics.calls.bump();
    _metrics.in_flight.set(_metrics.in_flight.get() + 1);
}

std::size_t auth_client::on_body(char* data, std::size_t size, std::size_t n, void* user) noexcept {
    auto* t = static_cast<transfer*>(user);
    std::size_t len = size * n;
    if (t->body.size() + len > limits::max_auth_answer_bytes) {
        t->too_large = true;
        return 0;  // ends the transfer with CURLE_WRITE_ERROR
    }
    try {
        t->body.append(data, len);
    } catch (const std::bad_alloc&) {
        return 0;
    }
    return len;
}

// A finished easy handle goes back to the pool (or away, if the pool can't grow).
void auth_client::recycle(CURL* e) noexcept {
    try {
        _idle_handles.push_back(e);
    } catch (const std::bad_alloc&) {
        curl_easy_cleanup(e);
    }
}

// The application's answer to the finished transfer `t`. May throw std::bad_alloc.
auth_answer auth_client::read_answer(const CURLMsg& m, const transfer& t) {
    auth_answer a{t.call.conn, t.call.gen, auth_answer::failed, 0, {}, {}};
    long status = 0;
    curl_easy_getinfo(m.easy_handle, CURLINFO_RESPONSE_CODE, &status);
    if (m.data.result != CURLE_OK) {
        a.reason = t.too_large ? "auth callback answer too large"
                               : std::string("auth callback: ") + curl_easy_strerror(m.data.result);
    } else if (status == 200) {
        auto g = parse_grant_json(t.body);
        if (g) {
            a.outcome = auth_answer::granted;
            a.g = std::move(*g);
        } else {
            a.reason = "auth callback answer: " + g.error();
        }
    } else if (status == 401 || status == 403) {
        a.outcome = auth_answer::denied;
        a.status = static_cast<int>(status);
        a.reason = status == 401 ? "not authorized by the application" : "forbidden by the application";
    } else {
        a.reason = "auth callback answered " + std::to_string(status);
    }
    return a;
}

void auth_client::finish_transfers(std::int64_t now) noexcept {
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(_multi, &left)) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL* e = m->easy_handle;
        transfer* t = nullptr;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
        auth_answer a{t->call.conn, t->call.gen, auth_answer::failed, 0, {}, {}};
        try {
            a = read_answer(*m, *t);
        } catch (const std::bad_alloc&) {  // a failure without its reason: fails closed
        }
        switch (a.outcome) {
            case auth_answer::granted: _metrics.granted.bump(); break;
            case auth_answer::denied: _metrics.denied.bump(); break;
            case auth_answer::failed: _metrics.failed.bump(); break;
        }
        if (a.outcome != auth_answer::failed && _cfg.auth_cache.count() > 0) {
            try {
                _cache.store(t->call.cache_key(), a, now);
            } catch (const std::bad_alloc&) {
            }
        }
        answer(t->call.shard, std::move(a));
        curl_multi_remove_handle(_multi, e);
        _transfers.erase(t);
        discard(t);
        _metrics.in_flight.set(_metrics.in_flight.get() - 1);
    }
}

void auth_client::answer(std::uint32_t shard, auth_answer a) noexcept {
    _woken[shard] = true;
    auto& backlog = _backlog[shard];
    if (backlog.empty() && _shards[shard].auth_answers->try_push(std::move(a))) return;
    try {
        backlog.push_back(std::move(a));
    } catch (const std::bad_alloc&) {
        // The shard's own deadline fails the request closed.
    }
}

void auth_client::flush_answers() noexcept {
    for (std::uint32_t s = 0; s < _shards.size(); ++s) {
        auto& backlog = _backlog[s];
        while (!backlog.empty() && _shards[s].auth_answers->try_push(std::move(backlog.front())))
            backlog.pop_front();
        if (_woken[s]) wake_if_sleeping(_shards[s].shard_wake, _shards[s].shard_eventfd);
        _woken[s] = false;
    }
}

// Sleeps in curl's poll on its sockets and the wake eventfd, until a transfer moves, a
// shard queues a call, or curl's own timeout (at most 100 ms, for the stop flag).
void auth_client::sleep() noexcept {
    _wake.flag.set_sleeping();
    bool queued = false;
    for (auto& link : _shards) queued |= !link.auth_calls->empty();
    bool backlog = false;
    for (auto& b : _backlog) backlog |= !b.empty();
    long timeout = 100;
    curl_multi_timeout(_multi, &timeout);
    if (timeout < 0 || timeout > 100) timeout = 100;
    if (backlog) timeout = std::min(timeout, 1L);
    if (!queued && timeout > 0) {
        curl_waitfd extra{_wake.eventfd, CURL_WAIT_POLLIN, 0};
        int numfds = 0;
        curl_multi_poll(_multi, &extra, 1, static_cast<int>(timeout), &numfds);
        if (extra.revents & POLLIN) {
            std::uint64_t n;
            [[maybe_unused]] auto r = ::read(_wake.eventfd, &n, sizeof n);
        }
    }
    _wake.flag.clear();
}

}  // namespace jugglite

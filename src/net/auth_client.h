// The auth thread: asks the application's auth callback (--auth-url) about stream requests
// that the shards hand it, over keep-alive HTTP/1.1 connections driven by libcurl's multi
// interface, and hands each answer back to its shard. It runs only with --auth-url. A
// shard never waits for it: a request waits in its own state while its shard goes on.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/auth_call.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/shard_link.h"

namespace jugglite {

class auth_client {
public:
    // Everything referenced must outlive run(). `wake.eventfd` must be non-blocking; the
    // shards write it when they queue calls (see thread_wakeup). Throws on a curl setup
    // failure (startup only).
    auth_client(const config& cfg, std::span<shard_link> shards, thread_wakeup& wake,
                std::atomic<bool>& stop, auth_metrics& metrics);
    ~auth_client();
    auth_client(const auth_client&) = delete;
    auth_client& operator=(const auth_client&) = delete;

    // Runs until `stop` is set. Every call gets exactly one answer.
    void run() noexcept;

private:
    // One call being asked: its easy handle, headers and the body read so far.
    struct transfer {
        CURL* easy = nullptr;
        curl_slist* headers = nullptr;
        auth_call call;
        std::string body;
        bool too_large = false;
    };

    void take_calls(std::int64_t now) noexcept;
    void recycle(CURL* e) noexcept;
    void fail(const auth_call& call, const char* reason) noexcept;
    void discard(transfer* t) noexcept;
    [[nodiscard]] static auth_answer read_answer(const CURLMsg& m, const transfer& t);
    void start(auth_call call) noexcept;
    void finish_transfers(std::int64_t now) noexcept;
    void answer(std::uint32_t shard, auth_answer a) noexcept;
    void flush_answers() noexcept;
    void sleep() noexcept;
    static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) noexcept;

    const config& _cfg;
    std::span<shard_link> _shards;
    thread_wakeup& _wake;
    std::atomic<bool>& _stop;
    auth_metrics& _metrics;
    CURLM* _multi = nullptr;
    auth_cache _cache;
    std::unordered_set<transfer*> _transfers;  // in flight
    std::vector<CURL*> _idle_handles;          // finished easy handles, reset and reused
    std::vector<std::deque<auth_answer>> _backlog;  // per shard: answers its queue had no room for
    std::vector<bool> _woken;                  // per shard: given answers this turn
    std::int64_t _next_purge_ms = 0;
};

}  // namespace jugglite

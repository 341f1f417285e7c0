// The blocking Redis connection of a side thread (the events thread, the history thread):
// such a thread serves no client, so it may wait for Redis, but never for long.
#pragma once

#include <chrono>
#include <expected>
#include <memory>
#include <string>

#include "core/config.h"

struct redisContext;

namespace jugglite {

struct redis_context_deleter {
    void operator()(redisContext* c) const noexcept;
};
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_deleter>;

// Connects to `ep` within 1 s, makes every later read and write time out after
// `reply_timeout`, and AUTHs with the URL's credentials; with `select_db`, SELECTs the
// URL's database too. Returns the connection, or why there is none.
[[nodiscard]] std::expected<redis_context_ptr, std::string> blocking_connect(
    const redis_endpoint& ep, std::chrono::milliseconds reply_timeout, bool select_db) noexcept;

}  // namespace jugglite

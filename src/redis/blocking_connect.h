// The blocking Redis connection of a side thread (the events thread, the history thread):
// such a thread serves no client, so it may wait for Redis, but never for long.
#pragma once

#include <chrono>
#include <expected>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "core/config.h"

struct redisContext;
struct redisReply;

namespace jugglite {

struct redis_context_deleter {
    void operator()(redisContext* c) const noexcept;
};
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_deleter>;
struct redis_reply_deleter {
    void operator()(redisReply* r) const noexcept;
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

// Runs the command `args` and waits for its reply; null when the connection failed
// (c->errstr says why).
[[nodiscard]] redis_reply_ptr redis_command(redisContext* c, std::span<const std::string> args);
[[nodiscard]] inline redis_reply_ptr redis_command(redisContext* c, std::initializer_list<std::string> args) {
    return redis_command(c, std::span<const std::string>(args.begin(), args.size()));
}
// Appends the command `args` to the connection's output buffer (a pipeline); false when
// hiredis refused it.
[[nodiscard]] bool redis_append(redisContext* c, std::span<const std::string> args);

// Connects to `ep` within 1 s, makes every later read and write time out after
// `reply_timeout`, and AUTHs with the URL's credentials; with `select_db`, SELECTs the
// URL's database too. Returns the connection, or why there is none.
[[nodiscard]] std::expected<redis_context_ptr, std::string> blocking_connect(
    const redis_endpoint& ep, std::chrono::milliseconds reply_timeout, bool select_db) noexcept;

}  // namespace jugglite

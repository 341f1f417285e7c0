#include "redis/blocking_connect.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <vector>

namespace jugglite {

void redis_context_deleter::operator()(redisContext* c) const noexcept { redisFree(c); }
void redis_reply_deleter::operator()(redisReply* r) const noexcept { freeReplyObject(r); }

namespace {

// hiredis' argv form of `args`.
struct argv_form {
    explicit argv_form(std::span<const std::string> args) {
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
    }
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
};

}  // namespace

redis_reply_ptr redis_command(redisContext* c, std::span<const std::string> args) {
    argv_form f(args);
    return redis_reply_ptr(static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(f.argv.size()), f.argv.data(), f.lens.data())));
}

bool redis_append(redisContext* c, std::span<const std::string> args) {
    argv_form f(args);
    return redisAppendCommandArgv(c, static_cast<int>(f.argv.size()), f.argv.data(), f.lens.data()) == REDIS_OK;
}

namespace {

std::expected<redis_context_ptr, std::string> connect_and_set_up(const redis_endpoint& ep,
                                                                 std::chrono::milliseconds reply_timeout,
                                                                 bool select_db) {
    timeval connect_tv{1, 0};
    redis_context_ptr ctx(redisConnectWithTimeout(ep.host.c_str(), ep.port, connect_tv));
    if (!ctx) return std::unexpected(std::string("out of memory"));
    if (ctx->err) return std::unexpected(std::string(ctx->errstr));
    const auto ms = reply_timeout.count();
    timeval reply_tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
    redisSetTimeout(ctx.get(), reply_tv);
    std::vector<std::vector<std::string>> setup;
    if (!ep.password.empty()) {
        if (ep.user.empty()) setup.push_back({"AUTH", ep.password});
        else setup.push_back({"AUTH", ep.user, ep.password});
    }
    if (select_db && ep.db != 0) setup.push_back({"SELECT", std::to_string(ep.db)});
    for (const auto& args : setup) {
        redis_reply_ptr r = redis_command(ctx.get(), args);
        if (!r) return std::unexpected(std::string(ctx->errstr));
        if (r->type == REDIS_REPLY_ERROR)
            return std::unexpected(fmt::format("{} failed: {}", args[0], std::string_view(r->str, r->len)));
    }
    return ctx;
}

}  // namespace

std::expected<redis_context_ptr, std::string> blocking_connect(const redis_endpoint& ep,
                                                               std::chrono::milliseconds reply_timeout,
                                                               bool select_db) noexcept {
    try {
        return connect_and_set_up(ep, reply_timeout, select_db);
    } catch (const std::bad_alloc&) {
        return std::unexpected(std::string("out of memory"));  // short enough to need no allocation
    }
}

}  // namespace jugglite

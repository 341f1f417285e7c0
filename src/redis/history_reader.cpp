#include "redis/history_reader.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "core/clock.h"
#include "core/log.h"
#include "core/sse_frame.h"

namespace jugglite {

namespace {

std::string_view str(const redisReply& r) { return {r.str, static_cast<std::size_t>(r.len)}; }

// One XRANGE reply as a stream_read: each entry's "d" is its payload, "p" its previous id.
// Frames are built here, off the redis thread. Stops (truncated) at the replay bounds. A
// payload over `max_payload` (--max-message-bytes) gets no frame, as it got none live.
bool parse_read(const redisReply& r, stream_read& out, std::size_t max_payload) {
    if (r.type != REDIS_REPLY_ARRAY) return false;
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < r.elements; ++i) {
        const redisReply& e = *r.element[i];
        if (e.type != REDIS_REPLY_ARRAY || e.elements != 2 || e.element[0]->type != REDIS_REPLY_STRING ||
            e.element[1]->type != REDIS_REPLY_ARRAY)
            return false;
        auto id = stream_id::parse(str(*e.element[0]));
        if (!id) return false;
        std::string_view payload, previous;
        const redisReply& fields = *e.element[1];
        for (std::size_t f = 0; f + 1 < fields.elements; f += 2) {
            if (fields.element[f]->type != REDIS_REPLY_STRING || fields.element[f + 1]->type != REDIS_REPLY_STRING)
                continue;
            std::string_view name = str(*fields.element[f]);
            if (name == "d") payload = str(*fields.element[f + 1]);
            else if (name == "p") previous = str(*fields.element[f + 1]);
        }
        if (out.entries.size() >= limits::replay_max_entries || bytes > limits::replay_max_bytes) {
            out.truncated = true;
            return true;
        }
        if (out.entries.empty() && !previous.empty()) out.first_previous = stream_id::parse(previous);
        if (payload.size() > max_payload) {
            out.entries.push_back({*id, frame_ref{}});
            continue;
        }
        out.entries.push_back({*id, make_sse_frame(payload, 0, {*id, false})});
        bytes += payload.size();
    }
    return true;
}

}  // namespace

std::string marker_channel(const config& cfg) {
    return fmt::format("{}sync:{}:{}", cfg.history.prefix, cfg.instance, ::getpid());
}

history_reader::history_reader(const config& cfg, history_link& link, std::atomic<bool>& stop,
                               history_metrics& metrics)
    : _cfg(cfg),
      _link(link),
      _stop(stop),
      _metrics(metrics),
      _marker(marker_channel(cfg)),
      _library(history_library(cfg.history)),
      _fingerprint(history_fingerprint(cfg.history)) {}

history_reader::~history_reader() = default;

void history_reader::run() noexcept {
    while (!_stop.load(std::memory_order_acquire)) {
        std::int64_t now = monotonic_ms();
        if (!_ctx && now >= _next_attempt_ms && !connect(now)) continue;
        if (_ctx && now >= _next_check_ms) {
            _next_check_ms = now + limits::history_library_check.count();
            if (!ensure_library()) continue;
        }
        // The redis thread has one batch in flight: an older one still queued was given up
        // (its deadline passed), so only the newest is run.
        std::optional<history_batch> batch;
        while (auto b = _link.batches.try_pop()) batch = std::move(b);
        const bool worked = batch.has_value();
        if (batch) {
            history_batch_result r = execute(*batch);
            // One batch in flight means the results queue has room; should it not, the
            // result is lost and the batch asked again after its deadline there.
            (void)_link.results.try_push(std::move(r));
            wake_if_sleeping(_link.subscriber_wake->flag, _link.subscriber_wake->eventfd);
        }
        if (!worked) sleep(_ctx ? std::max<std::int64_t>(_next_check_ms - monotonic_ms(), 1) : 100);
    }
    _ctx.reset();
}

bool history_reader::connect(std::int64_t now) noexcept {
    const auto& ep = _cfg.redis;
    // The streams live in the publishers' database; pub/sub ignores it, reads don't.
    auto ctx = blocking_connect(ep, limits::redis_reply_timeout, true);
    if (!ctx) {
        disconnect(ctx.error(), now);
        return false;
    }
    _ctx = std::move(*ctx);
    _backoff_ms = 0;
    _next_check_ms = now;
    log::info("history: command connection to {} up", ep.display());
    return true;
}

void history_reader::disconnect(std::string_view why, std::int64_t now) noexcept {
    log::warn(_link_log, now, "history: command connection to {}: {}", _cfg.redis.display(), why);
    _ctx.reset();
    _link.library_ready.store(false, std::memory_order_relaxed);
    _backoff_ms = std::clamp<std::int64_t>(_backoff_ms * 2, limits::redis_backoff_min.count(),
                                           limits::redis_backoff_max.count());
    _next_attempt_ms = now + _backoff_ms;
}

// The library must be there at our version or a newer one: a Redis without persistence
// loses it on a restart, and during a rolling deploy the newest jugglite's version stays.
bool history_reader::ensure_library() noexcept {
    redis_reply_ptr r = redis_command(_ctx.get(), {"FCALL_RO", "jugglite_version", "0"});
    if (!r) {
        disconnect(_ctx->errstr, monotonic_ms());
        return false;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer > history_version) {
        _link.library_ready.store(true, std::memory_order_relaxed);  // a newer jugglite's
        return true;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer == history_version) {
        redis_reply_ptr settings = redis_command(_ctx.get(), {"FCALL_RO", "jugglite_settings", "0"});
        if (!settings) {
            disconnect(_ctx->errstr, monotonic_ms());
            return false;
        }
        if (settings->type == REDIS_REPLY_STRING && str(*settings) == _fingerprint) {
            _link.library_ready.store(true, std::memory_order_relaxed);
            return true;
        }
        // Loaded with other settings: by an earlier run, or by another node configured
        // differently, which would make them take turns.
        log::warn(_load_log, monotonic_ms(),
                  "history: the jugglite library in Redis has other settings ({}); loading ours ({})",
                  settings->type == REDIS_REPLY_STRING ? str(*settings) : "unknown", _fingerprint);
    }
    redis_reply_ptr load = redis_command(_ctx.get(), {"FUNCTION", "LOAD", "REPLACE", _library});
    if (!load) {
        disconnect(_ctx->errstr, monotonic_ms());
        return false;
    }
    if (load->type == REDIS_REPLY_ERROR) {
        // Not fatal: an operator may load it by hand (README); reads work without it.
        log::warn(_load_log, monotonic_ms(), "history: FUNCTION LOAD of the jugglite library refused: {}",
                  str(*load));
        return true;
    }
    _metrics.library_loads.bump();
    _link.library_ready.store(true, std::memory_order_relaxed);
    log::info("history: loaded the jugglite library (version {}) into {}", history_version,
              _cfg.redis.display());
    return true;
}

history_batch_result history_reader::execute(const history_batch& b) noexcept {
    history_batch_result out;
    out.token = b.token;
    if (!_ctx) return out;
    try {
        // Every argument first: once MULTI is appended, nothing may fail before EXEC is, or
        // the connection's replies would no longer match its commands.
        const std::string count = std::to_string(limits::replay_max_entries + 1);
        std::vector<std::vector<std::string>> commands;
        commands.reserve(b.reads.size() + 5);
        commands.push_back({"MULTI"});
        for (const auto& read : b.reads)
            commands.push_back({"XRANGE", history_key(_cfg.history, _cfg.namespace_prefix + read.channel),
                                read.from.text(), "+", "COUNT", count});
        commands.push_back({"GET", history_clock_key(_cfg.history, {})});  // one Redis: its one clock
        commands.push_back({"TIME"});
        commands.push_back({"PUBLISH", _marker, std::to_string(b.token)});
        commands.push_back({"EXEC"});
        for (const auto& args : commands) {
            if (!redis_append(_ctx.get(), args)) {
                disconnect(_ctx->errstr, monotonic_ms());
                _metrics.read_errors.bump();
                return out;
            }
        }
        // MULTI and each queued command answer +OK / +QUEUED; then EXEC's array.
        const std::size_t replies = commands.size();
        redis_reply_ptr exec;
        for (std::size_t i = 0; i < replies; ++i) {
            void* raw = nullptr;
            if (redisGetReply(_ctx.get(), &raw) != REDIS_OK) {
                disconnect(_ctx->errstr, monotonic_ms());
                _metrics.read_errors.bump();
                return out;
            }
            redis_reply_ptr r(static_cast<redisReply*>(raw));
            if (i + 1 == replies) exec = std::move(r);
        }
        _metrics.batches.bump();
        _metrics.reads.bump(b.reads.size());
        const std::size_t n = b.reads.size();
        if (!exec || exec->type != REDIS_REPLY_ARRAY || exec->elements != n + 3) {
            _metrics.read_errors.bump();
            log::warn(_batch_log, monotonic_ms(), "history: a batch of reads failed: {}",
                      exec && exec->type == REDIS_REPLY_ERROR ? str(*exec) : "unexpected reply");
            return out;
        }
        const redisReply& marker = *exec->element[n + 2];
        if (marker.type != REDIS_REPLY_INTEGER || marker.integer < 1) {
            // Nobody heard the marker (our subscription is gone): the batch can't be placed.
            _metrics.read_errors.bump();
            return out;
        }
        const redisReply& time = *exec->element[n + 1];
        if (time.type == REDIS_REPLY_ARRAY && time.elements == 2 && time.element[0]->type == REDIS_REPLY_STRING &&
            time.element[1]->type == REDIS_REPLY_STRING)
            out.redis_ms = std::stoll(std::string(str(*time.element[0]))) * 1000 +
                           std::stoll(std::string(str(*time.element[1]))) / 1000;
        const std::int64_t floor_ms = out.redis_ms - _cfg.history.ttl.count();
        out.reads.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            out.reads[i].from = b.reads[i].from;
            out.reads[i].expiry_floor = {static_cast<std::uint64_t>(std::max<std::int64_t>(floor_ms, 0)), 0};
            const redisReply& r = *exec->element[i];
            // A key of another type (WRONGTYPE) is no history: read as empty.
            if (r.type != REDIS_REPLY_ERROR && !parse_read(r, out.reads[i], _cfg.max_message_bytes)) {
                _metrics.read_errors.bump();
                return out;
            }
        }
        const redisReply& clock_reply = *exec->element[n];
        if (clock_reply.type == REDIS_REPLY_STRING)
            out.clock = stream_id::parse(str(clock_reply)).value_or(stream_id{});
        out.ok = true;
    } catch (const std::exception&) {  // out of memory: the replies may be half read
        _metrics.read_errors.bump();
        disconnect("out of memory reading a batch", monotonic_ms());
        out = history_batch_result{};
        out.token = b.token;
    }
    return out;
}

void history_reader::sleep(std::int64_t timeout_ms) noexcept {
    pollfd fd{_link.reader_wake.eventfd, POLLIN, 0};
    _link.reader_wake.flag.set_sleeping();
    if (!_link.batches.empty() || _stop.load(std::memory_order_acquire)) {
        _link.reader_wake.flag.clear();
        return;
    }
    if (::poll(&fd, 1, static_cast<int>(std::min<std::int64_t>(timeout_ms, 1000))) > 0) {
        std::uint64_t v;
        [[maybe_unused]] auto n = ::read(fd.fd, &v, sizeof v);
    }
    _link.reader_wake.flag.clear();
}

}  // namespace jugglite

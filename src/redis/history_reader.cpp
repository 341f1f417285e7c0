#include "redis/history_reader.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/key_slot.h"
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

std::string marker_channel(const config& cfg, std::uint16_t slot) {
    return fmt::format("{{{}}}{}", slot_tag(slot), marker_channel(cfg));
}

history_reader::history_reader(const config& cfg, history_link& link, std::atomic<bool>& stop,
                               history_metrics& metrics)
    : _cfg(cfg),
      _link(link),
      _stop(stop),
      _metrics(metrics),
      _library(history_library(cfg.history)),
      _fingerprint(history_fingerprint(cfg.history)) {
    if (!cfg.cluster()) {
        _nodes.push_back(std::make_unique<node>());
        _nodes.back()->endpoint = cfg.redis;
    }
}

history_reader::~history_reader() = default;

void history_reader::run() noexcept {
    while (!_stop.load(std::memory_order_acquire)) {
        std::int64_t now = monotonic_ms();
        try {
            if (_cfg.cluster()) update_masters();
        } catch (const std::bad_alloc&) {  // the list is taken again next turn
        }
        // Every node keeps the library loaded (checked every few seconds).
        std::int64_t next_check = now + limits::history_library_check.count();
        for (auto& n : _nodes) {
            if (n->ctx && now >= n->next_check_ms) {
                n->next_check_ms = now + limits::history_library_check.count();
                (void)ensure_library(*n);
            } else if (!n->ctx && now >= n->next_attempt_ms) {
                (void)usable(*n, now);
            }
            next_check = std::min(next_check, n->ctx ? n->next_check_ms : n->next_attempt_ms);
        }
        // The redis thread has one batch in flight: an older one still queued was given up
        // (its deadline passed), so only the newest is run.
        std::optional<history_batch> batch;
        while (auto b = _link.batches.try_pop()) batch = std::move(b);
        if (batch) {
            history_batch_result r = execute(*batch);
            // One batch in flight means the results queue has room; should it not, the
            // result is lost and the batch asked again after its deadline there.
            (void)_link.results.try_push(std::move(r));
            wake_if_sleeping(_link.subscriber_wake->flag, _link.subscriber_wake->eventfd);
            continue;
        }
        sleep(std::clamp<std::int64_t>(next_check - monotonic_ms(), 1, 100));
    }
    _nodes.clear();
}

// Cluster: a connection to each master of the redis thread's last topology; connections to
// nodes that are no longer masters go.
void history_reader::update_masters() {
    {
        std::lock_guard lock(_link.masters_mutex);
        if (_link.masters == _masters) return;
        _masters = _link.masters;
    }
    std::erase_if(_nodes, [&](const std::unique_ptr<node>& n) {
        return std::ranges::find(_masters, history_node{n->endpoint.host, n->endpoint.port}) == _masters.end();
    });
    for (const auto& m : _masters) (void)node_for(m.host, m.port);
}

history_reader::node& history_reader::node_for(const std::string& host, std::uint16_t port) {
    if (!_cfg.cluster()) return *_nodes.front();
    for (auto& n : _nodes)
        if (n->endpoint.host == host && n->endpoint.port == port) return *n;
    auto n = std::make_unique<node>();
    n->endpoint = _cfg.redis;  // the first seed's credentials
    n->endpoint.host = host;
    n->endpoint.port = port;
    _nodes.push_back(std::move(n));
    return *_nodes.back();
}

// Connected, or connected now (and the library checked), unless the node is backing off.
bool history_reader::usable(node& n, std::int64_t now) noexcept {
    if (n.ctx) return true;
    if (now < n.next_attempt_ms || !connect(n, now)) return false;
    n.next_check_ms = now + limits::history_library_check.count();
    return ensure_library(n);
}

bool history_reader::connect(node& n, std::int64_t now) noexcept {
    // The streams live in the publishers' database; pub/sub ignores it, reads don't.
    auto ctx = blocking_connect(n.endpoint, limits::redis_reply_timeout, true);
    if (!ctx) {
        disconnect(n, ctx.error(), now);
        return false;
    }
    n.ctx = std::move(*ctx);
    n.backoff_ms = 0;
    log::info("history: command connection to {} up", n.endpoint.display());
    return true;
}

void history_reader::disconnect(node& n, std::string_view why, std::int64_t now) noexcept {
    log::warn(_link_log, now, "history: command connection to {}: {}", n.endpoint.display(), why);
    n.ctx.reset();
    n.backoff_ms = std::clamp<std::int64_t>(n.backoff_ms * 2, limits::redis_backoff_min.count(),
                                            limits::redis_backoff_max.count());
    n.next_attempt_ms = now + n.backoff_ms;
}

// The library must be there at our version or a newer one: a Redis without persistence
// loses it on a restart, and during a rolling deploy the newest jugglite's version stays.
bool history_reader::ensure_library(node& n) noexcept {
    redis_reply_ptr r = redis_command(n.ctx.get(), {"FCALL_RO", "jugglite_version", "0"});
    if (!r) {
        disconnect(n, n.ctx->errstr, monotonic_ms());
        return false;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer > history_version) return true;  // a newer jugglite's
    if (r->type == REDIS_REPLY_INTEGER && r->integer == history_version) {
        redis_reply_ptr settings = redis_command(n.ctx.get(), {"FCALL_RO", "jugglite_settings", "0"});
        if (!settings) {
            disconnect(n, n.ctx->errstr, monotonic_ms());
            return false;
        }
        if (settings->type == REDIS_REPLY_STRING && str(*settings) == _fingerprint) return true;
        // Loaded with other settings: by an earlier run, or by another node configured
        // differently, which would make them take turns.
        log::warn(_load_log, monotonic_ms(),
                  "history: the jugglite library in {} has other settings ({}); loading ours ({})",
                  n.endpoint.display(), settings->type == REDIS_REPLY_STRING ? str(*settings) : "unknown",
                  _fingerprint);
    }
    redis_reply_ptr load = redis_command(n.ctx.get(), {"FUNCTION", "LOAD", "REPLACE", _library});
    if (!load) {
        disconnect(n, n.ctx->errstr, monotonic_ms());
        return false;
    }
    if (load->type == REDIS_REPLY_ERROR) {
        // Not fatal: an operator may load it by hand (README); reads work without it.
        log::warn(_load_log, monotonic_ms(), "history: FUNCTION LOAD of the jugglite library into {} refused: {}",
                  n.endpoint.display(), str(*load));
        return true;
    }
    _metrics.library_loads.bump();
    log::info("history: loaded the jugglite library (version {}) into {}", history_version,
              n.endpoint.display());
    return true;
}

// The reads of one batch, grouped by node (one on --redis). On a cluster a node that can't
// be read fails its own reads, which the redis thread asks again; the others stand. The
// batch fails when no read stands.
history_batch_result history_reader::execute(const history_batch& b) noexcept {
    history_batch_result out;
    out.token = b.token;
    try {
        out.reads.resize(b.reads.size());
        out.clocks.resize(b.reads.size());
        out.failed.assign(b.reads.size(), 0);
        std::vector<bool> done(b.reads.size(), false);
        std::vector<std::size_t> group;
        const std::int64_t now = monotonic_ms();
        std::size_t failed = 0;
        for (std::size_t i = 0; i < b.reads.size(); ++i) {
            if (done[i]) continue;
            group.clear();
            for (std::size_t j = i; j < b.reads.size(); ++j)
                if (!done[j] && b.reads[j].host == b.reads[i].host && b.reads[j].port == b.reads[i].port) {
                    group.push_back(j);
                    done[j] = true;
                }
            node& n = node_for(b.reads[i].host, b.reads[i].port);
            if (!usable(n, now) || !execute_on(n, b, group, out)) {
                _metrics.read_errors.bump();
                for (std::size_t j : group) out.failed[j] = 1;
                failed += group.size();
            }
        }
        if (failed > 0 && (!_cfg.cluster() || failed == b.reads.size())) return history_batch_result{b.token};
        // A batch of no reads (one Redis: resumes its windows answer) still reads the clock.
        if (b.reads.empty()) {
            if (_cfg.cluster()) return out;
            node& n = *_nodes.front();
            if (!usable(n, now) || !execute_on(n, b, {}, out)) {
                _metrics.read_errors.bump();
                return history_batch_result{b.token};
            }
        }
        out.ok = true;
    } catch (const std::exception&) {  // out of memory
        _metrics.read_errors.bump();
        out = history_batch_result{b.token};
    }
    return out;
}

// One MULTI per slot (one for all on --redis), pipelined on `n`: XRANGE of each of
// `reads`, GET of the clock, TIME, and the marker. False when the node failed or refused.
bool history_reader::execute_on(node& n, const history_batch& b, std::span<const std::size_t> reads,
                                history_batch_result& out) {
    // The slots in the order of their first read; on --redis every read is "slot 0".
    auto slot_of = [&](std::size_t i) { return _cfg.cluster() ? b.reads[i].slot : std::uint16_t{0}; };
    std::vector<std::vector<std::size_t>> slots;
    for (std::size_t i : reads) {
        auto it = std::ranges::find_if(slots, [&](const auto& s) { return slot_of(s.front()) == slot_of(i); });
        if (it == slots.end()) slots.push_back({i});
        else it->push_back(i);
    }
    if (slots.empty()) slots.emplace_back();  // no reads: the clock and the marker alone
    // Every argument first: once a MULTI is appended, nothing may fail before its EXEC is,
    // or the connection's replies would no longer match its commands.
    const std::string count = std::to_string(limits::replay_max_entries + 1);
    const std::string token = std::to_string(b.token);
    std::vector<std::vector<std::string>> commands;
    for (const auto& slot : slots) {
        commands.push_back({"MULTI"});
        for (std::size_t i : slot)
            commands.push_back({"XRANGE", history_key(_cfg.history, _cfg.namespace_prefix + b.reads[i].channel),
                                b.reads[i].from.text(), "+", "COUNT", count});
        if (_cfg.cluster()) {
            const std::uint16_t s = b.reads[slot.front()].slot;
            commands.push_back({"GET", history_clock_key(_cfg.history, _cfg.namespace_prefix + b.reads[slot.front()].channel)});
            commands.push_back({"TIME"});
            commands.push_back({"SPUBLISH", marker_channel(_cfg, s), token});
        } else {
            commands.push_back({"GET", history_clock_key(_cfg.history, {})});  // one Redis: its one clock
            commands.push_back({"TIME"});
            commands.push_back({"PUBLISH", marker_channel(_cfg), token});
        }
        commands.push_back({"EXEC"});
    }
    std::vector<redis_reply_ptr> execs;
    execs.reserve(slots.size());
    for (const auto& args : commands) {
        if (!redis_append(n.ctx.get(), args)) {
            disconnect(n, n.ctx->errstr, monotonic_ms());
            return false;
        }
    }
    // MULTI and each queued command answer +OK / +QUEUED; then EXEC's array.
    try {
        for (std::size_t i = 0; i < commands.size(); ++i) {
            void* raw = nullptr;
            if (redisGetReply(n.ctx.get(), &raw) != REDIS_OK) {
                disconnect(n, n.ctx->errstr, monotonic_ms());
                return false;
            }
            redis_reply_ptr r(static_cast<redisReply*>(raw));
            if (commands[i].front() == "EXEC") execs.push_back(std::move(r));
        }
    } catch (const std::bad_alloc&) {
        // Replies are left unread: the connection no longer lines up with its commands.
        disconnect(n, "out of memory reading a batch", monotonic_ms());
        throw;
    }
    _metrics.batches.bump();
    _metrics.reads.bump(reads.size());
    for (std::size_t g = 0; g < slots.size(); ++g) {
        const std::vector<std::size_t>& slot = slots[g];
        const std::size_t k = slot.size();
        const redisReply* exec = execs[g].get();
        if (!exec || exec->type != REDIS_REPLY_ARRAY || exec->elements != k + 3) {
            // On a cluster, MOVED or ASK: the redis thread's topology is behind; its links
            // hear of it too.
            log::warn(_batch_log, monotonic_ms(), "history: a batch of reads on {} failed: {}",
                      n.endpoint.display(),
                      exec && exec->type == REDIS_REPLY_ERROR ? str(*exec) : "unexpected reply");
            return false;
        }
        const redisReply& marker = *exec->element[k + 2];
        // Nobody heard the marker (our subscription is gone): the batch can't be placed. With
        // --redis-read-from replica the subscriber is on a replica, which the count leaves out.
        if (marker.type != REDIS_REPLY_INTEGER || (marker.integer < 1 && !_cfg.read_from_replicas))
            return false;
        std::int64_t redis_ms = 0;
        const redisReply& time = *exec->element[k + 1];
        if (time.type == REDIS_REPLY_ARRAY && time.elements == 2 && time.element[0]->type == REDIS_REPLY_STRING &&
            time.element[1]->type == REDIS_REPLY_STRING)
            redis_ms = std::stoll(std::string(str(*time.element[0]))) * 1000 +
                       std::stoll(std::string(str(*time.element[1]))) / 1000;
        if (out.redis_ms == 0 || redis_ms < out.redis_ms) out.redis_ms = redis_ms;
        stream_id clock;
        const redisReply& clock_reply = *exec->element[k];
        if (clock_reply.type == REDIS_REPLY_STRING) clock = stream_id::parse(str(clock_reply)).value_or(stream_id{});
        const std::int64_t floor_ms = redis_ms - _cfg.history.ttl.count();
        for (std::size_t j = 0; j < k; ++j) {
            stream_read& read = out.reads[slot[j]];
            read.from = b.reads[slot[j]].from;
            read.expiry_floor = {static_cast<std::uint64_t>(std::max<std::int64_t>(floor_ms, 0)), 0};
            out.clocks[slot[j]] = clock;
            const redisReply& r = *exec->element[j];
            // A key of another type (WRONGTYPE) is no history: read as empty.
            if (r.type != REDIS_REPLY_ERROR && !parse_read(r, read, _cfg.max_message_bytes)) return false;
        }
        if (reads.empty()) out.clocks.push_back(clock);  // no reads: the clock alone
    }
    return true;
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

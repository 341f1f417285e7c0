// The redis thread's side of history and resume (--history).
//
// Live messages published with FCALL jugglite_publish go into the in-memory windows as
// they are routed. A stream that resumes asks, through its shard, for the history of its
// channels after its Last-Event-ID; the answer goes back in the shard's message queue, at
// an exact place among the live messages (see `replay` in shard_link.h):
// - from the windows, when they cover the id: every entry up to the last one routed;
// - else from Redis, in a batch of reads that the history thread runs as one MULTI with a
//   PUBLISH on this process' marker channel. The marker comes back on the subscriber link
//   after every message published before the reads, so when both the reads and the marker
//   are in, the answer holds every entry up to the clock read in the transaction, and every
//   later one reaches the stream live. Requests for one channel share its read.
// A channel whose window is missing messages (the envelope's previous id is not the last
// one routed, or the link was lost) catches up: its live messages wait while its stream is
// read from the window's tail, and go out after what the read holds.
#include <algorithm>
#include <unordered_set>
#include <utility>

#include "core/clock.h"
#include "core/log.h"
#include "core/sse_frame.h"
#include "redis/redis_subscriber.h"

namespace jugglite {

namespace {

std::size_t frame_bytes(const std::vector<history_entry>& entries) {
    std::size_t n = 0;
    for (const auto& e : entries) n += e.frame->size();
    return n;
}

}  // namespace

bool redis_subscriber::admit_live(std::string_view channel, const frame_ref& f,
                                  std::optional<stream_id> previous) {
    if (auto it = _catch_ups.empty() ? _catch_ups.end() : _catch_ups.find(channel); it != _catch_ups.end()) {
        auto& held = it->second.held;
        if (held.size() >= limits::catch_up_hold_max) {
            // Redis is not answering the read: stop holding, at the cost of the gap.
            _hm->catch_ups_abandoned.bump();
            log::warn("history: catching up '{}' abandoned after {} held messages", channel, held.size());
            std::deque<held_message> out = std::move(held);
            _catch_ups.erase(it);
            for (auto& m : out) {
                if (!m.frame->id().empty()) {
                    _routed_max = std::max(_routed_max, m.frame->id());
                    _windows->forget(channel);
                }
                fan_out(channel, m.frame);
            }
            return true;
        }
        held.push_back({f, previous});
        return false;
    }
    if (f->id().empty()) return true;  // a plain PUBLISH: no history
    if (_windows->on_live(channel, {f->id(), f}, previous) == history_windows::fit::gap) {
        _hm->gaps.bump();
        start_catch_up(channel);
        _catch_ups.find(channel)->second.held.push_back({f, previous});
        return false;
    }
    _routed_max = std::max(_routed_max, f->id());
    return true;
}

void redis_subscriber::start_catch_up(std::string_view channel) {
    _catch_ups.try_emplace(std::string(channel));
}

// The read from the window's tail is in, taken when everything it holds had been routed:
// route what followed the tail, then what was held that the read did not hold.
void redis_subscriber::finish_catch_up(const std::string& channel, const stream_read& read) {
    auto it = _catch_ups.find(channel);
    if (it == _catch_ups.end()) return;
    std::deque<held_message> held = std::move(it->second.held);
    _catch_ups.erase(it);
    _recheck_resumes = true;
    _hm->catch_ups.bump();
    std::vector<history_entry> fresh = _windows->catch_up(channel, read);
    _hm->caught_up.bump(fresh.size());
    for (const auto& e : fresh) {
        _routed_max = std::max(_routed_max, e.id);
        fan_out(channel, e.frame);
    }
    while (!held.empty()) {
        held_message m = std::move(held.front());
        held.pop_front();
        if (m.frame->id().empty()) {
            fan_out(channel, m.frame);
            continue;
        }
        const history_window* w = _windows->find(channel);
        if (w && m.frame->id() <= w->tail()) continue;  // the read held it
        if (!admit_live(channel, m.frame, m.previous)) {
            // Another gap (the read stopped at its COUNT): the rest waits for the next read.
            auto& next = _catch_ups.find(channel)->second.held;
            for (auto& rest : held) next.push_back(std::move(rest));
            return;
        }
        fan_out(channel, m.frame);
    }
}

void redis_subscriber::history_link_lost() noexcept {
    _marker_ready = false;
    _windows->link_lost();
    _catch_ups.clear();  // re-read from the windows' tails once subscribed again
    _routed_max = {};
    abandon_batch(monotonic_ms());
}

// The link is up again with `channels` to subscribe: the windows of channels no longer
// wanted go (nothing would catch them up).
void redis_subscriber::history_link_up(std::span<const std::string> channels) noexcept {
    try {
        std::unordered_set<std::string_view> wanted(channels.begin(), channels.end());
        for (const auto& stale : _windows->stale_channels())
            if (!wanted.contains(stale)) _windows->forget(stale);
    } catch (const std::bad_alloc&) {  // they go when their channel is unsubscribed
    }
}

// A channel subscribed (again): a window that knew it before the link was lost catches up
// from its tail before its messages go on.
void redis_subscriber::history_subscribed(const std::string& channel) {
    const history_window* w = _windows->find(channel);
    if (w && w->status() == history_window::state::stale) start_catch_up(channel);
}

void redis_subscriber::history_unsubscribed(std::span<const std::string> channels) noexcept {
    for (const auto& c : channels) {
        _windows->forget(c);
        _catch_ups.erase(c);
    }
}

void redis_subscriber::on_marker(std::string_view token) noexcept {
    if (_batch_token == 0 || token != std::to_string(_batch_token)) return;
    _batch_marked = true;
    if (_batch_result) finish_batch();
}

// Every loop turn: resume requests in, answers out, batches of reads.
void redis_subscriber::history_turn(std::int64_t now) noexcept {
    try {
        drain_resumes(now);
        take_history_results(now);
        if (_batch_token != 0 && now - _batch_sent_ms > 2 * limits::redis_reply_timeout.count())
            abandon_batch(now);
        send_history_batch(now);
        // Requests that waited too long end with a retry: the client comes back with the
        // same Last-Event-ID.
        while (!_resumes.empty() && _resumes.front().deadline_ms <= now && _resumes.front().batch == 0) {
            _hm->unavailable.bump();
            answer(_resumes.front().shard, _resumes.front().req, replay::unavailable, {}, {});
            _resumes.pop_front();
        }
    } catch (const std::bad_alloc&) {
        log::warn("history: out of memory; resumes wait");
    }
    flush_answers();
    _hm->window_bytes.set(_windows->bytes());
    _hm->window_evicted.set(_windows->evicted());
}

void redis_subscriber::drain_resumes(std::int64_t now) {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        auto& q = *_shards[i].resumes;
        while (auto r = q.try_pop()) {
            _hm->resumes.bump();
            if (answer_from_windows(i, *r)) continue;
            _resumes.push_back({i, std::move(*r), 0, now + limits::resume_timeout.count()});
        }
    }
    // Requests that waited for a catch-up may be answered from the windows now.
    if (std::exchange(_recheck_resumes, false))
        std::erase_if(_resumes, [&](const pending_resume& p) {
            return p.batch == 0 && answer_from_windows(p.shard, p.req);
        });
}

// Answers `req` from the windows when they hold every entry after its id on each of its
// channels, up to the last one routed.
bool redis_subscriber::answer_from_windows(unsigned shard, const resume_request& req) {
    if (!req.from || _routed_max.empty() || *req.from > _routed_max) return false;
    for (const auto& c : req.channels) {
        const history_window* w = _windows->find(c);
        if (!w || !w->covers(*req.from) || _catch_ups.contains(c)) return false;
    }
    std::vector<history_entry> entries;
    for (const auto& c : req.channels) _windows->find(c)->collect(*req.from, _routed_max, entries);
    _hm->from_memory.bump();
    answer(shard, req, replay::entries, std::move(entries), _routed_max);
    return true;
}

void redis_subscriber::take_history_results(std::int64_t now) {
    while (auto r = _history->results.try_pop()) {
        if (r->token != _batch_token) continue;  // abandoned meanwhile
        if (!r->ok) {
            abandon_batch(now);
            _next_batch_ms = now + limits::redis_backoff_min.count();
            continue;
        }
        _batch_result = std::move(*r);
        if (_batch_marked) finish_batch();
    }
}

// One batch in flight at a time: requests that come meanwhile share the next one, so a
// storm of resumes costs reads per channel, not per client.
void redis_subscriber::send_history_batch(std::int64_t now) {
    if (_batch_token != 0 || !_marker_ready || _link != link_state::live || now < _next_batch_ms) return;
    std::vector<history_read> reads;
    std::unordered_map<std::string, std::size_t, string_hash, std::equal_to<>> index;  // channel -> reads[i]
    auto want = [&](const std::string& channel, stream_id from) {
        auto [it, fresh] = index.try_emplace(channel, reads.size());
        if (fresh) reads.push_back({channel, from});
        else reads[it->second].from = std::min(reads[it->second].from, from);
    };
    const std::uint64_t token = ++_next_token;
    for (auto& [channel, cu] : _catch_ups) {
        if (reads.size() >= limits::history_reads_per_batch) break;
        const history_window* w = _windows->find(channel);
        want(channel, w ? w->tail() : stream_id{});
        cu.batch = token;
    }
    bool any_request = false;
    for (auto& p : _resumes) {
        if (p.batch != 0) continue;
        if (reads.size() >= limits::history_reads_per_batch) break;
        bool waits = false;
        for (const auto& c : p.req.channels) waits |= _catch_ups.contains(c);
        if (waits) continue;  // answered from the window once its channel caught up
        for (const auto& c : p.req.channels) {
            const history_window* w = _windows->find(c);
            if (p.req.from && !(w && w->covers(*p.req.from))) want(c, *p.req.from);
        }
        p.batch = token;
        any_request = true;
    }
    if (reads.empty() && !any_request) return;
    if (!_history->batches.try_push(history_batch{token, reads})) {
        for (auto& [channel, cu] : _catch_ups)
            if (cu.batch == token) cu.batch = 0;
        for (auto& p : _resumes)
            if (p.batch == token) p.batch = 0;
        return;
    }
    _batch_token = token;
    _batch_reads = std::move(reads);
    _batch_result.reset();
    _batch_marked = false;
    _batch_sent_ms = now;
    wake_if_sleeping(_history->reader_wake.flag, _history->reader_wake.eventfd);
}

void redis_subscriber::abandon_batch(std::int64_t now) noexcept {
    if (_batch_token == 0) return;
    for (auto& [channel, cu] : _catch_ups)
        if (cu.batch == _batch_token) cu.batch = 0;
    for (auto& p : _resumes)
        if (p.batch == _batch_token) {
            p.batch = 0;
            p.deadline_ms = std::min(p.deadline_ms, now + limits::resume_timeout.count());
        }
    _batch_token = 0;
    _batch_result.reset();
    _batch_marked = false;
}

// The reads and their marker are both in: every entry up to the clock read in the
// transaction is either in the reads or was routed before the marker.
void redis_subscriber::finish_batch() {
    history_batch_result result = std::move(*_batch_result);
    const std::uint64_t token = _batch_token;
    std::vector<history_read> reads = std::move(_batch_reads);
    _batch_token = 0;
    _batch_result.reset();
    _batch_marked = false;
    const stream_id through = result.clock;
    // The marker is in: every entry up to the clock read has reached this thread (routed,
    // or held by a catch-up) or is in the reads.
    _routed_max = std::max(_routed_max, through);
    std::unordered_map<std::string_view, const stream_read*> by_channel;
    for (std::size_t i = 0; i < reads.size(); ++i) {
        const std::string& channel = reads[i].channel;
        auto cu = _catch_ups.find(channel);
        if (cu != _catch_ups.end() && cu->second.batch == token) {
            finish_catch_up(channel, result.reads[i]);
        } else {
            _windows->seed(channel, result.reads[i], through);
        }
        by_channel[channel] = &result.reads[i];
    }
    const std::uint64_t ttl = static_cast<std::uint64_t>(_cfg.history.ttl.count());
    std::erase_if(_resumes, [&](pending_resume& p) {
        if (p.batch != token) return false;
        const resume_request& req = p.req;
        if (!req.from) {
            _hm->resets_malformed.bump();
            answer(p.shard, req, replay::reset, {}, through, "malformed");
            return true;
        }
        const stream_id from = *req.from;
        if (from > through) {
            _hm->resets_unknown.bump();
            answer(p.shard, req, replay::reset, {}, through, "unknown");
            return true;
        }
        std::vector<history_entry> entries;
        for (const auto& c : req.channels) {
            const history_window* w = _windows->find(c);
            if (w && w->covers(from) && !_catch_ups.contains(c)) {
                w->collect(from, through, entries);
                continue;
            }
            auto it = by_channel.find(c);
            if (it == by_channel.end()) {
                p.batch = 0;  // asked before its channel caught up: ask again
                return false;
            }
            const stream_read& read = *it->second;
            auto base = read.base();
            // No entry after the id: nothing was lost unless the stream expired, which
            // only happens ttl after its last message.
            bool covered = base ? *base <= from
                                : (from.ms + ttl >= static_cast<std::uint64_t>(std::max<std::int64_t>(result.redis_ms, 0)));
            if (!covered) {
                _hm->resets_trimmed.bump();
                answer(p.shard, req, replay::reset, {}, through, "trimmed");
                return true;
            }
            if (read.truncated) {
                _hm->resets_too_long.bump();
                answer(p.shard, req, replay::reset, {}, through, "too_long");
                return true;
            }
            for (const auto& e : read.entries)
                if (e.id > from && e.id <= through) entries.push_back(e);
        }
        _hm->from_redis.bump();
        answer(p.shard, req, replay::entries, std::move(entries), through);
        return true;
    });
    // What the reads seeded may answer the requests that came while they were made.
    _recheck_resumes = true;
}

// Queues the answer for the stream; a replay past the bounds becomes a reset.
void redis_subscriber::answer(unsigned shard, const resume_request& req, replay::outcome_t outcome,
                              std::vector<history_entry> entries, stream_id through,
                              std::string_view reason) {
    if (outcome == replay::entries &&
        (entries.size() > limits::replay_max_entries || frame_bytes(entries) > limits::replay_max_bytes)) {
        _hm->resets_too_long.bump();
        outcome = replay::reset;
        reason = "too_long";
    }
    auto r = std::make_unique<replay>();
    r->conn = req.conn;
    r->gen = req.gen;
    r->outcome = outcome;
    r->through = through;
    if (outcome == replay::entries) {
        std::sort(entries.begin(), entries.end(),
                  [](const history_entry& a, const history_entry& b) { return a.id < b.id; });
        r->frames.reserve(entries.size());
        for (auto& e : entries) r->frames.push_back(std::move(e.frame));
        _hm->replayed.bump(r->frames.size());
    } else if (outcome == replay::reset) {
        r->frames.push_back(make_reset_frame(through, reason, req.from));
    }
    _answer_backlog[shard].push_back(std::move(r));
}

// Answers go in the shard's message queue. One it can't take waits here: its place among
// the live messages may then come later, which `through` keeps exact.
void redis_subscriber::flush_answers() noexcept {
    for (unsigned i = 0; i < _shards.size(); ++i) {
        auto& backlog = _answer_backlog[i];
        while (!backlog.empty()) {
            shard_message m{{}, {}, std::move(backlog.front())};
            if (!_shards[i].to_shard.try_push(std::move(m))) {
                backlog.front() = std::move(m.answer);
                break;
            }
            backlog.pop_front();
            _shards_to_wake |= shard_mask{1} << i;
        }
    }
}

}  // namespace jugglite

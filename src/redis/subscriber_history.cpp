// The redis thread's side of history and resume (--history).
//
// Live messages published with FCALL jugglite_publish go into the in-memory windows as
// they are routed. The windows live here, once per process, not in each shard (as
// DESIGN.md first had it): a reconnecting browser lands on any shard, and a channel's
// window must outlive its last local subscriber; frames are shared, so this costs no copy.
//
// A stream that resumes asks, through its shard, for the history of its channels after its
// Last-Event-ID; the answer goes back in the shard's message queue, at an exact place
// among the live messages (see `replay` in shard_link.h):
// - from the windows, when they cover the id: every entry up to the last one routed;
// - else from Redis, in a batch of reads that the history thread runs as one MULTI with a
//   PUBLISH on this process' marker channel. The marker comes back on the subscriber link
//   after every message published before the reads, so when both the reads and the marker
//   are in, the answer holds every entry up to the clock read in the transaction, and every
//   later one reaches the stream live. Requests for one channel share its read.
// A channel whose window is missing messages (the envelope's previous id is not the last
// one routed, or the link was lost) catches up: its live messages wait while its stream is
// read from the window's tail, and go out after what the read holds.
//
// On a cluster each slot has its own clock, so "every entry up to the clock" holds per
// slot: each slot's reads are a transaction of their own with the slot's marker, and each
// channel of an answer has its own `through` (replay::through_each). Ids of different slots
// order messages only as well as the masters' clocks agree: a client's Last-Event-ID comes
// from one slot, and is compared with the ids of the others (README, "Redis Cluster").
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

bool redis_subscriber::admit_live(std::string_view channel, stream_id id, const frame_ref& f,
                                  std::optional<stream_id> previous) {
    if (!_catch_ups.empty()) {
        if (auto it = _catch_ups.find(channel); it != _catch_ups.end()) {
            if (it->second.held.size() < limits::catch_up_hold_max) {
                it->second.held.push_back({id, f, previous});
                return false;
            }
            abandon_catch_up(channel);  // then this message goes as any other
        }
    }
    if (id.empty()) return true;  // a plain PUBLISH: no history
    if (_windows->on_live(channel, {id, f}, previous) == history_windows::fit::gap) {
        _hm->gaps.bump();
        start_catch_up(channel, monotonic_ms()).held.push_back({id, f, previous});
        return false;
    }
    stream_id& top = routed_max(channel);
    top = std::max(top, id);
    return true;
}

redis_subscriber::catch_up& redis_subscriber::start_catch_up(std::string_view channel, std::int64_t now) {
    auto [it, fresh] = _catch_ups.try_emplace(std::string(channel));
    if (fresh) it->second.deadline_ms = now + limits::resume_timeout.count();
    return it->second;
}

// Redis did not answer the catch-up's reads in time (or it held too much): what it held
// goes out, at the cost of the gap, and the window restarts from those messages.
void redis_subscriber::abandon_catch_up(std::string_view channel) {
    auto it = _catch_ups.find(channel);
    if (it == _catch_ups.end()) return;
    _hm->catch_ups_abandoned.bump();
    log::warn(_catch_up_log, monotonic_ms(),
              "history: catching up '{}' abandoned ({} messages held); messages before them may "
              "be missing from streams", channel, it->second.held.size());
    std::deque<held_message> held = std::move(it->second.held);
    _catch_ups.erase(it);
    _recheck_resumes = true;
    _windows->forget(channel);  // what it missed is unknown
    for (auto& m : held) {
        if (!m.id.empty()) {
            // Known again from the first message on, starting again at each further gap.
            if (_windows->on_live(channel, {m.id, m.frame}, m.previous) == history_windows::fit::gap)
                _windows->restart(channel, {m.id, m.frame}, m.previous);
            routed_max(channel) = std::max(routed_max(channel), m.id);
        }
        if (m.frame) fan_out(channel, m.frame);
    }
}

// The read from the window's tail is in, taken when everything it holds had been routed:
// route what followed the tail, then what was held that the read did not hold. A read that
// stopped at its bounds is followed by another, from its end, before the held messages go.
void redis_subscriber::finish_catch_up(const std::string& channel, const stream_read& read) {
    auto it = _catch_ups.find(channel);
    if (it == _catch_ups.end()) return;
    _hm->catch_ups.bump();
    std::vector<history_entry> fresh = _windows->catch_up(channel, read);
    for (const auto& e : fresh) {
        routed_max(channel) = std::max(routed_max(channel), e.id);
        if (!e.frame) continue;
        _hm->caught_up.bump();
        fan_out(channel, e.frame);
    }
    if (read.truncated) {
        it->second.batch = 0;
        return;
    }
    std::deque<held_message> held = std::move(it->second.held);
    _catch_ups.erase(it);
    _recheck_resumes = true;
    release(channel, std::move(held));
}

// Routes the messages a finished catch-up held, skipping those its read already routed.
void redis_subscriber::release(std::string_view channel, std::deque<held_message> held) {
    while (!held.empty()) {
        held_message m = std::move(held.front());
        held.pop_front();
        if (!m.id.empty()) {
            const history_window* w = _windows->find(channel);
            if (w && m.id <= w->tail()) continue;  // the read held it
        }
        if (!admit_live(channel, m.id, m.frame, m.previous)) {
            // Another gap: the rest waits behind it for the next read.
            auto& next = _catch_ups.find(channel)->second.held;
            for (auto& rest : held) next.push_back(std::move(rest));
            return;
        }
        if (m.frame) fan_out(channel, m.frame);
    }
}

void redis_subscriber::history_link_lost() noexcept {
    _windows->link_lost();
    _catch_ups.clear();  // re-read from the windows' tails once subscribed again
    std::ranges::fill(_routed_max, stream_id{});
    abandon_batch();
}

// Cluster: `channel` was on a node whose link was lost, or its slot moved. Its window goes
// stale until caught up on the node that serves it now; the batch in flight may wait for a
// marker from that node, and is asked again.
void redis_subscriber::history_missed(const std::string& channel) noexcept {
    _windows->missed(channel);
    _catch_ups.erase(channel);
    abandon_batch();
}

// A link is up (again): the stale windows of channels no shard wants any more go (nothing
// would catch them up; a lost link took them out of the table).
void redis_subscriber::history_link_up() noexcept {
    try {
        for (const auto& stale : _windows->stale_channels())
            if (_table.shards_for(stale) == 0) _windows->forget(stale);
    } catch (const std::bad_alloc&) {  // they go when their channel is unsubscribed
    }
}

// A channel subscribed (again): a window that knew it before the link was lost catches up
// from its tail before its messages go on.
void redis_subscriber::history_subscribed(const std::string& channel, std::int64_t now) noexcept {
    const history_window* w = _windows->find(channel);
    if (!w || w->status() != history_window::state::stale) return;
    try {
        start_catch_up(channel, now);
    } catch (const std::bad_alloc&) {
        _windows->forget(channel);  // its position is lost with it: it restarts unknown
    }
}

void redis_subscriber::history_unsubscribed(std::span<const std::string> channels) noexcept {
    for (const auto& c : channels) {
        _windows->forget(c);
        _catch_ups.erase(c);
    }
}

// The clock `channel`'s ids come from: the one clock, or on a cluster its slot's.
std::size_t redis_subscriber::clock_of(std::string_view channel) const noexcept {
    return _topology_link ? key_slot(_cfg.namespace_prefix, channel) : 0;
}

bool redis_subscriber::is_marker(std::string_view channel) const noexcept {
    if (!_topology_link) return channel == _marker;
    return channel.size() > _marker.size() + 2 && channel.front() == '{' && channel.ends_with(_marker) &&
           channel[channel.size() - _marker.size() - 1] == '}';
}

std::uint16_t redis_subscriber::marker_slot(std::string_view channel) const noexcept {
    return _topology_link ? key_slot(channel) : 0;
}

// A marker on link `l`. On a cluster only the link the slot's channels live on counts: a
// node the slot has left may still hear the marker, ahead of the messages on the new one.
void redis_subscriber::on_marker(const node_link& l, std::string_view channel, std::string_view token) noexcept {
    if (_batch_token == 0 || token != std::to_string(_batch_token)) return;
    const std::uint16_t slot = marker_slot(channel);
    if (_topology_link && _slot_links[slot] != l.id) return;
    std::erase(_batch_markers, slot);
    if (_batch_markers.empty() && _batch_result) finish_batch_safely();
}

// True when a read of `read.channel` can be placed among its live messages now: the link
// it lives on is up and the marker of its clock is subscribed there (on a cluster, one
// that isn't is listed in `_markers_wanted`). On a cluster this also says where the read
// goes: the channel's slot, on that slot's master.
bool redis_subscriber::readable(history_read& read) {
    node_link* l = _topology_link ? find_link(_table.link_of(read.channel)) : _links.front().get();
    if (!l || l->state != link_state::live) return false;
    std::uint16_t slot = 0;
    if (_topology_link) {
        slot = static_cast<std::uint16_t>(clock_of(read.channel));
        const cluster_shard* shard = _topology ? _topology->shard_for(slot) : nullptr;
        const cluster_node* master = shard ? shard->master() : nullptr;
        if (!master || _slot_links[slot] != l->id) return false;
        read.slot = slot;
        read.host = master->host;
        read.port = master->port;
    }
    if (auto it = l->markers.find(slot); it != l->markers.end()) return it->second;
    if (_topology_link) _markers_wanted.emplace_back(l->id, slot);  // else subscribed when the link goes live
    return false;
}

// Subscribes the markers readable() found missing. Not from within readable(): a failed
// send drops its link, which edits the catch-ups being walked.
void redis_subscriber::subscribe_markers(std::int64_t now) {
    for (const auto& [id, slot] : _markers_wanted) {
        node_link* l = find_link(id);
        if (!l || l->state != link_state::live || l->markers.contains(slot)) continue;
        l->markers.emplace(slot, false);
        send(*l, command::marker, {marker_channel(_cfg, slot)}, now);
    }
    _markers_wanted.clear();
}

// A batch that can't be finished (out of memory) is asked again, whole.
void redis_subscriber::finish_batch_safely() noexcept {
    const std::uint64_t token = _batch_token;
    try {
        finish_batch();
    } catch (const std::bad_alloc&) {
        log::warn("history: out of memory answering a batch of reads; asking again");
        unbatch(token);
        end_batch();
    }
}

// Every loop turn: resume requests in, answers out, batches of reads.
void redis_subscriber::history_turn(std::int64_t now) noexcept {
    try {
        drain_resumes(now);
        take_history_results(now);
        if (_batch_token != 0 && now - _batch_sent_ms > 2 * limits::redis_reply_timeout.count())
            abandon_batch();
        std::vector<std::string> expired;  // abandoning erases from the map: collect first
        for (const auto& [channel, cu] : _catch_ups)
            if (cu.deadline_ms <= now) expired.push_back(channel);
        for (const auto& channel : expired) abandon_catch_up(channel);
        send_history_batch(now);
        // Requests that waited too long end with a retry: the client comes back with the
        // same Last-Event-ID.
        while (!_resumes.empty() && _resumes.front().deadline_ms <= now && _resumes.front().batch == 0) {
            _hm->unavailable.bump();
            send_answer(_resumes.front().shard, _resumes.front().req, replay::unavailable, {}, {});
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
    if (!req.from) return false;
    stream_id known;  // the newest entry routed on the request's clocks
    for (const auto& c : req.channels) {
        const history_window* w = _windows->find(c);
        if (!w || !w->covers(*req.from) || _catch_ups.contains(c)) return false;
        known = std::max(known, routed_max(c));
    }
    if (known.empty() || *req.from > known) return false;
    std::vector<history_entry> entries;
    std::vector<stream_id> through;
    through.reserve(req.channels.size());
    for (const auto& c : req.channels) {
        through.push_back(routed_max(c));
        _windows->find(c)->collect(*req.from, through.back(), entries);
    }
    _hm->from_memory.bump();
    replay_entries(shard, req, std::move(entries), std::move(through));
    return true;
}

void redis_subscriber::take_history_results(std::int64_t now) {
    while (auto r = _history->results.try_pop()) {
        if (r->token != _batch_token) continue;  // abandoned meanwhile
        if (!r->ok) {
            abandon_batch();
            _next_batch_ms = now + limits::redis_backoff_min.count();
            continue;
        }
        // The markers of slots whose node could not be read will not come.
        for (std::size_t i = 0; i < r->failed.size() && i < _batch_reads.size(); ++i)
            if (r->failed[i]) {
                std::erase(_batch_markers, _batch_reads[i].slot);
                _next_batch_ms = now + limits::redis_backoff_min.count();
            }
        _batch_result = std::move(*r);
        if (_batch_markers.empty()) finish_batch_safely();
    }
}

// One batch in flight at a time: requests that come meanwhile share the next one, so a
// storm of resumes costs reads per channel, not per client.
void redis_subscriber::send_history_batch(std::int64_t now) {
    if (_batch_token != 0 || now < _next_batch_ms) return;
    if (!_topology_link) {
        const node_link& l = *_links.front();
        if (l.state != link_state::live || !l.markers.contains(0) || !l.markers.at(0)) return;
    }
    std::vector<history_read> reads;
    std::unordered_map<std::string, std::size_t, string_hash, std::equal_to<>> index;  // channel -> reads[i]
    auto want = [&](history_read read) {
        auto [it, fresh] = index.try_emplace(read.channel, reads.size());
        if (fresh) reads.push_back(std::move(read));
        else reads[it->second].from = std::min(reads[it->second].from, read.from);
    };
    const std::uint64_t token = ++_next_token;
    for (auto& [channel, cu] : _catch_ups) {
        if (reads.size() >= limits::history_reads_per_batch) break;
        if (cu.batch != 0) continue;
        const history_window* w = _windows->find(channel);
        history_read read{channel, w ? w->tail() : stream_id{}, true};
        if (!readable(read)) continue;
        want(std::move(read));
        cu.batch = token;
    }
    bool any_request = false;
    std::vector<history_read> mine;
    for (auto& p : _resumes) {
        if (p.batch != 0) continue;
        if (reads.size() >= limits::history_reads_per_batch) break;
        // A channel catching up is answered from its window once caught up; one not yet
        // subscribed (again) on its link can't be read in its place among the live messages.
        // On a cluster every channel is read, for its slot's clock; a malformed id reads
        // nothing but the clocks.
        bool waits = false;
        mine.clear();
        for (const auto& c : p.req.channels) {
            waits |= _catch_ups.contains(c) || !_table.subscribed(c);
            const history_window* w = _windows->find(c);
            if (_topology_link)
                mine.push_back({c, p.req.from.value_or(stream_id{UINT64_MAX, UINT64_MAX})});
            else if (p.req.from && !(w && w->covers(*p.req.from)))
                mine.push_back({c, *p.req.from});
        }
        for (auto& read : mine) waits = waits || !readable(read);
        if (waits) continue;
        for (auto& read : mine) want(std::move(read));
        p.batch = token;
        any_request = true;
    }
    subscribe_markers(now);
    if (reads.empty() && !any_request) return;
    // The markers to wait for: the one, or one per slot read.
    std::vector<std::uint16_t> markers;
    if (_topology_link)
        for (const auto& read : reads)
            if (std::ranges::find(markers, read.slot) == markers.end()) markers.push_back(read.slot);
    if (!_topology_link) markers.push_back(0);
    if (!_history->batches.try_push(history_batch{token, reads})) {
        unbatch(token);
        return;
    }
    _batch_token = token;
    _batch_reads = std::move(reads);
    _batch_markers = std::move(markers);
    _batch_sent_ms = now;
    wake_if_sleeping(_history->reader_wake.flag, _history->reader_wake.eventfd);
}

// The batch in flight is given up (it failed, timed out, or the link went): what waited on
// it is asked again in the next one.
void redis_subscriber::abandon_batch() noexcept {
    if (_batch_token == 0) return;
    unbatch(_batch_token);
    end_batch();
}

// What waited on batch `token` waits for the next one.
void redis_subscriber::unbatch(std::uint64_t token) noexcept {
    for (auto& [channel, cu] : _catch_ups)
        if (cu.batch == token) cu.batch = 0;
    for (auto& p : _resumes)
        if (p.batch == token) p.batch = 0;
}

// No batch is in flight any more.
void redis_subscriber::end_batch() noexcept {
    _batch_token = 0;
    _batch_result.reset();
    _batch_markers.clear();
}

// The reads and their markers are all in: every entry up to the clock read in the
// transaction is either in the reads or was routed before the marker.
void redis_subscriber::finish_batch() {
    history_batch_result result = std::move(*_batch_result);
    const std::uint64_t token = _batch_token;
    std::vector<history_read> reads = std::move(_batch_reads);
    end_batch();
    // Per clock read: every entry up to it has reached this thread (routed, or held by a
    // catch-up) or is in the reads. Should the clock key be missing or behind (deleted,
    // written under another prefix), the newest entry read stands in for it.
    auto failed = [&](std::size_t i) { return i < result.failed.size() && result.failed[i]; };
    std::unordered_map<std::size_t, stream_id> upto;  // clock_of() -> that bound
    std::unordered_set<std::string_view> unread;      // channels whose node failed
    for (std::size_t i = 0; i < reads.size(); ++i) {
        if (failed(i)) {
            unread.insert(reads[i].channel);
            continue;
        }
        stream_id& u = upto[clock_of(reads[i].channel)];
        u = std::max(u, result.clocks[i]);
        if (!result.reads[i].entries.empty()) u = std::max(u, result.reads[i].entries.back().id);
    }
    if (reads.empty() && !result.clocks.empty()) upto[0] = result.clocks.front();  // one Redis, no reads
    for (const auto& [clock, u] : upto) _routed_max[clock] = std::max(_routed_max[clock], u);
    std::unordered_map<std::string_view, const stream_read*> by_channel;
    for (std::size_t i = 0; i < reads.size(); ++i) {
        const std::string& channel = reads[i].channel;
        if (reads[i].catch_up) {
            auto cu = _catch_ups.find(channel);
            if (cu == _catch_ups.end() || cu->second.batch != token) continue;  // abandoned meanwhile
            if (failed(i)) cu->second.batch = 0;  // read again in the next batch
            else finish_catch_up(channel, result.reads[i]);
            continue;
        }
        if (failed(i)) continue;
        // Only a channel subscribed all along can take what the read holds as its history.
        if (_table.subscribed(channel)) _windows->seed(channel, result.reads[i], upto[clock_of(channel)]);
        by_channel[channel] = &result.reads[i];
    }
    std::erase_if(_resumes, [&](pending_resume& p) {
        if (p.batch != token) return false;
        const resume_request& req = p.req;
        // A channel whose catch-up began while the reads were made would be replayed twice
        // (by the reads and by the catch-up): answer once it has caught up. One whose node
        // could not be read is asked again.
        for (const auto& c : req.channels)
            if (_catch_ups.contains(c) || unread.contains(c)) {
                p.batch = 0;
                return false;
            }
        // Each channel's bound: its clock as read now (or, not read, what was routed on it).
        std::vector<stream_id> through;
        through.reserve(req.channels.size());
        for (const auto& c : req.channels) {
            const std::size_t clock = clock_of(c);
            auto u = upto.find(clock);
            through.push_back(u != upto.end() ? u->second : _routed_max[clock]);
        }
        const stream_id known = through.empty() ? stream_id{} : std::ranges::max(through);
        if (!req.from) {
            reset(p.shard, req, std::move(through), reset_reason::malformed);
            return true;
        }
        const stream_id from = *req.from;
        if (from > known) {
            reset(p.shard, req, std::move(through), reset_reason::unknown);
            return true;
        }
        std::vector<history_entry> entries;
        for (std::size_t k = 0; k < req.channels.size(); ++k) {
            const std::string& c = req.channels[k];
            const history_window* w = _windows->find(c);
            if (w && w->covers(from) && !_catch_ups.contains(c)) {
                w->collect(from, through[k], entries);
                continue;
            }
            auto it = by_channel.find(c);
            if (it == by_channel.end()) {
                p.batch = 0;  // asked before its channel caught up: ask again
                return false;
            }
            const stream_read& read = *it->second;
            if (!read.covers(from)) {
                reset(p.shard, req, std::move(through), reset_reason::trimmed);
                return true;
            }
            if (read.truncated) {
                // It stopped at its bounds before the present. A read from further back
                // (another stream's id) may be what stopped it: this one is read on its own.
                if (from > read.from) {
                    p.batch = 0;
                    return false;
                }
                reset(p.shard, req, std::move(through), reset_reason::too_long);
                return true;
            }
            for (const auto& e : read.entries)
                if (e.id > from && e.id <= through[k] && e.frame) entries.push_back(e);
        }
        _hm->from_redis.bump();
        replay_entries(p.shard, req, std::move(entries), std::move(through));
        return true;
    });
    // What the reads seeded may answer the requests that came while they were made.
    _recheck_resumes = true;
}

// The history after the stream's id, in id order; past the replay bounds, a reset instead.
void redis_subscriber::replay_entries(unsigned shard, const resume_request& req,
                                      std::vector<history_entry> entries, std::vector<stream_id> through) {
    if (entries.size() > limits::replay_max_entries || frame_bytes(entries) > limits::replay_max_bytes) {
        reset(shard, req, std::move(through), reset_reason::too_long);
        return;
    }
    std::sort(entries.begin(), entries.end(),
              [](const history_entry& a, const history_entry& b) { return a.id < b.id; });
    std::vector<frame_ref> frames;
    frames.reserve(entries.size());
    for (auto& e : entries) frames.push_back(std::move(e.frame));
    _hm->replayed.bump(frames.size());
    send_answer(shard, req, replay::entries, std::move(frames), std::move(through));
}

// A jugglite-reset with the head (the newest of the channels' bounds) as its id, counted by
// its reason.
void redis_subscriber::reset(unsigned shard, const resume_request& req, std::vector<stream_id> through,
                             reset_reason why) {
    std::string_view name;
    switch (why) {
        case reset_reason::trimmed: _hm->resets_trimmed.bump(), name = "trimmed"; break;
        case reset_reason::unknown: _hm->resets_unknown.bump(), name = "unknown"; break;
        case reset_reason::malformed: _hm->resets_malformed.bump(), name = "malformed"; break;
        case reset_reason::too_long: _hm->resets_too_long.bump(), name = "too_long"; break;
    }
    const stream_id head = through.empty() ? stream_id{} : std::ranges::max(through);
    send_answer(shard, req, replay::reset, {make_reset_frame(head, name, req.from)}, std::move(through));
}

// Queues the answer for the stream's shard.
void redis_subscriber::send_answer(unsigned shard, const resume_request& req, replay::outcome_t outcome,
                                   std::vector<frame_ref> frames, std::vector<stream_id> through) {
    const stream_id head = through.empty() ? stream_id{} : std::ranges::max(through);
    _answer_backlog[shard].push_back(std::make_unique<replay>(
        replay{req.conn, req.gen, outcome, std::move(frames), head, std::move(through)}));
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

// The shard's side of resume (--history). A stream that sent Last-Event-ID (or
// lastEventId) starts like any other; once Redis has confirmed its channels, its headers
// go out and its request goes to the redis thread. Until the answer, the live frames that
// reach it are held. The answer says up to which id it accounts for every entry
// (replay::through, per channel on a cluster): held frames up to there are in it, later
// ones follow it. The replay
// is then queued a little at a time as sends complete, so a long one never meets
// --max-pending, and the held frames go after it.
#include <fmt/format.h>

#include "core/log.h"
#include "shard/shard.h"

namespace jugglite {

void shard::prepare_resume(connection& c, const std::string& last_event_id) {
    if (!c.extras) c.extras = std::make_unique<stream_extras>();
    c.extras->resume = std::make_unique<resume_state>();
    c.extras->resume->from = stream_id::parse(last_event_id);
}

// Called once the stream's headers are queued: from here on it holds live frames.
void shard::ask_resume(connection& c, std::uint32_t id, std::vector<std::string> channels) noexcept {
    resume_state& r = *c.extras->resume;
    try {
        r.asked.resize(channels.size());
        for (std::size_t k = 0; k < channels.size(); ++k) r.asked[k] = static_cast<std::uint16_t>(k);
        _resume_backlog.push_back(resume_request{id, c.gen, r.from, std::move(channels)});
    } catch (const std::bad_alloc&) {
        close_conn(c, id, close_reason::client_gone);
        return;
    }
    // The redis thread answers within limits::resume_timeout (unavailable at the latest);
    // this is the backstop should an answer be lost.
    r.deadline_ms = _now_ms + limits::resume_timeout.count() + 5'000;
    flush_resumes();
}

void shard::flush_resumes() noexcept {
    bool sent = false;
    while (!_resume_backlog.empty() && _link.resumes->try_push(std::move(_resume_backlog.front()))) {
        _resume_backlog.pop_front();
        sent = true;
    }
    if (sent) wake_redis();
}

// A live frame for a stream whose replay is not all queued: it waits behind the replay.
// The held frames are bounded like a queue: past --max-pending the stream is a slow consumer.
void shard::hold(connection& c, std::uint32_t id, const frame_ref& f, std::uint16_t channel) noexcept {
    resume_state& r = *c.extras->resume;
    try {
        r.held.push_back({f, channel < r.asked.size() ? r.asked[channel] : channel});
    } catch (const std::bad_alloc&) {
        _to_close.push_back(id);
        return;
    }
    r.held_bytes += f->size();
    if (r.held_bytes > _env.cfg->max_pending_bytes) _to_close.push_back(id);
}

void shard::on_replay(replay& a) noexcept {
    if (!_conns.has(a.conn)) return;
    connection& c = _conns[a.conn];
    if (c.gen != a.gen || c.state != conn_state::streaming || !c.extras || !c.extras->resume ||
        c.extras->resume->answered)
        return;  // closed meanwhile
    if (a.outcome == replay::unavailable) {
        _metrics.resumes_failed.bump();
        end_with_retry(c, a.conn, "history unavailable", "resume_failed", jittered_retry_ms());
        return;
    }
    _metrics.streams_resumed.bump();
    resume_state& r = *c.extras->resume;
    r.answered = true;
    r.replay.assign(std::make_move_iterator(a.frames.begin()), std::make_move_iterator(a.frames.end()));
    // Held frames with an id up to their channel's `through` are in the replay (or before
    // the client's id).
    std::erase_if(r.held, [&](const resume_state::held_frame& h) {
        const stream_id through = h.channel < a.through_each.size() ? a.through_each[h.channel] : a.through;
        if (h.frame->id().empty() || h.frame->id() > through) return false;
        r.held_bytes -= h.frame->size();
        return true;
    });
    feed_replay(c, a.conn);
}

// Queues replay frames, then held ones, while less than limits::replay_feed_bytes is
// unsent; on_send calls it again as sends complete. Once both are empty the stream is
// an ordinary one.
void shard::feed_replay(connection& c, std::uint32_t id) noexcept {
    resume_state& r = *c.extras->resume;
    while (c.unsent_bytes() < limits::replay_feed_bytes && (!r.replay.empty() || !r.held.empty())) {
        frame_ref f;
        if (!r.replay.empty()) {
            f = std::move(r.replay.front());
            r.replay.pop_front();
        } else {
            f = std::move(r.held.front().frame);
            r.held.pop_front();
            r.held_bytes -= f->size();
        }
        try {
            (void)c.enqueue(std::move(f), SIZE_MAX);
        } catch (const std::bad_alloc&) {
            close_conn(c, id, close_reason::client_gone);
            return;
        }
        if (c.xhr) note_longpoll_message(c);
    }
    if (r.replay.empty() && r.held.empty()) c.extras->resume.reset();
    if (c.has_pending() && !c.send_inflight) start_send(c, id);
}

}  // namespace jugglite

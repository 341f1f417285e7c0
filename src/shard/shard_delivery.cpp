// The data path of a shard: messages from the redis thread fanned out to subscribers,
// and the one-send-in-flight pipeline per connection.
#include <fmt/format.h>

#include "core/log.h"
#include "shard/shard.h"

namespace jugglite {

namespace {

// Messages taken from the queue per loop iteration, so that completions (and with them
// freed socket buffers) are processed between large bursts.
constexpr unsigned message_budget = 1024;

}  // namespace

void shard::drain_messages() noexcept {
    for (unsigned n = 0; n < message_budget; ++n) {
        auto msg = _link.to_shard.try_pop();
        if (!msg) break;
        if (msg->answer) {
            on_replay(*msg->answer);
            close_slow_consumers();
            continue;
        }
        _metrics.messages_in.bump();
        const channel_entry* entry = _channels.find(msg->channel);
        if (!entry) {
            _metrics.messages_unrouted.bump();
            continue;
        }
        // deliver() never closes a connection (that would edit this list mid-walk); it
        // records slow consumers in _to_close instead.
        for (const subscriber& s : entry->subscribers) {
            connection& c = _conns[s.conn];
            deliver(c, s.conn, msg->frame, s.slot_in_conn);
            if (c.xhr) note_longpoll_message(c);
        }
        close_slow_consumers();
    }
    start_queued_sends();
}

void shard::close_slow_consumers() noexcept {
    for (std::uint32_t id : _to_close) close_conn(_conns[id], id, close_reason::slow_consumer);
    _to_close.clear();
}

// Sends start after the whole batch of messages is queued, so a connection that several
// waiting messages reach gets them all in one send rather than one send plus a second
// for the rest. A connection closed since it was listed is no longer streaming.
void shard::start_queued_sends() noexcept {
    for (std::uint32_t id : _to_send) {
        connection& c = _conns[id];
        if (c.state == conn_state::streaming && !c.send_inflight) start_send(c, id);
    }
    _to_send.clear();
}

void shard::deliver(connection& c, std::uint32_t id, const frame_ref& f, std::uint16_t channel) noexcept {
    // A connection refused here is closed before the next message reaches it (see
    // close_slow_consumers), so enqueue's answer is the only check of the cap.
    if (c.state != conn_state::streaming) return;
    if (c.extras && c.extras->resume) {
        hold(c, id, f, channel);
        return;
    }
    // Outside a send, frames wait only while the connection is listed in _to_send: list it
    // with its first one.
    const bool first_waiting = !c.send_inflight && !c.has_pending();
    if (!c.enqueue(f, _env.cfg->max_pending_bytes)) {
        _to_close.push_back(id);
        return;
    }
    if (first_waiting) _to_send.push_back(id);
}

// An XHR polyfill reads a response only once it has ended, so a long-poll ends
// limits::longpoll_linger after the last message written to it (comments don't count), as
// the Ruby Jugglite's did, and the polyfill polls again. check_longpolls also ends it at
// --longpoll-max after it started, or a channel busier than one message per 250 ms would
// keep it open for ever.
void shard::note_longpoll_message(connection& c) noexcept {
    if (c.state == conn_state::streaming) c.deadline_ms = _now_ms + limits::longpoll_linger.count();
}

// Every tick: ends the long-polls whose time is up, and forgets those that closed.
void shard::check_longpolls() noexcept {
    std::erase_if(_longpolls, [&](const longpoll& lp) {
        if (!_conns.has(lp.id)) return true;
        connection& c = _conns[lp.id];
        const std::uint32_t id = lp.id;
        if (c.gen != lp.gen || c.state != conn_state::streaming) return true;
        if (_now_ms < c.deadline_ms && _now_ms < lp.end_ms) return false;
        _metrics.longpolls_ended.bump();
        end_stream(c, id, {}, "longpoll_done");
        return true;
    });
}

void shard::start_send(connection& c, std::uint32_t id) noexcept {
    io_uring_sqe* sqe = sqe_or_defer(c, id, defer_send);
    if (!sqe) return;
    send_plan plan;
    try {
        plan = c.plan_send();
    } catch (const std::bad_alloc&) {
        // The iovec batch could not be allocated: hand the SQE back as a no-op and retry.
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, tag{op::nop, 0, 0}.pack());
        defer(c, id, defer_send);
        return;
    }
    if (plan.msg)
        io_uring_prep_sendmsg(sqe, fd_of(id), plan.msg, MSG_NOSIGNAL);
    else
        io_uring_prep_send(sqe, fd_of(id), plan.data, plan.len, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag{op::send, c.gen, id}.pack());
    ++c.ops_inflight;
    c.send_started_ms = _now_ms;
}

void shard::on_send(connection& c, std::uint32_t id, int res) noexcept {
    --c.ops_inflight;
    if (c.state == conn_state::closing) {
        c.send_inflight = false;
        maybe_finish_close(c, id);
        return;
    }
    if (res <= 0) {  // EPIPE, ECONNRESET...: the client is gone
        c.send_inflight = false;
        close_conn(c, id, close_reason::client_gone);
        return;
    }
    // A stream being resumed is left out of the delivery delay: its replay holds frames kept
    // in the history window since they arrived, and its live frames wait behind the replay.
    const bool resuming = c.extras && c.extras->resume;
    _metrics.frames_out.bump(c.consume(static_cast<std::size_t>(res),
                                       resuming ? nullptr : &_metrics.delivery_delay, _reap_us));
    _metrics.bytes_out.bump(static_cast<std::uint64_t>(res));
    c.last_write_ms = _now_ms;
    if (c.extras && c.extras->resume && c.extras->resume->answered && c.state == conn_state::streaming) {
        feed_replay(c, id);
        return;
    }
    if (c.has_pending()) {
        start_send(c, id);
    } else if (c.state == conn_state::closing_after_send) {
        linger(c, id);
    }
}

}  // namespace jugglite

#include "shard/shard.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "core/http_request.h"
#include "core/log.h"
#include "core/request_router.h"
#include "core/sse_frame.h"

namespace jugglite {

namespace {

std::int64_t monotonic_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Messages taken from the queue per loop iteration, so that completions (and with them
// freed socket buffers) are processed between large bursts.
constexpr unsigned message_budget = 1024;

}  // namespace

shard::shard(unsigned id, shard_environment env, shard_link& link, shard_metrics& metrics,
             int listen_fd, std::uint32_t slots)
    : _id(id), _env(env), _link(link), _metrics(metrics), _listen_fd(listen_fd), _slots(slots) {}

void shard::run(std::promise<std::expected<void, std::string>>& ready) noexcept {
    std::expected<void, std::string> ok;
    try {
        ok = setup();
    } catch (const std::exception& e) {
        ok = std::unexpected(std::string(e.what()));
    }
    bool started = ok.has_value();
    ready.set_value(std::move(ok));
    if (started) loop();
}

std::expected<void, std::string> shard::setup() {
    auto r = ring::create(limits::ring_sq_entries, limits::ring_cq_entries);
    if (!r) return std::unexpected(r.error());
    _ring.emplace(std::move(*r));
    if (auto f = _ring->register_sparse_files(_slots); !f) return std::unexpected(f.error());
    auto b = buf_ring::create(_ring->raw(), 0, limits::recv_buffer_count, limits::recv_buffer_size);
    if (!b) return std::unexpected(b.error());
    _bufs.emplace(std::move(*b));
    _conns.resize(_slots);
    _keepalive = frame_ref::make(keepalive_comment);
    _now_ms = monotonic_ms();
    _next_tick_ms = _now_ms + limits::tick.count();
    arm_wake();
    arm_accept();
    if (int rc = _ring->submit(); rc < 0)
        return std::unexpected(fmt::format("io_uring_submit: {}", std::strerror(-rc)));
    return {};
}

// The loop: take messages, fan them out, run timers, then submit everything queued in
// one io_uring_enter and wait for completions (or the next tick) only if no message is
// waiting. The sleeping flag is raised before the final emptiness check, so a message
// pushed after the check always comes with an eventfd write.
void shard::loop() noexcept {
    bool stopping = false;
    std::int64_t drain_deadline = 0;
    while (true) {
        _now_ms = monotonic_ms();
        if (!stopping && _env.stop->load(std::memory_order_acquire)) {
            stopping = true;
            drain_deadline = _now_ms + limits::shutdown_drain.count();
            shutdown();
        }
        if (stopping && (_live == 0 || _now_ms >= drain_deadline)) break;

        flush_control();
        if (!stopping) drain_messages();
        if (_now_ms >= _next_tick_ms) {
            on_tick();
            _next_tick_ms = _now_ms + limits::tick.count();
        }

        int rc;
        if (!_link.to_shard.empty() && !stopping) {
            rc = _ring->submit_and_get_events();
        } else {
            _link.shard_wake.set_sleeping();
            if ((!_link.to_shard.empty() && !stopping) ||
                (!stopping && _env.stop->load(std::memory_order_acquire))) {
                _link.shard_wake.clear();
                rc = _ring->submit_and_get_events();
            } else {
                auto wait = std::max<std::int64_t>(1, _next_tick_ms - _now_ms);
                rc = _ring->submit_and_wait(std::chrono::milliseconds(wait));
                _link.shard_wake.clear();
            }
        }
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            log::error("shard {}: io_uring_enter: {}", _id, std::strerror(-rc));
        _ring->drain([this](const io_uring_cqe& cqe) { handle(cqe); });
    }
    if (_live != 0) log::warn("shard {}: {} connections still closing at exit", _id, _live);
    // Tear the ring down on its own thread (SINGLE_ISSUER): buffers first, then the ring,
    // whose exit cancels anything still in flight.
    _bufs.reset();
    _ring.reset();
}

void shard::shutdown() noexcept {
    if (_accept_armed) {
        io_uring_sqe* sqe = _ring->sqe();
        if (sqe) {
            io_uring_prep_cancel64(sqe, tag{op::accept, 0, 0}.pack(), 0);
            io_uring_sqe_set_data64(sqe, tag{op::accept_cancel, 0, 0}.pack());
        }
    }
    for (std::uint32_t slot = 0; slot < _high_water; ++slot) {
        connection& c = _conns[slot];
        if (c.state != conn_state::free) close_conn(c, slot, close_reason::shutdown);
    }
}

void shard::handle(const io_uring_cqe& cqe) noexcept {
    tag t = tag::unpack(cqe.user_data);
    switch (t.kind) {
        case op::accept: on_accept(cqe); return;
        case op::wake: arm_wake(); return;
        case op::accept_cancel: return;
        default: break;
    }
    if (t.slot >= _slots) log::panic(fmt::format("completion for slot {} beyond table", t.slot));
    connection& c = _conns[t.slot];
    if (t.kind == op::close) {
        if (cqe.res < 0) log::warn("shard {}: close_direct: {}", _id, std::strerror(-cqe.res));
        return;
    }
    if ((c.gen & tag::gen_mask) != t.gen) {
        // A completion for an earlier connection in this slot. Can't happen while slots are
        // freed only after their last completion, but never act on one, and never leak a buffer.
        if (cqe.flags & IORING_CQE_F_BUFFER)
            _bufs->recycle(static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
        return;
    }
    switch (t.kind) {
        case op::recv: on_recv(c, t.slot, cqe); break;
        case op::send: on_send(c, t.slot, cqe.res); break;
        case op::cancel:
            --c.ops_inflight;
            maybe_finish_close(c, t.slot);
            break;
        case op::shutdown:
            --c.ops_inflight;
            if (c.state == conn_state::closing) maybe_finish_close(c, t.slot);
            else if (cqe.res < 0) close_conn(c, t.slot, close_reason::client_gone);
            break;
        default: log::panic(fmt::format("unknown completion tag {:#x}", cqe.user_data));
    }
}

// ---- accept -------------------------------------------------------------------------

void shard::arm_accept() noexcept {
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) log::panic("no SQE for accept");
    io_uring_prep_multishot_accept_direct(sqe, _listen_fd, nullptr, nullptr, 0);
    io_uring_sqe_set_data64(sqe, tag{op::accept, 0, 0}.pack());
    _accept_armed = true;
}

void shard::on_accept(const io_uring_cqe& cqe) noexcept {
    bool stopping = _env.stop->load(std::memory_order_relaxed);
    if (!(cqe.flags & IORING_CQE_F_MORE)) {
        // The multishot accept ended. -ENFILE (table full) is retried from the next tick,
        // once closing connections have given slots back; anything else right away.
        _accept_armed = false;
        if (!stopping && cqe.res != -ENFILE && cqe.res != -ECANCELED) arm_accept();
    }
    if (cqe.res < 0) {
        if (cqe.res != -ECANCELED && cqe.res != -ENFILE) _metrics.accept_errors.bump();
        if (cqe.res != -ENFILE && cqe.res != -ECANCELED)
            log::warn("shard {}: accept: {}", _id, std::strerror(-cqe.res));
        return;
    }
    auto slot = static_cast<std::uint32_t>(cqe.res);
    if (slot >= _slots) log::panic(fmt::format("accept returned slot {} beyond table", slot));
    connection& c = _conns[slot];
    if (c.state != conn_state::free) log::panic(fmt::format("accept into busy slot {}", slot));
    c.open(_now_ms);
    ++_live;
    _high_water = std::max(_high_water, slot + 1);
    arm_recv(c, slot);
    if (stopping) {
        close_conn(c, slot, close_reason::shutdown);
        return;
    }
    // Two budgets: the process-wide --max-conns, and this shard's table minus the spare
    // slots that exist so that over-limit clients can still be answered with a 503.
    if (_live > _slots - limits::spare_slots) {
        answer_and_close(c, slot, 503, "connection limit reached");
        return;
    }
    if (_env.open_conns->fetch_add(1, std::memory_order_relaxed) >= _env.cfg->max_conns) {
        _env.open_conns->fetch_sub(1, std::memory_order_relaxed);
        answer_and_close(c, slot, 503, "connection limit reached");
        return;
    }
    c.counted = true;
}

// ---- receive ------------------------------------------------------------------------

void shard::arm_recv(connection& c, std::uint32_t slot) noexcept {
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) log::panic("no SQE for recv");
    io_uring_prep_recv_multishot(sqe, static_cast<int>(slot), nullptr, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = _bufs->group();
    io_uring_sqe_set_data64(sqe, tag{op::recv, c.gen, slot}.pack());
    c.recv_armed = true;
    ++c.ops_inflight;
}

void shard::on_recv(connection& c, std::uint32_t slot, const io_uring_cqe& cqe) noexcept {
    bool more = cqe.flags & IORING_CQE_F_MORE;
    if (!more) {
        c.recv_armed = false;
        --c.ops_inflight;
    }
    if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
        auto id = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
        if (c.state == conn_state::reading && c.request.size() <= limits::max_request_bytes) {
            c.request.append(_bufs->data(id, static_cast<std::uint32_t>(cqe.res)));
        }
        // Bytes after the request head are ignored: an SSE client has nothing to say.
        _bufs->recycle(id);
    }
    if (c.state == conn_state::closing) {
        maybe_finish_close(c, slot);
        return;
    }
    if (cqe.res == 0) {
        // Orderly EOF. A client that half-closes after its request still gets the answer
        // queued for it; a stream whose client hung up is closed at once.
        if (c.state != conn_state::closing_after_send)
            close_conn(c, slot, c.state == conn_state::lingering ? close_reason::done
                                                                 : close_reason::client_gone);
        return;
    }
    if (cqe.res < 0 && cqe.res != -ENOBUFS) {  // RST or another socket error
        close_conn(c, slot, close_reason::client_gone);
        return;
    }
    // -ENOBUFS: every provided buffer is in use; the multishot recv ended and is re-armed
    // below. Buffers are recycled as soon as their bytes are copied, so this is transient.
    if (!c.recv_armed) arm_recv(c, slot);
    if (cqe.res > 0 && c.state == conn_state::reading) on_request_bytes(c, slot);
}

void shard::on_request_bytes(connection& c, std::uint32_t slot) noexcept {
    parse_result parsed = parse_request(c.request);
    if (std::holds_alternative<need_more>(parsed)) return;
    if (auto* err = std::get_if<http_error>(&parsed)) {
        answer_and_close(c, slot, err->status, err->reason);
        return;
    }
    try {
        route r = route_request(std::get<http_request>(parsed), *_env.cfg);
        c.request = {};  // the views into it are dead from here on
        if (auto* s = std::get_if<stream_route>(&r)) {
            start_stream(c, slot, std::move(s->channels), s->head_only);
        } else if (std::holds_alternative<health_route>(r)) {
            if (_env.redis_healthy->load(std::memory_order_relaxed))
                answer_and_close(c, slot, 200, "ok");
            else
                answer_and_close(c, slot, 503, "redis subscriber is not connected");
        } else if (std::holds_alternative<metrics_route>(r)) {
            answer_and_close(c, slot, 200, metrics_text());
        } else {
            const auto& e = std::get<http_error>(r);
            answer_and_close(c, slot, e.status, e.reason);
        }
    } catch (const std::bad_alloc&) {
        answer_and_close(c, slot, 503, "out of memory");
    }
}

void shard::start_stream(connection& c, std::uint32_t slot, std::vector<std::string> channels,
                         bool head_only) noexcept {
    stream_route route{std::move(channels), head_only};
    frame_ref head = frame_ref::make(stream_response(route));
    _metrics.conns_opened.bump();
    if (head_only) {
        c.state = conn_state::closing_after_send;
        (void)c.enqueue(std::move(head), SIZE_MAX);
        start_send(c, slot);
        return;
    }
    c.state = conn_state::streaming;
    _metrics.conns_open.set(_metrics.conns_open.get() + 1);
    c.channels.reserve(route.channels.size());
    for (std::size_t k = 0; k < route.channels.size(); ++k) {
        auto added = _channels.add(route.channels[k],
                                   {slot, static_cast<std::uint16_t>(k)});
        c.channels.push_back({added.entry, added.pos});
        if (added.first) send_control({control_message::subscribe, route.channels[k]});
    }
    (void)c.enqueue(std::move(head), SIZE_MAX);
    start_send(c, slot);
}

void shard::answer_and_close(connection& c, std::uint32_t slot, int status,
                             std::string_view body) noexcept {
    if (status >= 400) _metrics.conns_rejected.bump();
    if (status == 408) _metrics.request_timeouts.bump();
    c.request = {};
    c.state = conn_state::closing_after_send;
    (void)c.enqueue(frame_ref::make(simple_response(status, body)), SIZE_MAX);
    if (!c.send_inflight) start_send(c, slot);
}

std::string shard::metrics_text() const {
    auto total = [&](auto field) {
        std::uint64_t n = 0;
        for (const auto& m : _env.all_shards) n += (m.*field).get();
        return n;
    };
    const redis_metrics& r = *_env.redis_counters;
    return fmt::format(
        "connections_open {}\nconnections_opened {}\nconnections_rejected {}\n"
        "connections_closed {}\nslow_consumers {}\nrequest_timeouts {}\nframes_out {}\n"
        "bytes_out {}\nframes_dropped_closed {}\nredis_messages_in {}\n"
        "redis_messages_dropped_queue_full {}\nredis_reconnects {}\nredis_subscribed_channels {}",
        total(&shard_metrics::conns_open), total(&shard_metrics::conns_opened),
        total(&shard_metrics::conns_rejected), total(&shard_metrics::conns_closed),
        total(&shard_metrics::slow_consumers), total(&shard_metrics::request_timeouts),
        total(&shard_metrics::frames_out), total(&shard_metrics::bytes_out),
        total(&shard_metrics::frames_dropped_closed), r.messages_in.get(),
        r.messages_dropped_full.get(), r.reconnects.get(), r.subscribed_channels.get());
}

// ---- data path ----------------------------------------------------------------------

void shard::drain_messages() noexcept {
    for (unsigned n = 0; n < message_budget; ++n) {
        auto msg = _link.to_shard.try_pop();
        if (!msg) break;
        _metrics.messages_in.bump();
        const channel_entry* entry = _channels.find(msg->channel);
        if (!entry) {
            _metrics.messages_unrouted.bump();
            continue;
        }
        // deliver() never closes a connection (that would edit this list mid-walk); it
        // records slow consumers in _to_close instead.
        for (const subscriber& s : entry->subscribers) deliver(_conns[s.conn], s.conn, msg->frame);
        close_slow_consumers();
    }
    start_queued_sends();
}

void shard::close_slow_consumers() noexcept {
    for (std::uint32_t slot : _to_close) close_conn(_conns[slot], slot, close_reason::slow_consumer);
    _to_close.clear();
}

// Sends start after the whole batch of messages is queued, so a connection that several
// waiting messages reach gets them all in one send rather than one send plus a second
// for the rest. A connection closed since it was listed is no longer streaming.
void shard::start_queued_sends() noexcept {
    for (std::uint32_t slot : _to_send) {
        connection& c = _conns[slot];
        if (c.state == conn_state::streaming && !c.send_inflight) start_send(c, slot);
    }
    _to_send.clear();
}

void shard::deliver(connection& c, std::uint32_t slot, const frame_ref& f) noexcept {
    // Past the cap the connection is already listed in _to_close: take nothing more.
    if (c.state != conn_state::streaming || c.pending_bytes() > _env.cfg->max_pending_bytes)
        return;
    // Outside a send, frames wait only while the connection is listed in _to_send: list it
    // with its first one.
    const bool first_waiting = !c.send_inflight && !c.has_pending();
    if (!c.enqueue(f, _env.cfg->max_pending_bytes)) {
        _to_close.push_back(slot);
        return;
    }
    if (first_waiting) _to_send.push_back(slot);
}

void shard::start_send(connection& c, std::uint32_t slot) noexcept {
    send_plan plan = c.plan_send();
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) log::panic("no SQE for send");
    if (plan.msg)
        io_uring_prep_sendmsg(sqe, static_cast<int>(slot), plan.msg, MSG_NOSIGNAL);
    else
        io_uring_prep_send(sqe, static_cast<int>(slot), plan.data, plan.len, MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag{op::send, c.gen, slot}.pack());
    ++c.ops_inflight;
    c.send_started_ms = _now_ms;
}

void shard::on_send(connection& c, std::uint32_t slot, int res) noexcept {
    --c.ops_inflight;
    if (c.state == conn_state::closing) {
        c.send_inflight = false;
        maybe_finish_close(c, slot);
        return;
    }
    if (res <= 0) {  // EPIPE, ECONNRESET...: the client is gone
        c.send_inflight = false;
        close_conn(c, slot, close_reason::client_gone);
        return;
    }
    _metrics.frames_out.bump(c.consume(static_cast<std::size_t>(res)));
    _metrics.bytes_out.bump(static_cast<std::uint64_t>(res));
    c.last_write_ms = _now_ms;
    if (c.has_pending()) {
        start_send(c, slot);
    } else if (c.state == conn_state::closing_after_send) {
        linger(c, slot);
    }
}

// The answer is fully written. Closing now would RST the connection if request bytes are
// still unread (a 503 is written before the request even arrives), and an RST makes the
// client's kernel discard the answer. So: half-close, keep reading until the client's EOF,
// and close then, or after a short linger.
void shard::linger(connection& c, std::uint32_t slot) noexcept {
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) log::panic("no SQE for shutdown");
    io_uring_prep_shutdown(sqe, static_cast<int>(slot), SHUT_WR);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag{op::shutdown, c.gen, slot}.pack());
    ++c.ops_inflight;
    c.state = conn_state::lingering;
    c.deadline_ms = _now_ms + limits::linger.count();
    if (!c.recv_armed) arm_recv(c, slot);
}

// ---- close --------------------------------------------------------------------------

void shard::close_conn(connection& c, std::uint32_t slot, close_reason why) noexcept {
    if (c.state == conn_state::closing || c.state == conn_state::free) return;
    if (why == close_reason::slow_consumer) _metrics.slow_consumers.bump();
    if (c.state == conn_state::streaming) _metrics.conns_open.set(_metrics.conns_open.get() - 1);
    leave_channels(c);
    if (c.counted) {
        _env.open_conns->fetch_sub(1, std::memory_order_relaxed);
        c.counted = false;
    }
    c.state = conn_state::closing;
    if (c.ops_inflight > 0) {
        // Cancel the recv (and a send blocked on a full socket); each ends with its own
        // completion, and the slot is closed only after the last of them.
        io_uring_sqe* sqe = _ring->sqe();
        if (!sqe) log::panic("no SQE for cancel");
        io_uring_prep_cancel_fd(sqe, static_cast<int>(slot),
                                IORING_ASYNC_CANCEL_FD_FIXED | IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, tag{op::cancel, c.gen, slot}.pack());
        ++c.ops_inflight;
    }
    maybe_finish_close(c, slot);
}

void shard::maybe_finish_close(connection& c, std::uint32_t slot) noexcept {
    if (c.state != conn_state::closing || c.ops_inflight > 0) return;
    _metrics.frames_dropped_closed.bump(c.drop_pending());
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) log::panic("no SQE for close");
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, tag{op::close, c.gen, slot}.pack());
    _metrics.conns_closed.bump();
    c.reset();
    --_live;
}

void shard::leave_channels(connection& c) noexcept {
    for (const membership& m : c.channels) {
        std::string name;
        if (m.entry->subscribers.size() == 1) name = m.entry->name;  // entry dies below
        auto r = _channels.remove(m.entry, m.pos);
        if (r.moved) _conns[r.moved->conn].channels[r.moved->slot_in_conn].pos = m.pos;
        if (r.last) send_control({control_message::unsubscribe, std::move(name)});
    }
    c.channels = {};
}

void shard::send_control(control_message m) noexcept {
    if (!_control_backlog.empty() || !_link.from_shard.try_push(std::move(m))) {
        _control_backlog.push_back(std::move(m));
    }
    if (_env.redis->flag.should_wake()) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(_env.redis->eventfd, &one, sizeof one);
    }
}

void shard::flush_control() noexcept {
    if (_control_backlog.empty()) return;
    std::size_t sent = 0;
    while (sent < _control_backlog.size() &&
           _link.from_shard.try_push(std::move(_control_backlog[sent])))
        ++sent;
    _control_backlog.erase(_control_backlog.begin(),
                           _control_backlog.begin() + static_cast<std::ptrdiff_t>(sent));
    if (sent && _env.redis->flag.should_wake()) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(_env.redis->eventfd, &one, sizeof one);
    }
}

// ---- wake and timers ----------------------------------------------------------------

void shard::arm_wake() noexcept {
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) log::panic("no SQE for wake");
    io_uring_prep_read(sqe, _link.shard_eventfd, &_wake_buf, sizeof _wake_buf, 0);
    io_uring_sqe_set_data64(sqe, tag{op::wake, 0, 0}.pack());
}

// One slice of the table per tick: every connection is checked once per
// limits::timer_slices ticks (1 s), so keepalives and timeouts spread over time instead
// of firing together, at a cost proportional to the table, never per timer.
void shard::on_tick() noexcept {
    if (!_accept_armed && !_env.stop->load(std::memory_order_relaxed)) arm_accept();
    std::uint32_t per = (_high_water + limits::timer_slices - 1) / limits::timer_slices;
    std::uint32_t lo = per * _slice;
    std::uint32_t hi = std::min(_high_water, lo + per);
    _slice = (_slice + 1) % limits::timer_slices;
    const std::int64_t keepalive_ms = std::chrono::milliseconds(_env.cfg->keepalive).count();
    const std::int64_t stall_ms = limits::send_stall_timeout.count();
    for (std::uint32_t slot = lo; slot < hi; ++slot) {
        connection& c = _conns[slot];
        switch (c.state) {
            case conn_state::reading:
                if (_now_ms >= c.deadline_ms) answer_and_close(c, slot, 408, "request timeout");
                break;
            case conn_state::lingering:
                if (_now_ms >= c.deadline_ms) close_conn(c, slot, close_reason::done);
                break;
            case conn_state::streaming:
            case conn_state::closing_after_send:
                if (c.send_inflight && _now_ms - c.send_started_ms >= stall_ms) {
                    close_conn(c, slot, close_reason::slow_consumer);
                } else if (c.state == conn_state::streaming && !c.send_inflight &&
                           _now_ms - c.last_write_ms >= keepalive_ms) {
                    deliver(c, slot, _keepalive);
                    c.last_write_ms = _now_ms;
                }
                break;
            default: break;
        }
    }
    close_slow_consumers();
    start_queued_sends();
}

}  // namespace jugglite

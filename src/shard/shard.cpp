#include "shard/shard.h"

#include <sys/socket.h>
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

}  // namespace

shard::shard(unsigned id, shard_environment env, shard_link& link, shard_metrics& metrics,
             int listen_fd, std::uint32_t slots)
    : _id(id),
      _env(env),
      _link(link),
      _metrics(metrics),
      _listen_fd(listen_fd),
      _slots(slots),
      _rng(std::random_device{}() + id) {}

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
            begin_stop();
        }
        if (stopping && (_live == 0 || _now_ms >= drain_deadline)) break;

        _metrics.heartbeat_ms.set(static_cast<std::uint64_t>(_now_ms));
        retry_deferred();
        flush_control();
        if (!stopping) {
            drain_notices();
            drain_messages();
        }
        if (_now_ms >= _next_tick_ms) {
            on_tick();
            _next_tick_ms = _now_ms + limits::tick.count();
        }

        int rc;
        auto queued = [&] { return !stopping && (!_link.to_shard.empty() || !_link.notices.empty()); };
        if (queued()) {
            rc = _ring->submit_and_get_events();
        } else {
            _link.shard_wake.set_sleeping();
            if (queued() ||
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

// Stops taking connections and closes every one. The listener stops listening first,
// so that a client connecting now is refused (and a load balancer moves it elsewhere)
// rather than accepted and then reset. Channel memberships are not undone one by one:
// the whole table goes with the shard.
void shard::begin_stop() noexcept {
    _stopping = true;
    ::shutdown(_listen_fd, SHUT_RDWR);
    if (_accept_armed) {
        io_uring_sqe* sqe = _ring->sqe();
        if (sqe) {
            io_uring_prep_cancel64(sqe, tag{op::accept, 0, 0}.pack(), 0);
            io_uring_sqe_set_data64(sqe, tag{op::accept_cancel, 0, 0}.pack());
        }
    }
    for (std::uint32_t slot = 0; slot < _high_water; ++slot) {
        connection& c = _conns[slot];
        if (c.state != conn_state::free) close_conn(c, slot, close_reason::server_stopping);
    }
}

void shard::handle(const io_uring_cqe& cqe) noexcept {
    tag t = tag::unpack(cqe.user_data);
    switch (t.kind) {
        case op::accept: on_accept(cqe); return;
        case op::wake: arm_wake(); return;
        case op::accept_cancel:
        case op::nop: return;
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
        case op::half_close:
            --c.ops_inflight;
            if (c.state == conn_state::closing) maybe_finish_close(c, t.slot);
            else if (cqe.res < 0) close_conn(c, t.slot, close_reason::client_gone);
            break;
        default: log::panic(fmt::format("unknown completion tag {:#x}", cqe.user_data));
    }
}

// ---- deferred submissions ------------------------------------------------------------

// ring::sqe() is null only when the kernel refused a submission (-EAGAIN/-EBUSY under
// memory pressure). The operation then waits for the next loop turn rather than ending
// the process; the connection stays in its state meanwhile.
io_uring_sqe* shard::sqe_or_defer(connection& c, std::uint32_t slot, deferred_op op) noexcept {
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) defer(c, slot, op);
    return sqe;
}

void shard::defer(connection& c, std::uint32_t slot, deferred_op op) noexcept {
    _metrics.sqe_deferred.bump();
    if (c.deferred == 0) {
        try {
            _deferred.push_back(slot);
        } catch (const std::bad_alloc&) {
            log::panic("out of memory deferring a submission");
        }
    }
    c.deferred |= op;
}

void shard::retry_deferred() noexcept {
    if (_wake_deferred) {
        _wake_deferred = false;
        arm_wake();
    }
    if (_deferred.empty()) return;
    std::swap(_deferred, _deferred_now);  // retries may defer again, into _deferred
    for (std::uint32_t slot : _deferred_now) {
        connection& c = _conns[slot];
        const std::uint8_t ops = std::exchange(c.deferred, 0);
        if (ops & defer_cancel && c.state == conn_state::closing && c.ops_inflight > 0) issue_cancel(c, slot);
        if (ops & defer_close) maybe_finish_close(c, slot);
        if (ops & defer_recv && c.state != conn_state::free && c.state != conn_state::closing &&
            !c.recv_armed)
            arm_recv(c, slot);
        if (ops & defer_send &&
            (c.state == conn_state::streaming || c.state == conn_state::closing_after_send) &&
            !c.send_inflight && c.has_pending())
            start_send(c, slot);
        if (ops & defer_half_close && c.state == conn_state::closing_after_send && !c.has_pending())
            linger(c, slot);
    }
    _deferred_now.clear();
}

// ---- wake and timers ----------------------------------------------------------------

void shard::arm_wake() noexcept {
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) {
        _wake_deferred = true;  // retry_deferred() arms it; meanwhile the tick still wakes us
        return;
    }
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
            case conn_state::registering:
                // Redis did not confirm the channels in time (link down, or slow).
                if (_now_ms >= c.deadline_ms) {
                    leave_channels(c);
                    refuse(c, slot, refusal::redis);
                }
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

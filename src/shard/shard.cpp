#include "shard/shard.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/http_request.h"
#include "core/log.h"
#include "core/request_router.h"
#include "core/sse_frame.h"

namespace jugglite {

shard::shard(unsigned id, shard_environment env, shard_link& link, shard_metrics& metrics,
             int listen_fd, std::uint32_t rings, std::uint32_t slots)
    : _id(id),
      _env(env),
      _link(link),
      _metrics(metrics),
      _listen_fd(listen_fd),
      _units(rings),
      _conns(rings, slots),
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

// Every ring signals the shard's eventfd when it has work, as the redis thread does: the
// loop sleeps in one poll() however many rings it drives.
std::expected<void, std::string> shard::setup() {
    // A fan-out to every slot of a ring, plus their receives, fits one drain.
    const unsigned cq = std::clamp(std::bit_ceil(_conns.slots() * 2), limits::ring_cq_min,
                                   limits::ring_cq_entries);
    for (std::uint32_t u = 0; u < _units.size(); ++u) {
        auto r = ring::create(limits::ring_sq_entries, cq);
        if (!r) return std::unexpected(r.error());
        ring_unit& unit = _units[u];
        unit.io.emplace(std::move(*r));
        unit.pool = slot_pool(_conns.slots());
        if (auto f = unit.io->register_sparse_files(_conns.slots()); !f) return std::unexpected(f.error());
        if (auto e = unit.io->register_eventfd(_link.shard_eventfd); !e) return std::unexpected(e.error());
        auto b = buf_ring::create(unit.io->raw(), 0, limits::recv_buffer_count, limits::recv_buffer_size);
        if (!b) return std::unexpected(b.error());
        unit.bufs.emplace(std::move(*b));
    }
    _now_ms = monotonic_ms();
    _now_s = unix_seconds();
    _next_tick_ms = _now_ms + limits::tick.count();
    top_up_accepts();
    for (std::uint32_t u = 0; u < _units.size(); ++u) {
        if (int rc = _units[u].io->submit(); rc < 0)
            return std::unexpected(fmt::format("io_uring_submit: {}", std::strerror(-rc)));
    }
    return {};
}

// The loop: take notices and messages, fan them out, run timers, then submit everything
// queued on every ring and collect their completions. It sleeps only when no ring has a
// completion and no queue has an entry (see sleep()).
void shard::loop() noexcept {
    std::int64_t drain_deadline = 0;
    while (true) {
        _now_ms = monotonic_ms();
        if (!_stopping && _env.stop->load(std::memory_order_acquire)) {
            drain_deadline = _now_ms + limits::shutdown_drain.count();
            begin_stop();
        }
        if (_stopping && (_live == 0 || _now_ms >= drain_deadline)) break;
        if (!_drain && !_stopping && _env.drain->load(std::memory_order_acquire)) begin_drain();
        if (_drain && !_stopping) drain_step();

        _metrics.heartbeat_ms.set(static_cast<std::uint64_t>(_now_ms));
        retry_deferred();
        flush_control();
        if (!_resume_backlog.empty()) flush_resumes();
        if (!_stopping) {
            drain_notices();
            drain_messages();
            drain_auth_answers();
        }
        wake_events();
        if (_now_ms >= _next_tick_ms) {
            on_tick();
            _next_tick_ms = _now_ms + limits::tick.count();
        }

        unsigned completions = 0;
        for (std::uint32_t u = 0; u < _units.size(); ++u) {
            int rc = _units[u].io->submit_and_get_events();
            if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                log::error("shard {}: io_uring_enter: {}", _id, std::strerror(-rc));
            _reap_us = monotonic_us();
            completions += _units[u].io->drain([this, u](const io_uring_cqe& cqe) { handle(u, cqe); });
        }
        if (completions == 0 && !work_queued()) sleep();
    }
    if (_live != 0) log::warn("shard {}: {} connections still closing at exit", _id, _live);
    // Tear the rings down on their own thread (SINGLE_ISSUER): buffers first, then each
    // ring, whose exit cancels anything still in flight.
    for (auto& unit : _units) {
        unit.bufs.reset();
        unit.io.reset();
    }
}

bool shard::work_queued() const noexcept {
    return !_stopping && (!_link.to_shard.empty() || !_link.notices.empty() ||
                          (_link.auth_answers && !_link.auth_answers->empty()));
}

// Sleeps until a ring has work, the redis thread pushes, or the next tick. While the loop
// runs, the rings don't signal the eventfd (that would cost a write per completion
// batch); they are told to before the last look, so work that arrives after the look
// always comes with a signal, like the redis thread's pushes after set_sleeping().
void shard::sleep() noexcept {
    _link.shard_wake.set_sleeping();
    bool ready = false;
    for (auto& unit : _units) {
        unit.io->set_eventfd_enabled(true);
        (void)unit.io->submit_and_get_events();  // runs work deferred while signals were off
        ready |= unit.io->cq_ready() > 0;
    }
    // A stop or drain requested since the loop's look is taken on the next turn, not slept through.
    const bool stop_pending = !_stopping && (_env.stop->load(std::memory_order_acquire) ||
                                             (!_drain && _env.drain->load(std::memory_order_acquire)));
    if (!ready && !work_queued() && !stop_pending) {
        pollfd p{_link.shard_eventfd, POLLIN, 0};
        auto wait = std::max<std::int64_t>(1, _next_tick_ms - _now_ms);
        if (::poll(&p, 1, static_cast<int>(wait)) > 0) {
            std::uint64_t n;
            [[maybe_unused]] auto r = ::read(_link.shard_eventfd, &n, sizeof n);
        }
    }
    for (auto& unit : _units) unit.io->set_eventfd_enabled(false);
    _link.shard_wake.clear();
}

// Stops taking connections and closes every one. The listener stops listening first,
// so that a client connecting now is refused (and a load balancer moves it elsewhere)
// rather than accepted and then reset. Channel memberships are not undone one by one:
// the whole table goes with the shard.
void shard::begin_stop() noexcept {
    _stopping = true;
    ::shutdown(_listen_fd, SHUT_RDWR);
    for (std::uint32_t k = 0; k < _accept_slots.size(); ++k) {
        const accept_slot& a = _accept_slots[k];
        if (!a.busy) continue;
        if (io_uring_sqe* sqe = _units[a.ring].io->sqe()) {
            io_uring_prep_cancel64(sqe, tag{op::accept, k, a.ring}.pack(), 0);
            io_uring_sqe_set_data64(sqe, tag{op::accept_cancel, 0, a.ring}.pack());
        }
    }
    for (std::uint32_t u = 0; u < _units.size(); ++u) {
        for (std::uint32_t slot = 0; slot < _units[u].pool.high_water(); ++slot) {
            std::uint32_t id = conn_id::make(u, slot);
            if (!_conns.has(id)) continue;
            connection& c = _conns[id];
            if (c.state != conn_state::free) close_conn(c, id, close_reason::server_stopping);
        }
    }
}

void shard::handle(std::uint32_t u, const io_uring_cqe& cqe) noexcept {
    tag t = tag::unpack(cqe.user_data);
    switch (t.kind) {
        case op::accept: on_accept(u, cqe); return;
        case op::accept_cancel:
        case op::nop: return;
        default: break;
    }
    if (conn_id::ring(t.id) != u || !_conns.has(t.id))
        log::panic(fmt::format("completion for connection {:#x} beyond ring {}'s table", t.id, u));
    connection& c = _conns[t.id];
    if (t.kind == op::close) {
        if (cqe.res < 0) log::warn(_close_log, _now_ms, "shard {}: close_direct: {}", _id, std::strerror(-cqe.res));
        return;
    }
    if ((c.gen & tag::gen_mask) != t.gen) {
        // A completion for an earlier connection in this slot. Can't happen while slots are
        // freed only after their last completion, but never act on one, and never leak a buffer.
        if (cqe.flags & IORING_CQE_F_BUFFER)
            bufs_of(t.id).recycle(static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
        return;
    }
    switch (t.kind) {
        case op::recv: on_recv(c, t.id, cqe); break;
        case op::send: on_send(c, t.id, cqe.res); break;
        case op::cancel:
            --c.ops_inflight;
            maybe_finish_close(c, t.id);
            break;
        case op::half_close:
            --c.ops_inflight;
            if (c.state == conn_state::closing) maybe_finish_close(c, t.id);
            else if (cqe.res < 0) close_conn(c, t.id, close_reason::client_gone);
            break;
        default: log::panic(fmt::format("unknown completion tag {:#x}", cqe.user_data));
    }
}

// ---- deferred submissions ------------------------------------------------------------

// ring::sqe() is null only when the kernel refused a submission (-EAGAIN/-EBUSY under
// memory pressure). The operation then waits for the next loop turn rather than ending
// the process; the connection stays in its state meanwhile.
io_uring_sqe* shard::sqe_or_defer(connection& c, std::uint32_t id, deferred_op op) noexcept {
    io_uring_sqe* sqe = ring_of(id).sqe();
    if (!sqe) defer(c, id, op);
    return sqe;
}

void shard::defer(connection& c, std::uint32_t id, deferred_op op) noexcept {
    _metrics.sqe_deferred.bump();
    if (c.deferred == 0) {
        try {
            _deferred.push_back(id);
        } catch (const std::bad_alloc&) {
            log::panic("out of memory deferring a submission");
        }
    }
    c.deferred |= op;
}

void shard::retry_deferred() noexcept {
    if (_deferred.empty()) return;
    std::swap(_deferred, _deferred_now);  // retries may defer again, into _deferred
    for (std::uint32_t id : _deferred_now) {
        connection& c = _conns[id];
        const std::uint8_t ops = std::exchange(c.deferred, 0);
        if (ops & defer_cancel && c.state == conn_state::closing && c.ops_inflight > 0) issue_cancel(c, id);
        if (ops & defer_close) maybe_finish_close(c, id);
        if (ops & defer_recv && c.state != conn_state::free && c.state != conn_state::closing &&
            !c.recv_armed)
            arm_recv(c, id);
        if (ops & defer_send &&
            (c.state == conn_state::streaming || c.state == conn_state::closing_after_send) &&
            !c.send_inflight && c.has_pending())
            start_send(c, id);
        if (ops & defer_half_close && c.state == conn_state::closing_after_send && !c.has_pending())
            linger(c, id);
    }
    _deferred_now.clear();
}

// ---- timers ----------------------------------------------------------------

// One slice of the table per tick: every connection is checked once per
// limits::timer_slices ticks (1 s), so keepalives and timeouts spread over time instead
// of firing together, at a cost proportional to the table, never per timer.
void shard::on_tick() noexcept {
    _now_s = unix_seconds();
    const std::uint32_t open = _env.open_conns->load(std::memory_order_relaxed);
    if (open != _keepalive_count || !_keepalive) {
        try {
            _keepalive = frame_ref::make(keepalive_comment(open));
            _keepalive_count = open;
        } catch (const std::bad_alloc&) {  // keep the previous one
        }
    }
    top_up_accepts();
    check_longpolls();
    for (std::uint32_t u = 0; u < _units.size(); ++u) tick_slice(u);
    _slice = (_slice + 1) % limits::timer_slices;
    if (_slice == 0) {  // a round is complete: its snapshot replaces the last one
        for (std::size_t i = 0; i < _queued_round.size(); ++i) _metrics.queued.streams[i].set(_queued_round[i]);
        _queued_round.fill(0);
    }
    close_slow_consumers();
    start_queued_sends();
}

void shard::tick_slice(std::uint32_t u) noexcept {
    const std::uint32_t high = _units[u].pool.high_water();
    std::uint32_t per = (high + limits::timer_slices - 1) / limits::timer_slices;
    std::uint32_t lo = per * _slice;
    std::uint32_t hi = std::min(high, lo + per);
    const std::int64_t keepalive_ms = std::chrono::milliseconds(_env.cfg->keepalive).count();
    const std::int64_t stall_ms = limits::send_stall_timeout.count();
    for (std::uint32_t slot = lo; slot < hi; ++slot) {
        const std::uint32_t id = conn_id::make(u, slot);
        if (!_conns.has(id)) continue;
        connection& c = _conns[id];
        switch (c.state) {
            case conn_state::reading:
                if (_now_ms >= c.deadline_ms) answer_and_close(c, id, 408, "request timeout");
                break;
            case conn_state::authorizing:
                // The auth thread never answered (curl's own timeout comes first): fail closed.
                if (_now_ms >= c.deadline_ms) refuse(c, id, refusal::auth);
                break;
            case conn_state::registering:
                // Redis did not confirm the channels in time (link down, or slow).
                if (_now_ms >= c.deadline_ms) {
                    leave_channels(c);
                    refuse(c, id, refusal::redis);
                }
                break;
            case conn_state::lingering:
                if (_now_ms >= c.deadline_ms) close_conn(c, id, close_reason::done);
                break;
            case conn_state::streaming:
            case conn_state::closing_after_send:
                if (c.state == conn_state::streaming)
                    ++_queued_round[queued_bytes_gauge::bucket_of(c.unsent_bytes())];
                if (c.send_inflight && _now_ms - c.send_started_ms >= stall_ms) {
                    close_conn(c, id, close_reason::slow_consumer);
                } else if (c.state == conn_state::streaming && c.expires_at_s != 0 &&
                           _now_s >= c.expires_at_s) {
                    if (c.extras && c.extras->recheck) recheck_stream(c);
                    else expire_stream(c, id);
                } else if (c.state == conn_state::streaming && c.extras && c.extras->resume &&
                           !c.extras->resume->answered && _now_ms >= c.extras->resume->deadline_ms) {
                    _metrics.resumes_failed.bump();
                    end_with_retry(c, id, "history unavailable", "resume_failed", jittered_retry_ms());
                } else if (c.state == conn_state::streaming && !c.send_inflight && _keepalive &&
                           _now_ms - c.last_write_ms >= keepalive_ms) {
                    deliver(c, id, _keepalive);
                    c.last_write_ms = _now_ms;
                }
                break;
            default: break;
        }
    }
}

}  // namespace jugglite

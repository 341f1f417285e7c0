// The connection lifecycle on a shard: accept (and admission), the receive that watches
// for EOF, the linger after an answer, and the close state machine.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/log.h"
#include "net/listener.h"
#include "shard/shard.h"

namespace jugglite {

// ---- accept -------------------------------------------------------------------------

// The rings of a shard accept on the shard's one listener with a few single-shot accepts
// in flight, never more than a ring's free slots, so a burst can't overfill a table (a
// multishot accept takes every queued connection at once, and one that finds the table
// full is dropped by the kernel with -ENFILE). The rings fill in order: the accepts go to
// the first ring with room, so a ring's memory (its CQ, its receive buffers) is touched
// only once connections need it. When every ring is full, one keeps accepting into its
// spare slots so that over-limit clients are answered (see refuse()) rather than left
// waiting in the backlog.
void shard::arm_accept(std::uint32_t u) noexcept {
    auto free_slot = std::find_if(_accept_slots.begin(), _accept_slots.end(),
                                  [](const accept_slot& a) { return !a.busy; });
    if (free_slot == _accept_slots.end()) return;
    io_uring_sqe* sqe = _units[u].io->sqe();
    if (!sqe) return;  // the next top-up tries again
    auto slot = _units[u].pool.take();
    if (!slot) {
        io_uring_prep_nop(sqe);  // the SQE is handed back
        io_uring_sqe_set_data64(sqe, tag{op::nop, 0, 0}.pack());
        return;
    }
    const auto k = static_cast<std::uint32_t>(free_slot - _accept_slots.begin());
    free_slot->len = sizeof free_slot->addr;
    free_slot->ring = u;
    free_slot->slot = *slot;
    free_slot->busy = true;
    // The accept fills the slot we chose (the SQE field holds slot + 1; 0 would mean a
    // plain descriptor). On success its result is 0, not the slot.
    io_uring_prep_accept(sqe, _listen_fd, reinterpret_cast<sockaddr*>(&free_slot->addr),
                         &free_slot->len, 0);
    sqe->file_index = *slot + 1;
    io_uring_sqe_set_data64(sqe, tag{op::accept, k, u}.pack());
    ++_units[u].accepts;
}

void shard::top_up_accepts() noexcept {
    if (_stopping || _now_ms < _accept_retry_ms) return;
    const std::uint32_t slots = _conns.slots();
    const std::uint32_t usable = usable_slots();
    auto free_for = [&](const ring_unit& unit, std::uint32_t limit) {
        std::uint32_t taken = unit.live + unit.accepts;
        return taken < limit ? limit - taken : 0u;
    };
    std::uint32_t in_flight = 0;
    for (const auto& unit : _units) in_flight += unit.accepts;
    bool room = false;
    for (std::uint32_t u = 0; u < _units.size() && in_flight < limits::accepts_in_flight; ++u) {
        ring_unit& unit = _units[u];
        std::uint32_t free = free_for(unit, usable);
        room |= free > 0;
        for (; free > 0 && in_flight < limits::accepts_in_flight; --free, ++in_flight) {
            std::uint32_t before = unit.accepts;
            arm_accept(u);
            if (unit.accepts == before) return;  // no SQE now
        }
    }
    if (room || in_flight > 0) return;
    // Every ring is at its share: keep one accept in the spare slots of the emptiest ring.
    std::uint32_t best = 0;
    for (std::uint32_t u = 1; u < _units.size(); ++u)
        if (_units[u].live + _units[u].accepts < _units[best].live + _units[best].accepts) best = u;
    if (_units[best].accepts == 0 && free_for(_units[best], slots - limits::spare_slots / 4) > 0)
        arm_accept(best);
}

void shard::on_accept(std::uint32_t u, const io_uring_cqe& cqe) noexcept {
    --_units[u].accepts;
    accept_slot& from = _accept_slots[tag::unpack(cqe.user_data).gen % limits::accepts_in_flight];
    from.busy = false;
    if (cqe.res < 0) {
        _units[u].pool.give(from.slot);
        if (cqe.res == -ECANCELED) return;
        // -EMFILE, -ENOMEM, -ENFILE...: the system is short. Accepts resume from the next
        // tick, so that a persistent error can't spin the loop or flood the log.
        _accept_retry_ms = _now_ms + limits::tick.count();
        _metrics.accept_errors.bump();
        log::warn(_accept_log, _now_ms, "shard {}: accept: {} ({} accept errors so far)", _id,
                  std::strerror(-cqe.res), _metrics.accept_errors.get());
        return;
    }
    adopt(u, from.slot, from);
    top_up_accepts();
}

// Takes the socket in slot `slot` of ring `u` as a new connection: admission, then
// reading its request.
void shard::adopt(std::uint32_t u, std::uint32_t slot, const accept_slot& from) noexcept {
    ring_unit& unit = _units[u];
    const std::uint32_t id = conn_id::make(u, slot);
    connection* cp;
    try {
        cp = &_conns.open_slot(id);
    } catch (const std::bad_alloc&) {
        // No memory for its chunk: close the socket at once; the client retries.
        if (io_uring_sqe* sqe = unit.io->sqe()) {
            io_uring_prep_close_direct(sqe, slot);
            io_uring_sqe_set_data64(sqe, tag{op::nop, 0, 0}.pack());
            unit.pool.give(slot);
        }
        return;
    }
    connection& c = *cp;
    if (c.state != conn_state::free) log::panic(fmt::format("accept into busy slot {}", slot));
    c.open(_now_ms);
    if (_env.cfg->needs_stream_extras()) {
        try {
            c.extras = std::make_unique<stream_extras>();
            c.extras->peer = format_address(from.addr, from.len);
        } catch (const std::bad_alloc&) {  // events go without the address
        }
    }
    ++_live;
    ++unit.live;
    arm_recv(c, id);
    if (_stopping) {
        close_conn(c, id, close_reason::server_stopping);
        return;
    }
    // Two budgets: the process-wide --max-conns, and this ring's share (its table minus
    // the spare slots). A client over either is not counted; it is still read, so that
    // its answer can depend on what it asked for (an EventSource gets a retry it will
    // follow, see refuse()), and /readyz, /livez and /metrics are still answered at capacity.
    if (unit.live > usable_slots()) return;
    if (_env.open_conns->fetch_add(1, std::memory_order_relaxed) >= _env.cfg->max_conns) {
        _env.open_conns->fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    c.counted = true;
}

// ---- receive ------------------------------------------------------------------------

void shard::arm_recv(connection& c, std::uint32_t id) noexcept {
    io_uring_sqe* sqe = sqe_or_defer(c, id, defer_recv);
    if (!sqe) return;
    io_uring_prep_recv_multishot(sqe, fd_of(id), nullptr, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = bufs_of(id).group();
    io_uring_sqe_set_data64(sqe, tag{op::recv, c.gen, id}.pack());
    c.recv_armed = true;
    ++c.ops_inflight;
}

void shard::on_recv(connection& c, std::uint32_t id, const io_uring_cqe& cqe) noexcept {
    bool more = cqe.flags & IORING_CQE_F_MORE;
    if (!more) {
        c.recv_armed = false;
        --c.ops_inflight;
    }
    if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER)) {
        auto buf = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
        if (c.state == conn_state::reading && c.request.size() <= limits::max_request_bytes) {
            c.request.append(bufs_of(id).data(buf, static_cast<std::uint32_t>(cqe.res)));
        }
        // Bytes after the request head are ignored: an SSE client has nothing to say.
        bufs_of(id).recycle(buf);
    }
    if (c.state == conn_state::closing) {
        maybe_finish_close(c, id);
        return;
    }
    if (cqe.res == 0) {
        // Orderly EOF. A client that half-closes after its request still gets the answer
        // queued for it; a stream whose client hung up is closed at once.
        if (c.state != conn_state::closing_after_send)
            close_conn(c, id, c.state == conn_state::lingering ? close_reason::done
                                                                 : close_reason::client_gone);
        return;
    }
    if (cqe.res < 0 && cqe.res != -ENOBUFS) {  // RST or another socket error
        close_conn(c, id, close_reason::client_gone);
        return;
    }
    // -ENOBUFS: every provided buffer is in use; the multishot recv ended and is re-armed
    // below. Buffers are recycled as soon as their bytes are copied, so this is transient.
    if (!c.recv_armed) arm_recv(c, id);
    if (cqe.res > 0 && c.state == conn_state::reading) on_request_bytes(c, id);
}

// The answer is fully written. Closing now would RST the connection if request bytes are
// still unread (a 503 is written before the request even arrives), and an RST makes the
// client's kernel discard the answer. So: half-close, keep reading until the client's EOF,
// and close then, or after a short linger.
void shard::linger(connection& c, std::uint32_t id) noexcept {
    io_uring_sqe* sqe = sqe_or_defer(c, id, defer_half_close);
    if (!sqe) return;
    io_uring_prep_shutdown(sqe, fd_of(id), SHUT_WR);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag{op::half_close, c.gen, id}.pack());
    ++c.ops_inflight;
    c.state = conn_state::lingering;
    c.deadline_ms = _now_ms + limits::linger.count();
    if (!c.recv_armed) arm_recv(c, id);
}

// ---- close --------------------------------------------------------------------------

void shard::close_conn(connection& c, std::uint32_t id, close_reason why) noexcept {
    if (c.state == conn_state::closing || c.state == conn_state::free) return;
    if (why == close_reason::slow_consumer) _metrics.slow_consumers.bump();
    if (c.state == conn_state::streaming)
        leave_streaming(c, why == close_reason::slow_consumer     ? "slow_consumer"
                           : why == close_reason::server_stopping ? "shutdown"
                                                                  : "client_gone");
    else
        leave_channels(c);
    if (c.counted) {
        _env.open_conns->fetch_sub(1, std::memory_order_relaxed);
        c.counted = false;
    }
    c.state = conn_state::closing;
    if (c.ops_inflight > 0) issue_cancel(c, id);
    maybe_finish_close(c, id);
}

// Cancels the recv and a send blocked on a full socket; each ends with its own
// completion, and the slot is closed only after the last of them. They are cancelled by
// their user_data, which the kernel finds by hash: a cancel by descriptor scans every
// pending request of the ring, and closing N connections that way costs O(N^2) (20 s for
// 50K connections at shutdown).
void shard::issue_cancel(connection& c, std::uint32_t id) noexcept {
    for (op kind : {op::recv, op::send}) {
        if (kind == op::recv ? !c.recv_armed : !c.send_inflight) continue;
        io_uring_sqe* sqe = sqe_or_defer(c, id, defer_cancel);
        if (!sqe) return;  // retried whole; a second cancel of the same request is harmless
        io_uring_prep_cancel64(sqe, tag{kind, c.gen, id}.pack(), 0);
        io_uring_sqe_set_data64(sqe, tag{op::cancel, c.gen, id}.pack());
        ++c.ops_inflight;
    }
}

void shard::maybe_finish_close(connection& c, std::uint32_t id) noexcept {
    if (c.state != conn_state::closing || c.ops_inflight > 0) return;
    io_uring_sqe* sqe = sqe_or_defer(c, id, defer_close);
    if (!sqe) return;
    _metrics.frames_dropped_closed.bump(c.drop_pending());
    io_uring_prep_close_direct(sqe, conn_id::slot(id));
    io_uring_sqe_set_data64(sqe, tag{op::close, c.gen, id}.pack());
    _metrics.conns_closed.bump();
    c.reset();
    --_live;
    ring_unit& unit = _units[conn_id::ring(id)];
    --unit.live;
    // The close runs when this SQE is submitted, before any accept queued after it could
    // fill the slot again.
    unit.pool.give(conn_id::slot(id));
}

}  // namespace jugglite

// The connection lifecycle on a shard: accept (and admission), the receive that watches
// for EOF, the linger after an answer, and the close state machine.
#include <cstring>

#include <fmt/format.h>

#include "core/log.h"
#include "shard/shard.h"

namespace jugglite {

// ---- accept -------------------------------------------------------------------------

void shard::arm_accept() noexcept {
    io_uring_sqe* sqe = _ring->sqe();
    if (!sqe) return;  // not armed: the next tick tries again
    io_uring_prep_multishot_accept_direct(sqe, _listen_fd, nullptr, nullptr, 0);
    io_uring_sqe_set_data64(sqe, tag{op::accept, 0, 0}.pack());
    _accept_armed = true;
}

void shard::on_accept(const io_uring_cqe& cqe) noexcept {
    bool stopping = _env.stop->load(std::memory_order_relaxed);
    if (!(cqe.flags & IORING_CQE_F_MORE)) {
        // The multishot accept ended. After a success it is re-armed at once. After an error
        // (-ENFILE: the table is full; -EMFILE, -ENOMEM...: the system is short) it is
        // re-armed from the next tick, so that a persistent error can't spin the loop.
        _accept_armed = false;
        if (!stopping && cqe.res >= 0) arm_accept();
    }
    if (cqe.res < 0) {
        if (cqe.res == -ECANCELED || cqe.res == -ENFILE) return;
        _metrics.accept_errors.bump();
        if (_now_ms - _last_accept_log_ms >= 1000) {  // at most one line a second
            _last_accept_log_ms = _now_ms;
            log::warn("shard {}: accept: {} ({} accept errors so far)", _id, std::strerror(-cqe.res),
                      _metrics.accept_errors.get());
        }
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
        close_conn(c, slot, close_reason::server_stopping);
        return;
    }
    // Two budgets: the process-wide --max-conns, and this shard's table minus the spare
    // slots. A client over either is not counted; it is still read, so that its answer
    // can depend on what it asked for (an EventSource gets a retry it will follow, see
    // refuse()), and /readyz, /livez and /metrics are still answered at capacity.
    if (_live > _slots - limits::spare_slots) return;
    if (_env.open_conns->fetch_add(1, std::memory_order_relaxed) >= _env.cfg->max_conns) {
        _env.open_conns->fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    c.counted = true;
}

// ---- receive ------------------------------------------------------------------------

void shard::arm_recv(connection& c, std::uint32_t slot) noexcept {
    io_uring_sqe* sqe = sqe_or_defer(c, slot, defer_recv);
    if (!sqe) return;
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

// The answer is fully written. Closing now would RST the connection if request bytes are
// still unread (a 503 is written before the request even arrives), and an RST makes the
// client's kernel discard the answer. So: half-close, keep reading until the client's EOF,
// and close then, or after a short linger.
void shard::linger(connection& c, std::uint32_t slot) noexcept {
    io_uring_sqe* sqe = sqe_or_defer(c, slot, defer_half_close);
    if (!sqe) return;
    io_uring_prep_shutdown(sqe, static_cast<int>(slot), SHUT_WR);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag{op::half_close, c.gen, slot}.pack());
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
    if (c.ops_inflight > 0) issue_cancel(c, slot);
    maybe_finish_close(c, slot);
}

// Cancels the recv (and a send blocked on a full socket); each ends with its own
// completion, and the slot is closed only after the last of them.
void shard::issue_cancel(connection& c, std::uint32_t slot) noexcept {
    io_uring_sqe* sqe = sqe_or_defer(c, slot, defer_cancel);
    if (!sqe) return;
    io_uring_prep_cancel_fd(sqe, static_cast<int>(slot),
                            IORING_ASYNC_CANCEL_FD_FIXED | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, tag{op::cancel, c.gen, slot}.pack());
    ++c.ops_inflight;
}

void shard::maybe_finish_close(connection& c, std::uint32_t slot) noexcept {
    if (c.state != conn_state::closing || c.ops_inflight > 0) return;
    io_uring_sqe* sqe = sqe_or_defer(c, slot, defer_close);
    if (!sqe) return;
    _metrics.frames_dropped_closed.bump(c.drop_pending());
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, tag{op::close, c.gen, slot}.pack());
    _metrics.conns_closed.bump();
    c.reset();
    --_live;
}

}  // namespace jugglite

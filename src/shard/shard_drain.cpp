// A shard's drain on SIGTERM. The other nodes behind the load balancer take this node's
// browsers, so they must not all come back in the same second: streams end at the shard's
// share of --drain-rate, each with a jittered `retry:`, and all within --drain-seconds.
// Meanwhile the listener stays open: /readyz answers 503 "draining" (a closed port would
// look dead, not draining), new streams are turned away with a retry, and nothing queued
// on the listener is reset before the process exits.
#include <fmt/format.h>

#include "core/log.h"
#include "shard/shard.h"

namespace jugglite {

void shard::begin_drain() noexcept {
    const config& cfg = *_env.cfg;
    const std::uint64_t streams = _metrics.conns_open.get();
    const double rate = cfg.drain_rate / cfg.shards;
    _drain.emplace(streams, rate, cfg.drain_window, limits::tick, _now_ms);
    if (_id == 0 || streams != 0)
        log::info("shard {}: draining {} streams, at most {:.0f}/s, within {} s", _id, streams, rate,
                  std::chrono::duration_cast<std::chrono::seconds>(cfg.drain_window).count());
}

// Once per loop turn: ends the streams that started during the drain (waiting for Redis or
// the auth callback when it began), and those due, walking the table once in slot order.
// Once the window is over the walk ignores the pace and goes to the end.
void shard::drain_step() noexcept {
    if (!_drain_expired && _drain->expired(_now_ms)) {
        _drain_expired = true;
        // The rest close now, and their retry: spreads them as the rate would have.
        _drain_left = _metrics.conns_open.get();
        if (_drain_left != 0)
            log::warn("shard {}: --drain-seconds is over with {} streams open: closing them, "
                      "their retry: spread to keep --drain-rate",
                      _id, _drain_left);
    }
    for (const auto& [id, gen] : _drain_late) {
        connection& c = _conns[id];
        if (c.gen == gen && c.state == conn_state::streaming) drain_stream(c, id);
    }
    _drain_late.clear();
    if (_drain_done) return;
    const std::uint64_t due = _drain_expired ? UINT64_MAX : _drain->due(_now_ms);
    while (_drain_closed < due && _drain_ring < _units.size()) {
        if (_drain_slot >= _units[_drain_ring].pool.high_water()) {
            ++_drain_ring;
            _drain_slot = 0;
            continue;
        }
        const std::uint32_t id = conn_id::make(_drain_ring, _drain_slot++);
        if (!_conns.has(id)) continue;
        connection& c = _conns[id];
        if (c.state == conn_state::streaming) {
            drain_stream(c, id);
            ++_drain_closed;
        }
    }
    // Done at the table's end, or sooner when no stream is left (some ended by themselves).
    if (_drain_ring == _units.size() || _metrics.conns_open.get() == 0) {
        _drain_done = true;
        log::info("shard {}: drained {} streams", _id, _metrics.streams_drained.get());
        _env.drained->fetch_add(1, std::memory_order_release);
    }
}

void shard::drain_stream(connection& c, std::uint32_t id) noexcept {
    const auto r = _drain->retry(_drain_left);
    _metrics.streams_drained.bump();
    end_with_retry(c, id, "server draining", "shutdown", jittered_retry_ms(r.lo, r.hi));
}

}  // namespace jugglite

#include "net/connection.h"

#include <algorithm>

namespace jugglite {

void connection::open(std::int64_t now_ms) noexcept {
    state = conn_state::reading;
    send_inflight = false;
    recv_armed = false;
    wants_event_stream = false;
    unconfirmed = 0;
    deferred = 0;
    ops_inflight = 0;
    deadline_ms = now_ms + limits::request_timeout.count();
    last_write_ms = now_ms;
    send_started_ms = 0;
}

void connection::reset() noexcept {
    drop_pending();
    _pending = {};
    _batch.reset();
    release_request();
    channels = {};
    extras.reset();
    state = conn_state::free;
    deferred = 0;
    send_inflight = false;
    recv_armed = false;
    ops_inflight = 0;
    xhr = false;
    cors = 0;
    expires_at_s = 0;
    ++gen;
}

bool connection::enqueue(frame_ref f, std::size_t cap) {
    const std::size_t size = f->size();
    _pending.push_back(std::move(f));
    _unsent_bytes += size;
    return pending_bytes() <= cap;
}

send_plan connection::plan_send() {
    send_inflight = true;
    std::size_t n = std::min(_pending.size() - _head, limits::max_iov_per_send);
    const frame_ref& first = _pending[_head];
    if (n == 1) {
        return {first->bytes().data() + _head_offset, first->size() - _head_offset, nullptr, 1};
    }
    if (!_batch) _batch = std::make_unique<iov_batch>();
    for (std::size_t i = 0; i < n; ++i) {
        auto bytes = _pending[_head + i]->bytes();
        std::size_t skip = i == 0 ? _head_offset : 0;
        _batch->iov[i] = {const_cast<char*>(bytes.data() + skip), bytes.size() - skip};
    }
    _batch->msg = {};
    _batch->msg.msg_iov = _batch->iov;
    _batch->msg.msg_iovlen = n;
    return {nullptr, 0, &_batch->msg, n};
}

std::uint32_t connection::consume(std::size_t n, delay_histogram* delays,
                                  std::int64_t now_us) noexcept {
    send_inflight = false;
    _unsent_bytes -= n;
    std::uint32_t done = 0;
    while (n > 0 && _head < _pending.size()) {
        std::size_t left = _pending[_head]->size() - _head_offset;
        if (n < left) {
            _head_offset += static_cast<std::uint32_t>(n);
            break;
        }
        n -= left;
        if (delays && _pending[_head]->received_us() != 0)
            delays->observe(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_us - _pending[_head]->received_us())));
        _pending[_head].reset();
        ++_head;
        _head_offset = 0;
        ++done;
    }
    if (_head == _pending.size()) {
        // Drained: reuse the vector from the start; release a large one, and the iovecs.
        _pending.clear();
        _head = 0;
        if (_pending.capacity() > 64) _pending = {};
        _batch.reset();
    } else if (_head >= 64 && _head * 2 >= _pending.size()) {
        _pending.erase(_pending.begin(), _pending.begin() + static_cast<std::ptrdiff_t>(_head));
        _head = 0;
    }
    return done;
}

std::size_t connection::drop_pending() noexcept {
    std::size_t n = _pending.size() - _head;
    _pending.clear();
    _head = 0;
    _head_offset = 0;
    _unsent_bytes = 0;
    return n;
}

}  // namespace jugglite

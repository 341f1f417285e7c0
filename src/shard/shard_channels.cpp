// A shard's channel memberships and what Redis says about them: streams join channels,
// wait in `registering` until Redis has confirmed each one, lose a channel Redis
// refuses, and report a channel's first and last local subscriber to the redis thread.
#include <fmt/format.h>

#include "core/log.h"
#include "core/request_router.h"
#include "shard/shard.h"

namespace jugglite {

// Joins `c` to `channels` and counts those not yet confirmed. May throw std::bad_alloc;
// what was joined stays recorded in c.channels, so closing the connection undoes it.
void shard::join_channels(connection& c, std::uint32_t id, std::vector<std::string>& channels) {
    c.channels.reserve(channels.size());  // so that push_back below cannot throw
    for (std::size_t k = 0; k < channels.size(); ++k) {
        auto added = _channels.add(channels[k], {id, static_cast<std::uint16_t>(k)});
        c.channels.push_back({added.entry, added.pos});
        if (added.first) send_control(control_message::subscribe, channels[k]);
        if (!added.entry->ready) ++c.unconfirmed;
    }
}

// Every channel is confirmed: write the response head and the registration comment.
void shard::begin_streaming(connection& c, std::uint32_t id) noexcept {
    stream_route route{{}, false, std::nullopt};
    try {
        route.channels.reserve(c.channels.size());
        for (const membership& m : c.channels) route.channels.push_back(m.entry->name);
        frame_ref head = frame_ref::make(stream_response(route, cors_headers(c)));
        if (c.xhr) {
            const std::int64_t end = _now_ms + std::chrono::milliseconds(_env.cfg->longpoll_max).count();
            _longpolls.push_back({id, c.gen, end});
            c.deadline_ms = end;
        }
        c.state = conn_state::streaming;
        announce_register(c);
        _metrics.conns_opened.bump();
        _metrics.conns_open.set(_metrics.conns_open.get() + 1);
        c.last_write_ms = _now_ms;
        (void)c.enqueue(std::move(head), SIZE_MAX);
    } catch (const std::bad_alloc&) {
        close_conn(c, id, close_reason::client_gone);
        return;
    }
    // A resuming stream asks for the history of the channels its head names.
    if (c.extras && c.extras->resume) ask_resume(c, id, std::move(route.channels));
    // Started during the drain: it ends on the next turn (not here: on_channel_ready is
    // walking the channel's subscribers, and ending a stream edits that list).
    if (_drain && c.state == conn_state::streaming) {
        try {
            _drain_late.emplace_back(id, c.gen);
        } catch (const std::bad_alloc&) {  // begin_stop closes it at the end
        }
    }
    if (c.state == conn_state::streaming && !c.send_inflight) start_send(c, id);
}

void shard::drain_notices() noexcept {
    while (auto n = _link.notices.try_pop()) {
        switch (n->kind) {
            case channel_notice::ready: on_channel_ready(n->channel); break;
            case channel_notice::forbidden:
            case channel_notice::over_capacity: on_channel_refused(*n); break;
            case channel_notice::link_down: on_link_down(); break;
            case channel_notice::unconfirmed:
                if (channel_entry* entry = _channels.find(n->channel)) unconfirm(*entry);
                break;
        }
    }
}

void shard::on_channel_ready(std::string_view name) noexcept {
    channel_entry* entry = _channels.find(name);
    if (!entry || entry->ready) return;
    entry->ready = true;
    // begin_streaming() leaves the registry alone, so the walk is safe.
    for (const subscriber& s : entry->subscribers) {
        connection& c = _conns[s.conn];
        if (c.state == conn_state::registering && c.unconfirmed > 0 && --c.unconfirmed == 0)
            begin_streaming(c, s.conn);
    }
}

// Each step removes one subscriber from the channel, so the walk ends, and the entry is
// looked up again each time because the last removal frees it.
void shard::on_channel_refused(const channel_notice& n) noexcept {
    while (channel_entry* entry = _channels.find(n.channel)) {
        const subscriber s = entry->subscribers.back();
        connection& c = _conns[s.conn];
        if (n.kind == channel_notice::over_capacity && c.state == conn_state::registering) {
            // Turned away to come back later, rather than opened without a channel it asked for.
            leave_channels(c);
            refuse(c, s.conn, refusal::channels);
            continue;
        }
        if (c.state != conn_state::registering && c.state != conn_state::streaming) {
            leave_channels(c);  // not expected: only these two states hold channels
            continue;
        }
        const bool counted = c.state == conn_state::registering && !entry->ready;
        drop_channel(c, s.slot_in_conn);
        _metrics.channels_dropped.bump();
        if (c.state == conn_state::streaming) {
            // The stream goes on with its other channels; tell the client which one it lost.
            try {
                std::string note = fmt::format(": channel {} refused by redis\n\n", n.channel);
                if (!c.enqueue(frame_ref::make(note), _env.cfg->max_pending_bytes))
                    _to_close.push_back(s.conn);
                else if (!c.send_inflight)
                    start_send(c, s.conn);
            } catch (const std::bad_alloc&) {
                _to_close.push_back(s.conn);
            }
        } else if (counted && c.unconfirmed > 0 && --c.unconfirmed == 0) {
            begin_streaming(c, s.conn);
        }
    }
    close_slow_consumers();
}

// Redis has nothing subscribed until it confirms each channel again. Streams waiting to
// register wait for those confirmations too.
void shard::on_link_down() noexcept {
    _channels.for_each([&](channel_entry& entry) { unconfirm(entry); });
}

void shard::unconfirm(channel_entry& entry) noexcept {
    if (!entry.ready) return;
    entry.ready = false;
    for (const subscriber& s : entry.subscribers) {
        connection& c = _conns[s.conn];
        if (c.state == conn_state::registering) ++c.unconfirmed;
    }
}

// Takes `c` out of the channel of membership `m`: the registry's swap-remove re-points
// the subscriber it moved, and the shard's last subscriber leaving is reported.
void shard::unjoin(const membership& m) noexcept {
    auto r = _channels.remove(m.entry, m.pos);
    if (r.moved) _conns[r.moved->conn].channels[r.moved->slot_in_conn].pos = m.pos;
    if (r.last) send_control(control_message::unsubscribe, r.name);
}

// Removes membership `k` of `c`, keeping the order of the others (the registration
// comment lists them in the order asked), and re-points the registry at the moved ones.
void shard::drop_channel(connection& c, std::uint16_t k) noexcept {
    unjoin(c.channels[k]);
    c.channels.erase(c.channels.begin() + k);
    if (c.extras && c.extras->resume && k < c.extras->resume->asked.size()) {
        auto& asked = c.extras->resume->asked;
        asked.erase(asked.begin() + k);
    }
    for (std::size_t j = k; j < c.channels.size(); ++j)
        c.channels[j].entry->subscribers[c.channels[j].pos].slot_in_conn = static_cast<std::uint16_t>(j);
}

void shard::leave_channels(connection& c) noexcept {
    // At shutdown the whole table goes at once; nothing reads it any more.
    if (!_stopping)
        for (const membership& m : c.channels) unjoin(m);
    c.channels = {};
    c.unconfirmed = 0;
}

// The queue to the redis thread is bounded. What it can't take waits here, one entry per
// channel holding the latest report (a quick unsubscribe + subscribe is one subscribe,
// which the redis thread answers with `ready`), so the backlog is bounded by the channels
// this shard knows and drains front to back in O(1) each.
void shard::send_control(control_message::kind_t kind, const std::string& channel) noexcept {
    try {
        if (_control_order.empty() && _link.from_shard.try_push(control_message{kind, channel})) {
            wake_redis();
            return;
        }
        auto [it, fresh] = _control_backlog.try_emplace(channel, kind);
        if (fresh) _control_order.push_back(channel);
        else it->second = kind;
    } catch (const std::bad_alloc&) {
        log::panic("out of memory recording a channel report for the redis thread");
    }
}

void shard::flush_control() noexcept {
    bool sent = false;
    while (!_control_order.empty()) {
        // Moved out and, if the queue is full, back in: nothing here allocates.
        auto node = _control_backlog.extract(_control_order.front());
        control_message m{node.mapped(), std::move(node.key())};
        if (!_link.from_shard.try_push(std::move(m))) {
            node.key() = std::move(m.channel);
            _control_backlog.insert(std::move(node));
            break;
        }
        _control_order.pop_front();
        sent = true;
    }
    if (sent) wake_redis();
}

void shard::wake_redis() noexcept { wake_if_sleeping(_env.redis->flag, _env.redis->eventfd); }

}  // namespace jugglite

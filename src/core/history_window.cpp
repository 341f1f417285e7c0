#include "core/history_window.h"

#include <algorithm>

namespace jugglite {

namespace {

std::size_t cost(const history_entry& e) noexcept {
    return sizeof(history_entry) + sizeof(frame) + (e.frame ? e.frame->size() : 0);
}

}  // namespace

std::optional<stream_id> stream_read::base() const noexcept {
    if (entries.empty()) return std::nullopt;
    if (entries.front().id == from) return from;
    return first_previous.value_or(expiry_floor);
}

bool stream_read::covers(stream_id from_id) const noexcept {
    // Nothing after the id: nothing was lost unless the stream expired.
    if (entries.empty()) return from_id >= expiry_floor;
    return *base() <= from_id;
}

void history_window::collect(stream_id from, stream_id upto, std::vector<history_entry>& out) const {
    auto it = std::upper_bound(_entries.begin(), _entries.end(), from,
                               [](stream_id id, const history_entry& e) { return id < e.id; });
    for (; it != _entries.end() && it->id <= upto; ++it)
        if (it->frame) out.push_back(*it);
}

history_windows::history_windows(std::size_t max_bytes, std::size_t max_entries)
    : _max_bytes(max_bytes), _max_entries(std::max<std::size_t>(max_entries, 1)) {}

history_window& history_windows::window(std::string_view channel) {
    auto it = _windows.find(channel);
    if (it == _windows.end()) it = _windows.emplace(std::string(channel), history_window{}).first;
    return it->second;
}

const history_window* history_windows::find(std::string_view channel) const {
    auto it = _windows.find(channel);
    return it == _windows.end() ? nullptr : &it->second;
}

void history_windows::front_changed(history_window& w, std::optional<stream_id> old_front) {
    if (old_front) _fronts.erase({*old_front, &w});
    if (!w._entries.empty()) _fronts.insert({w._entries.front().id, &w});
}

void history_windows::push(history_window& w, history_entry e) {
    std::optional<stream_id> old_front;
    if (!w._entries.empty()) old_front = w._entries.front().id;
    const std::size_t c = cost(e);
    w._entries.push_back(std::move(e));
    w._bytes += c;
    _bytes += c;
    if (!old_front) front_changed(w, std::nullopt);
    trim(w);
}

void history_windows::pop_front(history_window& w) {
    stream_id old = w._entries.front().id;
    const std::size_t c = cost(w._entries.front());
    w._base = old;  // everything after it is still held
    w._entries.pop_front();
    w._bytes -= c;
    _bytes -= c;
    front_changed(w, old);
}

void history_windows::clear(history_window& w) {
    if (!w._entries.empty()) _fronts.erase({w._entries.front().id, &w});
    _bytes -= w._bytes;
    w._bytes = 0;
    w._entries.clear();
}

void history_windows::trim(history_window& w) {
    while (w._entries.size() > _max_entries) {
        pop_front(w);
        ++_evicted;
    }
}

void history_windows::enforce_budget() {
    while (_bytes > _max_bytes && !_fronts.empty()) {
        pop_front(*_fronts.begin()->second);
        ++_evicted;
    }
}

void history_windows::restart(std::string_view channel, const history_entry& e,
                              std::optional<stream_id> previous) {
    history_window& w = window(channel);
    clear(w);
    w._base = previous.value_or(stream_id{});
    w._state = history_window::state::known;
    push(w, e);
    enforce_budget();
}

history_windows::fit history_windows::on_live(std::string_view channel, const history_entry& e,
                                              std::optional<stream_id> previous) {
    history_window& w = window(channel);
    switch (w._state) {
        case history_window::state::unknown:
            // The first message since the subscription names the entry before it.
            w._base = previous.value_or(stream_id{});
            w._state = history_window::state::known;
            break;
        case history_window::state::stale:
        case history_window::state::known:
            if (e.id <= w.tail()) {
                // The stream went back (deleted, or Redis lost its data): start again here.
                clear(w);
                w._base = previous.value_or(stream_id{});
            } else if (previous && *previous > w.tail()) {
                return fit::gap;
            }
            // A previous id before the tail (entries deleted from the stream) or none (the
            // stream had expired) leaves nothing missing between them.
            w._state = history_window::state::known;
            break;
    }
    push(w, e);
    enforce_budget();
    return fit::appended;
}

std::vector<history_entry> history_windows::catch_up(std::string_view channel, const stream_read& read) {
    history_window& w = window(channel);
    const stream_id tail = w.tail();
    std::vector<history_entry> fresh;
    for (const auto& e : read.entries)
        if (e.id > tail) fresh.push_back(e);
    auto base = read.base();
    if (base && *base > tail) {
        // The stream no longer holds what followed the tail: the window restarts with the read.
        clear(w);
        w._base = *base;
    }
    w._state = history_window::state::known;
    for (const auto& e : fresh)
        if (e.id > w.tail()) push(w, e);
    enforce_budget();
    return fresh;
}

void history_windows::seed(std::string_view channel, const stream_read& read, stream_id read_end) {
    auto base = read.base();
    // A read that stopped at its bounds does not reach the present: it can't be the history.
    if (!base || read.truncated) return;
    history_window& w = window(channel);
    if (w._state == history_window::state::stale) return;
    if (w._state == history_window::state::unknown) {
        // Nothing routed since the subscription, and the read was taken when everything up
        // to its end had been: the read is the channel's history.
        w._base = *base;
        w._state = history_window::state::known;
        for (const auto& e : read.entries)
            if (e.id > *base && e.id <= read_end) push(w, e);
        enforce_budget();
        return;
    }
    // Known: the read adds what precedes the window, when it reaches the window's base.
    if (*base >= w._base || read_end < w._base) return;
    std::optional<stream_id> old_front;
    if (!w._entries.empty()) old_front = w._entries.front().id;
    for (auto it = read.entries.rbegin(); it != read.entries.rend(); ++it) {
        if (it->id <= *base || it->id > w._base) continue;
        const std::size_t c = cost(*it);
        w._entries.push_front(*it);
        w._bytes += c;
        _bytes += c;
    }
    w._base = *base;
    front_changed(w, old_front);
    trim(w);
    enforce_budget();
}

void history_windows::link_lost() {
    for (auto& [name, w] : _windows)
        if (w._state == history_window::state::known) w._state = history_window::state::stale;
}

void history_windows::missed(std::string_view channel) {
    auto it = _windows.find(channel);
    if (it != _windows.end() && it->second._state == history_window::state::known)
        it->second._state = history_window::state::stale;
}

void history_windows::forget(std::string_view channel) {
    auto it = _windows.find(channel);
    if (it == _windows.end()) return;
    clear(it->second);
    _windows.erase(it);
}

std::vector<std::string> history_windows::stale_channels() const {
    std::vector<std::string> out;
    for (const auto& [name, w] : _windows)
        if (w._state == history_window::state::stale) out.push_back(name);
    return out;
}

}  // namespace jugglite

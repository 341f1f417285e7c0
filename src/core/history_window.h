// The in-memory history windows (--history-memory): for each channel, the newest messages
// published with history, as the frames already built for them, so that a client resuming
// a blip ago is answered without a Redis round trip. Pure data structure, used by the redis
// thread alone.
//
// A window is exact or it is nothing: when it is `known`, it holds every entry of its
// channel after base(), up to the last message routed. A window learns its base from the
// envelope's previous id (the first message routed after the subscription names the entry
// before it) or from a read of the stream (seed). Memory is bounded in bytes over all
// channels and in entries per channel; what is evicted moves a window's base forward and
// is counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/channel_registry.h"
#include "core/frame.h"
#include "core/stream_id.h"

namespace jugglite {

// One message of a channel's history: its id and its frame (whose frame::id is the same).
// A null frame stands for a message too large to deliver (--max-message-bytes): it keeps
// the window's chain of ids whole, and is never sent.
struct history_entry {
    stream_id id;
    frame_ref frame;
};

// A read of a channel's stream from `from` on (XRANGE key from +, inclusive, COUNT n).
struct stream_read {
    stream_id from;
    std::vector<history_entry> entries;     // in id order
    std::optional<stream_id> first_previous;  // the previous id stored with entries.front()
    bool truncated = false;                 // stopped at its bounds: more entries follow
    // Entries older than this may have expired with their stream (--history-ttl before
    // the read), leaving nothing behind to tell.
    stream_id expiry_floor;

    // The base of what the read holds: every entry after it up to the read's end is in
    // `entries`. nullopt when the read holds nothing it can vouch for (it is empty).
    // An entry stored without a previous id was the first of its stream generation:
    // nothing before it is missing, unless an older generation expired, which only
    // entries older than expiry_floor can have been in.
    [[nodiscard]] std::optional<stream_id> base() const noexcept;
    // True when the read proves every entry after `from` up to its end is in `entries`.
    [[nodiscard]] bool covers(stream_id from) const noexcept;
};

class history_window {
public:
    enum class state : std::uint8_t {
        unknown,  // nothing routed since the channel was subscribed: no base yet
        known,    // holds every entry after base(), up to the last message routed
        stale,    // was known, but the link was lost: messages may have been missed since
                  // tail(); nothing is answered from it until it is caught up
    };

    [[nodiscard]] state status() const noexcept { return _state; }
    [[nodiscard]] stream_id base() const noexcept { return _base; }
    // The newest entry held, or the base when none is.
    [[nodiscard]] stream_id tail() const noexcept { return _entries.empty() ? _base : _entries.back().id; }
    [[nodiscard]] std::size_t size() const noexcept { return _entries.size(); }
    [[nodiscard]] const std::deque<history_entry>& entries() const noexcept { return _entries; }
    // True when every entry after `from` (up to the last one routed) is held.
    [[nodiscard]] bool covers(stream_id from) const noexcept {
        return _state == state::known && _base <= from;
    }
    // Appends the entries of this window in (from, upto] to `out`.
    void collect(stream_id from, stream_id upto, std::vector<history_entry>& out) const;

private:
    friend class history_windows;
    std::deque<history_entry> _entries;
    stream_id _base;
    state _state = state::unknown;
    std::size_t _bytes = 0;
};

class history_windows {
public:
    // `max_bytes` over all windows (frames counted whole, with their bookkeeping);
    // `max_entries` per window (the streams' own length: more could not be resumed from
    // Redis either).
    history_windows(std::size_t max_bytes, std::size_t max_entries);

    enum class fit : std::uint8_t {
        appended,  // the window now ends with this entry
        gap,       // entries between the window's tail and the message's previous id were
                   // missed: not appended; the caller catches up from tail() first
    };
    // A message routed live on `channel`, with the previous id its envelope carries.
    fit on_live(std::string_view channel, const history_entry& e, std::optional<stream_id> previous);
    // The same message routed in spite of a gap (a catch-up was given up): the window
    // starts again at it, known from its previous id on.
    void restart(std::string_view channel, const history_entry& e, std::optional<stream_id> previous);

    // A read from the window's tail (inclusive) that caught the channel up after a gap or
    // a lost link, taken at the moment every entry up to it was routed. Returns the
    // entries after the tail, to be routed in order; the window is known again. When the
    // stream no longer holds the tail's successors (trimmed), the window restarts at what
    // the read holds.
    std::vector<history_entry> catch_up(std::string_view channel, const stream_read& read);

    // A read made for resuming clients, taken when every entry up to its end had been
    // routed. It extends the window backwards when the two meet: an unknown window (nothing
    // routed since the subscription) becomes the read; a known one whose base the read
    // reaches gains the older entries.
    void seed(std::string_view channel, const stream_read& read, stream_id read_end);

    // The link to Redis was lost: known windows go stale until caught up.
    void link_lost();
    // The same for one channel (on a cluster: its node's link was lost, or its slot moved).
    void missed(std::string_view channel);
    // The channel was unsubscribed: its window goes.
    void forget(std::string_view channel);

    [[nodiscard]] const history_window* find(std::string_view channel) const;
    [[nodiscard]] std::size_t bytes() const noexcept { return _bytes; }
    [[nodiscard]] std::uint64_t evicted() const noexcept { return _evicted; }
    [[nodiscard]] std::size_t channels() const noexcept { return _windows.size(); }
    // The channels whose windows are stale, for catching up after a reconnect.
    [[nodiscard]] std::vector<std::string> stale_channels() const;

private:
    history_window& window(std::string_view channel);
    void push(history_window& w, history_entry e);
    void clear(history_window& w);
    void pop_front(history_window& w);
    void trim(history_window& w);
    void enforce_budget();
    void front_changed(history_window& w, std::optional<stream_id> old_front);

    std::unordered_map<std::string, history_window, string_hash, std::equal_to<>> _windows;
    // Every non-empty window by its oldest entry: the globally oldest goes first.
    std::set<std::pair<stream_id, history_window*>> _fronts;
    std::size_t _max_bytes;
    std::size_t _max_entries;
    std::size_t _bytes = 0;
    std::uint64_t _evicted = 0;
};

}  // namespace jugglite

// The redis thread's record of every channel some shard wants: which shards want it,
// which link to Redis it lives on, what that link was last told, how many of those
// commands are unanswered, and when an unwanted channel is due to be unsubscribed. Pure
// logic: the redis thread sends the commands this table asks for and feeds each link's
// answers back in order.
//
// With one Redis there is one link, 0. On a cluster each node jugglite subscribes on has a
// link id of its own (never reused), and a channel lives on the link of the node that
// serves its slot; when the topology changes the channel moves (see place()). Answers
// from a link a channel no longer lives on are ignored.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/channel_registry.h"

namespace jugglite {

// Bit i set: shard i has at least one local subscriber of the channel.
using shard_mask = std::uint64_t;

class subscription_table {
public:
    static constexpr unsigned max_shards = 64;
    using link_id = std::uint32_t;
    // The link of a channel whose slot no node serves (a cluster mid-failover).
    static constexpr link_id no_link = UINT32_MAX;

    // `grace_ms`: how long an unwanted channel stays subscribed, so that a page reload
    // does not cost an UNSUBSCRIBE and a SUBSCRIBE. `max_channels`: the most channels
    // known at once (see size()); a new one past it is refused.
    subscription_table(std::int64_t grace_ms, std::size_t max_channels);

    enum class want_result : std::uint8_t {
        pending,    // wait: a SUBSCRIBE is in flight, or the link is down
        subscribe,  // the caller sends SUBSCRIBE for it now
        ready,      // subscribed and confirmed on the live link: tell the shard at once
        over_capacity,  // --max-channels reached: tell the shard it is refused
    };
    // Shard `shard` gained its first local subscriber of `name`, which lives on `link`
    // (`link_up`: that link is live). The shard's bit then mirrors its report, except for
    // over_capacity, where no entry is made (the shard's later unwant finds none).
    [[nodiscard]] want_result want(std::string_view name, unsigned shard, bool link_up, link_id link = 0);

    // Shard `shard` lost its last local subscriber of `name`. When no shard wants it any
    // more, it is unsubscribed after the grace period (see expire()).
    void unwant(std::string_view name, unsigned shard, std::int64_t now_ms);

    // Channels whose grace period has ended with nobody wanting them: the caller sends
    // UNSUBSCRIBE for each, on its link (link_of()).
    [[nodiscard]] std::vector<std::string> expire(std::int64_t now_ms);

    // `link` confirmed a SUBSCRIBE of `name`. Returns the shards to tell it is ready
    // (0 while a later command for it is still unanswered).
    [[nodiscard]] shard_mask on_subscribed(std::string_view name, link_id link = 0);
    // `link` confirmed an UNSUBSCRIBE of `name`.
    void on_unsubscribed(std::string_view name, link_id link = 0);
    // `link` refused a single-channel SUBSCRIBE of `name` (an ACL forbids it). Returns the
    // shards to tell (0 while a later command for it is still unanswered).
    [[nodiscard]] shard_mask on_refused(std::string_view name, link_id link = 0);
    // `link` refused a multi-channel SUBSCRIBE that held `name` (one forbidden channel
    // fails them all, and the error names none). True: the caller re-sends `name` alone.
    // False: a later command for it decides its state, nothing to re-send.
    [[nodiscard]] bool on_batch_refused(std::string_view name, link_id link = 0);
    // `link` no longer holds `name`, though nobody asked: its node unsubscribed it (the
    // slot migrated), or answered MOVED. It waits, unsubscribed, until place() moves it or
    // on_link_up() subscribes it again. Returns the shards that had been told it is ready.
    [[nodiscard]] shard_mask on_dropped(std::string_view name, link_id link);

    // `link` is gone: nothing is subscribed on it any more and no reply will come from it.
    // Returns the channels whose subscription had been confirmed there, with the shards
    // that were told so. Channels no shard wanted any more (in their grace period) are
    // forgotten; with `forgotten`, their names are added to it.
    std::vector<std::pair<std::string, shard_mask>> on_link_lost(link_id link = 0,
                                                                 std::vector<std::string>* forgotten = nullptr);
    // `link` is live (a new connection, or a place() that moved channels to it): every
    // wanted channel on it that is not subscribed or being subscribed there is to be
    // subscribed. Returns them; the caller sends them in batches.
    [[nodiscard]] std::vector<std::string> on_link_up(link_id link = 0);

    // A new topology: `place(name)` gives the link each channel lives on now. A channel
    // that moves is unsubscribed as far as its new link goes (on_link_up() subscribes it
    // there), and one nobody wants any more is forgotten. Returns the channels that moved:
    // the shards that want them (0: forgotten), the link they left, and whether a SUBSCRIBE
    // was the last word on it there (the caller may unsubscribe it there).
    struct moved_channel {
        std::string name;
        shard_mask shards;
        link_id from;
        bool subscribed_there;
    };
    template <class Place>
    std::vector<moved_channel> place(Place&& place);

    // True when Redis has confirmed `name`'s SUBSCRIBE on the current link and no later
    // command for it is unanswered.
    [[nodiscard]] bool subscribed(std::string_view name) const;
    // Shards that want `name` (0 if none): where its messages go. With `from`, only when it
    // lives on that link (a node it moved away from may still deliver it for a while).
    [[nodiscard]] shard_mask shards_for(std::string_view name) const;
    [[nodiscard]] shard_mask shards_for(std::string_view name, link_id from) const;
    // The link `name` lives on (no_link when it isn't known).
    [[nodiscard]] link_id link_of(std::string_view name) const;
    // How many channels live on `link`, in any state: the links jugglite needs.
    [[nodiscard]] std::size_t load(link_id link) const;
    // Channels known to the table: wanted, within their grace period, or with a command
    // unanswered. This is what max_channels bounds.
    [[nodiscard]] std::size_t size() const noexcept { return _channels.size(); }

private:
    enum class told : std::uint8_t { nothing, subscribe, unsubscribe };
    struct channel {
        shard_mask shards = 0;
        told last = told::nothing;      // the last command sent for it on this link
        std::uint32_t unanswered = 0;   // commands for it not yet answered
        std::int64_t unsubscribe_at = 0;  // set while unwanted and still subscribed
        link_id link = 0;
    };
    using map = std::unordered_map<std::string, channel, string_hash, std::equal_to<>>;

    void forget_if_unused(map::iterator it);
    map::iterator erase(map::iterator it);
    // Moves `c` to `link`, where nothing was told about it yet.
    void relink(channel& c, link_id link);

    std::int64_t _grace_ms;
    std::size_t _max_channels;
    map _channels;
    // Unsubscribe deadlines in the order they were set; the grace period is constant, so
    // this is also deadline order. Stale entries (wanted again) are skipped on expiry.
    std::deque<std::pair<std::int64_t, std::string>> _grace;
    std::unordered_map<link_id, std::size_t> _load;  // channels per link
};

template <class Place>
std::vector<subscription_table::moved_channel> subscription_table::place(Place&& place) {
    std::vector<moved_channel> moved;
    for (auto it = _channels.begin(); it != _channels.end();) {
        channel& c = it->second;
        const link_id to = place(std::string_view(it->first));
        if (to == c.link) {
            ++it;
            continue;
        }
        moved.push_back({it->first, c.shards, c.link, c.last == told::subscribe});
        relink(c, to);
        it = c.shards == 0 ? erase(it) : std::next(it);
    }
    return moved;
}

}  // namespace jugglite

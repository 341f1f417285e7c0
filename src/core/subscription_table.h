// The redis thread's record of every channel some shard wants: which shards want it,
// what Redis was last told, how many of those commands are unanswered, and when an
// unwanted channel is due to be unsubscribed. Pure logic: the redis thread sends the
// commands this table asks for and feeds Redis' answers back in order.
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
    // Shard `shard` gained its first local subscriber of `name`. The shard's bit then
    // mirrors its report, except for over_capacity, where no entry is made (the shard's
    // later unwant finds none).
    [[nodiscard]] want_result want(std::string_view name, unsigned shard, bool link_up);

    // Shard `shard` lost its last local subscriber of `name`. When no shard wants it any
    // more, it is unsubscribed after the grace period (see expire()).
    void unwant(std::string_view name, unsigned shard, std::int64_t now_ms);

    // Channels whose grace period has ended with nobody wanting them: the caller sends
    // UNSUBSCRIBE for each.
    [[nodiscard]] std::vector<std::string> expire(std::int64_t now_ms);

    // Redis confirmed a SUBSCRIBE of `name`. Returns the shards to tell it is ready
    // (0 while a later command for it is still unanswered).
    [[nodiscard]] shard_mask on_subscribed(std::string_view name);
    // Redis confirmed an UNSUBSCRIBE of `name`.
    void on_unsubscribed(std::string_view name);
    // Redis refused a single-channel SUBSCRIBE of `name` (an ACL forbids it). Returns the
    // shards to tell (0 while a later command for it is still unanswered).
    [[nodiscard]] shard_mask on_refused(std::string_view name);
    // Redis refused a multi-channel SUBSCRIBE that held `name` (one forbidden channel
    // fails them all, and the error names none). True: the caller re-sends `name` alone.
    // False: a later command for it decides its state, nothing to re-send.
    [[nodiscard]] bool on_batch_refused(std::string_view name);

    // The link is gone: nothing is subscribed any more and no reply will come.
    void on_link_lost();
    // A new link is authenticated: every wanted channel is to be subscribed again.
    // Returns them; the caller sends them in batches.
    [[nodiscard]] std::vector<std::string> on_link_up();

    // True when Redis has confirmed `name`'s SUBSCRIBE on the current link and no later
    // command for it is unanswered.
    [[nodiscard]] bool subscribed(std::string_view name) const;
    // Shards that want `name` (0 if none): where its messages go.
    [[nodiscard]] shard_mask shards_for(std::string_view name) const;
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
    };
    using map = std::unordered_map<std::string, channel, string_hash, std::equal_to<>>;

    void forget_if_unused(map::iterator it);

    std::int64_t _grace_ms;
    std::size_t _max_channels;
    map _channels;
    // Unsubscribe deadlines in the order they were set; the grace period is constant, so
    // this is also deadline order. Stale entries (wanted again) are skipped on expiry.
    std::deque<std::pair<std::int64_t, std::string>> _grace;
};

}  // namespace jugglite

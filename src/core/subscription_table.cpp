#include "core/subscription_table.h"

namespace jugglite {

subscription_table::subscription_table(std::int64_t grace_ms, std::size_t max_channels)
    : _grace_ms(grace_ms), _max_channels(max_channels) {}

subscription_table::want_result subscription_table::want(std::string_view name, unsigned shard,
                                                         bool link_up) {
    auto it = _channels.find(name);
    if (it == _channels.end()) {
        if (_channels.size() >= _max_channels) return want_result::over_capacity;
        it = _channels.emplace(std::string(name), channel{}).first;
    }
    channel& c = it->second;
    c.shards |= shard_mask{1} << shard;
    c.unsubscribe_at = 0;  // wanted again within the grace period: keep the subscription
    if (!link_up) return want_result::pending;  // on_link_up() subscribes it
    if (c.last == told::subscribe) return c.unanswered == 0 ? want_result::ready : want_result::pending;
    // Never subscribed, refused before, or an UNSUBSCRIBE is on its way: Redis answers in
    // order, so a SUBSCRIBE sent now ends subscribed.
    c.last = told::subscribe;
    ++c.unanswered;
    return want_result::subscribe;
}

void subscription_table::unwant(std::string_view name, unsigned shard, std::int64_t now_ms) {
    auto it = _channels.find(name);
    if (it == _channels.end()) return;
    channel& c = it->second;
    c.shards &= ~(shard_mask{1} << shard);
    if (c.shards != 0) return;
    if (c.last == told::subscribe) {
        c.unsubscribe_at = now_ms + _grace_ms;
        _grace.emplace_back(c.unsubscribe_at, it->first);
        return;
    }
    forget_if_unused(it);
}

std::vector<std::string> subscription_table::expire(std::int64_t now_ms) {
    std::vector<std::string> out;
    while (!_grace.empty() && _grace.front().first <= now_ms) {
        auto [at, name] = std::move(_grace.front());
        _grace.pop_front();
        auto it = _channels.find(name);
        // Skip deadlines that were cancelled (wanted again) or replaced by a later one.
        if (it == _channels.end() || it->second.shards != 0 || it->second.unsubscribe_at != at ||
            it->second.last != told::subscribe)
            continue;
        it->second.last = told::unsubscribe;
        it->second.unsubscribe_at = 0;
        ++it->second.unanswered;
        out.push_back(std::move(name));
    }
    return out;
}

shard_mask subscription_table::on_subscribed(std::string_view name) {
    auto it = _channels.find(name);
    if (it == _channels.end()) return 0;
    channel& c = it->second;
    if (c.unanswered > 0) --c.unanswered;
    return c.unanswered == 0 && c.last == told::subscribe ? c.shards : 0;
}

void subscription_table::on_unsubscribed(std::string_view name) {
    auto it = _channels.find(name);
    if (it == _channels.end()) return;
    if (it->second.unanswered > 0) --it->second.unanswered;
    forget_if_unused(it);
}

shard_mask subscription_table::on_refused(std::string_view name) {
    auto it = _channels.find(name);
    if (it == _channels.end()) return 0;
    channel& c = it->second;
    if (c.unanswered > 0) --c.unanswered;
    if (c.unanswered != 0 || c.last != told::subscribe) return 0;
    c.last = told::nothing;
    shard_mask tell = c.shards;
    forget_if_unused(it);
    return tell;
}

bool subscription_table::on_batch_refused(std::string_view name) {
    auto it = _channels.find(name);
    if (it == _channels.end()) return false;
    channel& c = it->second;
    // Only when that batch was the last word on the channel does a retry decide its state;
    // the retry takes over the batch's unanswered count.
    if (c.unanswered == 1 && c.last == told::subscribe) return true;
    if (c.unanswered > 0) --c.unanswered;
    forget_if_unused(it);
    return false;
}

void subscription_table::on_link_lost() {
    _grace.clear();
    for (auto it = _channels.begin(); it != _channels.end();) {
        channel& c = it->second;
        c.last = told::nothing;
        c.unanswered = 0;
        c.unsubscribe_at = 0;
        it = c.shards == 0 ? _channels.erase(it) : std::next(it);
    }
}

std::vector<std::string> subscription_table::on_link_up() {
    std::vector<std::string> out;
    out.reserve(_channels.size());
    for (auto& [name, c] : _channels) {
        if (c.shards == 0) continue;  // only after on_link_lost, which removed these
        c.last = told::subscribe;
        c.unanswered = 1;
        out.push_back(name);
    }
    return out;
}

bool subscription_table::subscribed(std::string_view name) const {
    auto it = _channels.find(name);
    return it != _channels.end() && it->second.last == told::subscribe && it->second.unanswered == 0;
}

shard_mask subscription_table::shards_for(std::string_view name) const {
    auto it = _channels.find(name);
    return it == _channels.end() ? 0 : it->second.shards;
}

void subscription_table::forget_if_unused(map::iterator it) {
    const channel& c = it->second;
    // Keep a channel with a command in flight: its answer must find the right state.
    if (c.shards == 0 && c.last != told::subscribe && c.unanswered == 0) _channels.erase(it);
}

}  // namespace jugglite

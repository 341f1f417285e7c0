#include "core/subscription_table.h"

namespace jugglite {

subscription_table::subscription_table(std::int64_t grace_ms, std::size_t max_channels)
    : _grace_ms(grace_ms), _max_channels(max_channels) {}

subscription_table::want_result subscription_table::want(std::string_view name, unsigned shard,
                                                         bool link_up, link_id link) {
    auto it = _channels.find(name);
    if (it == _channels.end()) {
        if (_channels.size() >= _max_channels) return want_result::over_capacity;
        it = _channels.emplace(std::string(name), channel{}).first;
        it->second.link = link;
        ++_load[link];
    }
    channel& c = it->second;
    if (c.link != link) relink(c, link);
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

shard_mask subscription_table::on_subscribed(std::string_view name, link_id link) {
    auto it = _channels.find(name);
    if (it == _channels.end() || it->second.link != link) return 0;
    channel& c = it->second;
    if (c.unanswered > 0) --c.unanswered;
    return c.unanswered == 0 && c.last == told::subscribe ? c.shards : 0;
}

void subscription_table::on_unsubscribed(std::string_view name, link_id link) {
    auto it = _channels.find(name);
    if (it == _channels.end() || it->second.link != link) return;
    if (it->second.unanswered > 0) --it->second.unanswered;
    forget_if_unused(it);
}

shard_mask subscription_table::on_refused(std::string_view name, link_id link) {
    auto it = _channels.find(name);
    if (it == _channels.end() || it->second.link != link) return 0;
    channel& c = it->second;
    if (c.unanswered > 0) --c.unanswered;
    if (c.unanswered != 0 || c.last != told::subscribe) return 0;
    c.last = told::nothing;
    shard_mask tell = c.shards;
    forget_if_unused(it);
    return tell;
}

bool subscription_table::on_batch_refused(std::string_view name, link_id link) {
    auto it = _channels.find(name);
    if (it == _channels.end() || it->second.link != link) return false;
    channel& c = it->second;
    // Only when that batch was the last word on the channel does a retry decide its state;
    // the retry takes over the batch's unanswered count.
    if (c.unanswered == 1 && c.last == told::subscribe) return true;
    if (c.unanswered > 0) --c.unanswered;
    forget_if_unused(it);
    return false;
}

shard_mask subscription_table::on_dropped(std::string_view name, link_id link) {
    auto it = _channels.find(name);
    if (it == _channels.end() || it->second.link != link) return 0;
    channel& c = it->second;
    const shard_mask told_ready = c.last == told::subscribe && c.unanswered == 0 ? c.shards : 0;
    // Answers still due for it on this link find it unsubscribed and change nothing.
    c.last = told::nothing;
    c.unanswered = 0;
    c.unsubscribe_at = 0;
    if (c.shards == 0) erase(it);
    return told_ready;
}

std::vector<std::pair<std::string, shard_mask>> subscription_table::on_link_lost(link_id link,
                                                                              std::vector<std::string>* forgotten) {
    // Grace deadlines of the channels reset here are skipped by expire(): their
    // unsubscribe_at no longer matches.
    std::vector<std::pair<std::string, shard_mask>> confirmed;
    for (auto it = _channels.begin(); it != _channels.end();) {
        channel& c = it->second;
        if (c.link != link) {
            ++it;
            continue;
        }
        if (c.last == told::subscribe && c.unanswered == 0 && c.shards != 0)
            confirmed.emplace_back(it->first, c.shards);
        c.last = told::nothing;
        c.unanswered = 0;
        c.unsubscribe_at = 0;
        if (c.shards != 0) {
            ++it;
            continue;
        }
        if (forgotten) forgotten->push_back(it->first);
        it = erase(it);
    }
    return confirmed;
}

std::vector<std::string> subscription_table::on_link_up(link_id link) {
    std::vector<std::string> out;
    for (auto& [name, c] : _channels) {
        // Unwanted channels were removed when their link was lost or they moved.
        if (c.link != link || c.shards == 0 || c.last == told::subscribe) continue;
        c.last = told::subscribe;
        ++c.unanswered;
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

shard_mask subscription_table::shards_for(std::string_view name, link_id from) const {
    auto it = _channels.find(name);
    return it == _channels.end() || it->second.link != from ? 0 : it->second.shards;
}

subscription_table::link_id subscription_table::link_of(std::string_view name) const {
    auto it = _channels.find(name);
    return it == _channels.end() ? no_link : it->second.link;
}

std::size_t subscription_table::load(link_id link) const {
    auto it = _load.find(link);
    return it == _load.end() ? 0 : it->second;
}

void subscription_table::forget_if_unused(map::iterator it) {
    const channel& c = it->second;
    // Keep a channel with a command in flight: its answer must find the right state.
    if (c.shards == 0 && c.last != told::subscribe && c.unanswered == 0) erase(it);
}

subscription_table::map::iterator subscription_table::erase(map::iterator it) {
    if (auto l = _load.find(it->second.link); l != _load.end() && --l->second == 0) _load.erase(l);
    return _channels.erase(it);
}

void subscription_table::relink(channel& c, link_id link) {
    if (auto l = _load.find(c.link); l != _load.end() && --l->second == 0) _load.erase(l);
    ++_load[link];
    c.link = link;
    c.last = told::nothing;
    c.unanswered = 0;
    c.unsubscribe_at = 0;
}

}  // namespace jugglite

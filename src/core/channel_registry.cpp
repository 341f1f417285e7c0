#include "core/channel_registry.h"

namespace jugglite {

channel_registry::added channel_registry::add(std::string_view name, subscriber s) {
    auto it = _channels.find(name);
    bool first = it == _channels.end();
    if (first) {
        it = _channels.emplace(std::string(name), channel_entry{std::string(name), {}}).first;
    }
    auto& subs = it->second.subscribers;
    subs.push_back(s);
    return {&it->second, static_cast<std::uint32_t>(subs.size() - 1), first};
}

channel_registry::removed channel_registry::remove(channel_entry* entry, std::uint32_t pos) {
    auto& subs = entry->subscribers;
    removed r{std::nullopt, false};
    if (pos + 1 != subs.size()) {
        subs[pos] = subs.back();
        r.moved = subs[pos];
    }
    subs.pop_back();
    if (subs.empty()) {
        r.last = true;
        _channels.erase(_channels.find(entry->name));  // frees entry
    } else if (subs.capacity() > 64 && subs.size() < subs.capacity() / 4) {
        subs.shrink_to_fit();  // give back memory after a mass disconnect
    }
    return r;
}

const channel_entry* channel_registry::find(std::string_view name) const {
    auto it = _channels.find(name);
    return it == _channels.end() ? nullptr : &it->second;
}

bool shard_interest::add(std::string_view name, unsigned shard) {
    auto it = _shards.find(name);
    if (it == _shards.end()) it = _shards.emplace(std::string(name), 0).first;
    bool first = it->second == 0;
    it->second |= std::uint64_t{1} << shard;
    return first;
}

bool shard_interest::remove(std::string_view name, unsigned shard) {
    auto it = _shards.find(name);
    if (it == _shards.end()) return false;
    it->second &= ~(std::uint64_t{1} << shard);
    if (it->second != 0) return false;
    _shards.erase(it);
    return true;
}

std::uint64_t shard_interest::shards_for(std::string_view name) const {
    auto it = _shards.find(name);
    return it == _shards.end() ? 0 : it->second;
}

std::vector<std::string> shard_interest::channels() const {
    std::vector<std::string> out;
    out.reserve(_shards.size());
    for (const auto& [name, mask] : _shards) out.push_back(name);
    return out;
}

}  // namespace jugglite

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
    removed r{std::nullopt, false, {}};
    if (pos + 1 != subs.size()) {
        subs[pos] = subs.back();
        r.moved = subs[pos];
    }
    subs.pop_back();
    if (subs.empty()) {
        r.last = true;
        r.name = std::move(_channels.extract(_channels.find(entry->name)).key());  // frees entry
    } else if (subs.capacity() > 64 && subs.size() < subs.capacity() / 4) {
        subs.shrink_to_fit();  // give back memory after a mass disconnect
    }
    return r;
}

const channel_entry* channel_registry::find(std::string_view name) const {
    auto it = _channels.find(name);
    return it == _channels.end() ? nullptr : &it->second;
}

channel_entry* channel_registry::find(std::string_view name) {
    auto it = _channels.find(name);
    return it == _channels.end() ? nullptr : &it->second;
}

}  // namespace jugglite

// A shard's channel bookkeeping: which local connections want a channel. Pure data
// structure, no I/O. (The redis thread's side is subscription_table.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace jugglite {

// Heterogeneous lookup so a std::string_view finds a std::string key without a copy.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

// One subscriber of a channel: a connection id and which of its channels this is, so
// that a swap-remove can tell the moved connection its new position in O(1).
struct subscriber {
    std::uint32_t conn;
    std::uint16_t slot_in_conn;
};

struct channel_entry {
    std::string name;
    std::vector<subscriber> subscribers;
    bool ready = false;  // Redis confirmed the subscription on the current link
};

// A shard's channel -> subscribers table. Entries are stable in memory (node-based map)
// until their last subscriber leaves, so connections may hold channel_entry pointers.
class channel_registry {
public:
    struct added {
        channel_entry* entry;
        std::uint32_t pos;  // index in entry->subscribers
        bool first;         // the channel was not in this table before
    };
    // Adds `s` to channel `name`.
    [[nodiscard]] added add(std::string_view name, subscriber s);

    struct removed {
        std::optional<subscriber> moved;  // now at the removed position: update its pos
        bool last;                        // the channel is gone from this table
        std::string name;                 // when `last`: the gone channel's name
    };
    // Removes the subscriber at `pos` of `entry` by swapping the last one into its place.
    // When `last` is true `entry` has been freed and its name moved into the result.
    [[nodiscard]] removed remove(channel_entry* entry, std::uint32_t pos);

    // nullptr if no local connection wants `name`.
    [[nodiscard]] const channel_entry* find(std::string_view name) const;
    [[nodiscard]] channel_entry* find(std::string_view name);
    // Calls fn(channel_entry&) for every channel; fn must not add or remove any.
    template <class Fn>
    void for_each(Fn&& fn) {
        for (auto& [name, entry] : _channels) fn(entry);
    }
    [[nodiscard]] std::size_t size() const noexcept { return _channels.size(); }

private:
    std::unordered_map<std::string, channel_entry, string_hash, std::equal_to<>> _channels;
};

}  // namespace jugglite

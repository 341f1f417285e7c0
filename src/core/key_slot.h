// Redis Cluster's key → hash slot function, exactly as Redis computes it: CRC16 (XMODEM) of
// the key's hash tag, or of the whole key when it has none, modulo 16384. Channels of
// sharded pub/sub and the keys of the history streams are placed by it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace jugglite {

inline constexpr std::uint16_t cluster_slots = 16384;

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection), Redis' crc16.
[[nodiscard]] std::uint16_t crc16(std::string_view data) noexcept;

// The part of `key` that Redis hashes: the bytes between the first '{' and the first '}'
// after it when there are any, else the whole key ("{}" hashes the whole key too).
[[nodiscard]] std::string_view hash_tag(std::string_view key) noexcept;

// The cluster slot of `key` (0..16383), as CLUSTER KEYSLOT gives it.
[[nodiscard]] inline std::uint16_t key_slot(std::string_view key) noexcept {
    return crc16(hash_tag(key)) & (cluster_slots - 1);
}

// The slot of `prefix` followed by `name` (a channel under --namespace), without building
// the key.
[[nodiscard]] std::uint16_t key_slot(std::string_view prefix, std::string_view name) noexcept;

// A short tag ([a-z0-9]{1,4}) whose slot is `slot`: the shortest, and of those the first in
// order. Keys built as "prefix{tag}:name" then live in `slot` whatever `name` holds, braces
// included (see history_stream_key).
[[nodiscard]] std::string_view slot_tag(std::uint16_t slot) noexcept;

// The key of `channel`'s history stream: "<prefix>{<slot_tag(key_slot(channel))>}:<channel>".
// It always hashes to the channel's own slot, so one FCALL can touch both on a cluster; a
// plain "<prefix>{<channel>}" would not for a name holding '}' without a valid tag ("a}b").
[[nodiscard]] std::string history_stream_key(std::string_view prefix, std::string_view channel);

}  // namespace jugglite

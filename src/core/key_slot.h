// Redis Cluster's key → hash slot function, exactly as Redis computes it: CRC16 (XMODEM) of
// the key's hash tag, or of the whole key when it has none, modulo 16384. Channels of
// sharded pub/sub and the keys of the history streams are placed by it.
#pragma once

#include <cstdint>
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

}  // namespace jugglite

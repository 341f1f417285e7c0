#include "core/key_slot.h"

#include <algorithm>
#include <array>

namespace jugglite {

namespace {

// The table-driven form of the bitwise CRC, built once at compile time.
constexpr std::array<std::uint16_t, 256> crc16_table = [] {
    std::array<std::uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
        std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
        for (int bit = 0; bit < 8; ++bit)
            crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
        t[i] = crc;
    }
    return t;
}();

std::uint16_t crc16_step(std::uint16_t crc, unsigned char c) noexcept {
    return static_cast<std::uint16_t>((crc << 8) ^ crc16_table[((crc >> 8) ^ c) & 0xff]);
}

}  // namespace

std::uint16_t crc16(std::string_view data) noexcept {
    std::uint16_t crc = 0;
    for (unsigned char c : data) crc = crc16_step(crc, c);
    return crc;
}

// hash_tag's rule over the two parts, indexed as one key.
std::uint16_t key_slot(std::string_view prefix, std::string_view name) noexcept {
    const std::size_t n = prefix.size() + name.size();
    auto at = [&](std::size_t i) { return i < prefix.size() ? prefix[i] : name[i - prefix.size()]; };
    std::size_t from = 0, to = n;
    std::size_t open = 0;
    while (open < n && at(open) != '{') ++open;
    if (open < n) {
        std::size_t close = open + 1;
        while (close < n && at(close) != '}') ++close;
        if (close < n && close > open + 1) {
            from = open + 1;
            to = close;
        }
    }
    std::uint16_t crc = 0;
    for (std::size_t i = from; i < to; ++i) crc = crc16_step(crc, static_cast<unsigned char>(at(i)));
    return crc & (cluster_slots - 1);
}

namespace {

// The table behind slot_tag, searched once: every string over [a-z0-9] of 1 to 4 characters,
// shortest first, keeps the first one found for each slot (3 characters cover all but 85).
struct slot_tags {
    std::array<std::array<char, 5>, cluster_slots> tag{};  // NUL-terminated
    slot_tags() {
        constexpr std::string_view alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        std::size_t missing = cluster_slots;
        char buf[4];
        for (std::size_t len = 1; len <= 4 && missing > 0; ++len) {
            std::size_t combos = 1;
            for (std::size_t i = 0; i < len; ++i) combos *= alphabet.size();
            for (std::size_t n = 0; n < combos && missing > 0; ++n) {
                std::size_t v = n;
                for (std::size_t i = len; i-- > 0; v /= alphabet.size()) buf[i] = alphabet[v % alphabet.size()];
                auto& t = tag[key_slot(std::string_view(buf, len))];
                if (t[0] != '\0') continue;
                std::copy(buf, buf + len, t.begin());
                --missing;
            }
        }
    }
};

}  // namespace

std::string_view slot_tag(std::uint16_t slot) noexcept {
    static const slot_tags tags;
    return std::string_view(tags.tag[slot % cluster_slots].data());
}

std::string history_stream_key(std::string_view prefix, std::string_view channel) {
    std::string key;
    std::string_view tag = slot_tag(key_slot(channel));
    key.reserve(prefix.size() + tag.size() + 3 + channel.size());
    key.append(prefix).append("{").append(tag).append("}:").append(channel);
    return key;
}

std::string_view hash_tag(std::string_view key) noexcept {
    auto open = key.find('{');
    if (open == std::string_view::npos) return key;
    auto close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) return key;
    return key.substr(open + 1, close - open - 1);
}

}  // namespace jugglite

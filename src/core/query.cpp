#include "core/query.h"

#include <algorithm>

#include "core/limits.h"

namespace jugglite {

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool has_control_character(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

// One parameter split off the front of a raw query: its raw key, and its raw value when it
// has an '='.
struct raw_param {
    std::string_view key;
    std::optional<std::string_view> value;
};

raw_param next_param(std::string_view& query) {
    auto amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    auto eq = param.find('=');
    if (eq == std::string_view::npos) return {param, std::nullopt};
    return {param.substr(0, eq), param.substr(eq + 1)};
}

}  // namespace

std::expected<std::string, std::string> percent_decode(std::string_view in, bool plus_is_space) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (in.size() - i < 3) return std::unexpected("truncated percent escape");
            int hi = hex_value(in[i + 1]);
            int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return std::unexpected("bad percent escape");
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::string_view describe(channel_error e) {
    switch (e) {
        case channel_error::bad_escape: return "bad percent escape in query";
        case channel_error::array_syntax: return "channel[] is not supported; use channel=a,b";
        case channel_error::control_character: return "channel name contains a control character";
        case channel_error::name_too_long: return "channel name too long";
        case channel_error::too_many: return "too many channels";
    }
    return "bad channel list";
}

std::expected<std::vector<std::string>, channel_error> parse_channels(std::string_view query) {
    std::vector<std::string> channels;
    while (!query.empty()) {
        raw_param param = next_param(query);
        auto key = percent_decode(param.key, true);
        if (!key) return std::unexpected(channel_error::bad_escape);
        if (key->starts_with("channel[")) return std::unexpected(channel_error::array_syntax);
        if (*key != "channel" || !param.value) continue;

        auto value = percent_decode(*param.value, true);
        if (!value) return std::unexpected(channel_error::bad_escape);
        std::string_view rest = *value;
        while (true) {
            auto comma = rest.find(',');
            std::string_view name = rest.substr(0, comma);
            if (!name.empty()) {
                if (has_control_character(name))
                    return std::unexpected(channel_error::control_character);
                if (name.size() > limits::max_channel_name)
                    return std::unexpected(channel_error::name_too_long);
                if (std::find(channels.begin(), channels.end(), name) == channels.end()) {
                    if (channels.size() == limits::max_channels_per_conn)
                        return std::unexpected(channel_error::too_many);
                    channels.emplace_back(name);
                }
            }
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return channels;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        raw_param param = next_param(query);
        auto key = percent_decode(param.key, true);
        if (!key || *key != name) continue;
        if (!param.value) return std::string();
        auto value = percent_decode(*param.value, true);
        if (!value) return std::nullopt;
        return std::move(*value);
    }
    return std::nullopt;
}

}  // namespace jugglite

// The query decoder: percent escapes, the channel list and single parameters.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>

#include "core/limits.h"
#include "core/query.h"

using namespace jugglite;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view query(reinterpret_cast<const char*>(data), size);
    if (auto channels = parse_channels(query)) {
        // What a stream may be given: bounded, no control bytes, no duplicates, none empty.
        if (channels->size() > limits::max_channels_per_conn) __builtin_trap();
        std::set<std::string> seen;
        for (const auto& c : *channels) {
            if (c.empty() || c.size() > limits::max_channel_name || !seen.insert(c).second) __builtin_trap();
            for (unsigned char ch : c)
                if (ch < 0x20 || ch == 0x7f) __builtin_trap();
        }
    }
    (void)query_param(query, "lastEventId");
    (void)query_param(query, "token");
    (void)percent_decode(query, true);
    (void)percent_decode(query, false);
    return 0;
}

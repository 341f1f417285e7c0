// The SSE frame builder, with the JSON envelope read for event and id: any payload must give
// a frame that a browser parses as exactly one event carrying the payload's lines.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/sse_frame.h"

using namespace jugglite;

namespace {

// The payload's lines as the builder splits them (CRLF, LF, lone CR).
std::size_t line_count(std::string_view p) {
    std::size_t n = 1;
    for (std::size_t i = 0; i < p.size(); ++i) {
        if (p[i] == '\n') ++n;
        else if (p[i] == '\r') {
            ++n;
            if (i + 1 < p.size() && p[i + 1] == '\n') ++i;
        }
    }
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The first byte picks where ids come from: JSON, none, or a history entry.
    const std::uint8_t mode = data[0];
    std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
    sse_id_source ids{(mode & 2) ? stream_id{1700000000000, mode} : stream_id{}, (mode & 1) == 0};
    frame_ref f = make_sse_frame(payload, 1, ids);
    std::string built = build_sse_frame(payload, ids);
    std::string_view bytes = f->bytes();
    if (bytes != built || bytes.size() < 2 || !bytes.ends_with("\n\n")) __builtin_trap();
    // Every line is a field the builder writes, and the data lines are the payload's.
    std::size_t data_lines = 0, pos = 0;
    std::string_view body = bytes.substr(0, bytes.size() - 1);  // without the blank line
    while (pos < body.size()) {
        auto nl = body.find('\n', pos);
        if (nl == std::string_view::npos) __builtin_trap();
        std::string_view line = body.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.find('\r') != std::string_view::npos) __builtin_trap();
        if (line.starts_with("data: ")) ++data_lines;
        else if (!line.starts_with("event: ") && !line.starts_with("id: ")) __builtin_trap();
        else if (data_lines > 0) __builtin_trap();  // fields come before the data
    }
    if (data_lines != line_count(payload)) __builtin_trap();
    if (!ids.entry.empty() && f->id() != ids.entry) __builtin_trap();
    return 0;
}

#include "core/sse_frame.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <utility>

#include "core/limits.h"

namespace jugglite {

namespace {

using namespace std::string_view_literals;

// The `event:`/`id:` values found in a payload; an empty one writes no line.
struct sse_fields {
    std::optional<std::string> event;
    std::optional<std::string> id;
};

// A field value is written only if it can't break the frame: CR or LF would end the
// line early (and let a publisher inject fields), NUL makes browsers drop an `id`.
bool safe_field(std::string_view v) {
    return v.find_first_of("\r\n\0"sv) == std::string_view::npos;
}

// Sets `out` to the text of a string or number member; any other type leaves it empty.
// An error means the payload is not valid JSON. Scalars are read in full (a misspelt
// `tru` is an error); an object or array is left to be skipped unread.
simdjson::error_code scalar_text(simdjson::ondemand::value& v, std::optional<std::string>& out) {
    simdjson::ondemand::json_type type;
    if (auto e = v.type().get(type)) return e;
    if (type == simdjson::ondemand::json_type::boolean) {
        bool b;
        return v.get_bool().get(b);
    }
    if (type == simdjson::ondemand::json_type::null) {
        bool null = false;
        if (auto e = v.is_null().get(null)) return e;
        return null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
    if (type == simdjson::ondemand::json_type::string) {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return e;
        out.emplace(s);
    } else if (type == simdjson::ondemand::json_type::number) {
        simdjson::ondemand::number n;
        if (auto e = v.get_number().get(n)) return e;
        switch (n.get_number_type()) {
            case simdjson::ondemand::number_type::signed_integer:
                out = std::to_string(n.get_int64());
                break;
            case simdjson::ondemand::number_type::unsigned_integer:
                out = std::to_string(n.get_uint64());
                break;
            case simdjson::ondemand::number_type::floating_point_number: {
                // Shortest text that round-trips; JSON numbers have no NaN or infinity.
                char buf[32];
                auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n.get_double());
                out.emplace(buf, end);
                break;
            }
        }
    }
    return simdjson::SUCCESS;
}

// The event and id members of a JSON object document held in `json[0, len)`, readable up to
// `capacity` (at least SIMDJSON_PADDING more). Only what finding them needs is parsed: every
// byte is checked by simdjson's first stage (UTF-8, strings closed, no raw control
// characters), the top-level object's keys and punctuation, scalar event and id values and
// the end of the document are read in full, and the values of other members are skipped
// unread. So a document broken at its top level, or with bytes after the object, is plain
// data, as is one whose event or id value is malformed; a fault nested inside another
// member's value goes unnoticed. The first member of each name counts.
sse_fields fields_of(simdjson::ondemand::parser& parser, const char* json, std::size_t len,
                     std::size_t capacity) {
    simdjson::ondemand::document doc;
    if (auto e = parser.iterate(json, len, capacity).get(doc)) {
        if (e == simdjson::MEMALLOC) throw std::bad_alloc();  // not the payload's fault
        return {};
    }
    simdjson::ondemand::object obj;
    if (doc.get_object().get(obj)) return {};
    sse_fields found;
    bool seen_event = false;
    bool seen_id = false;
    for (auto member : obj) {
        simdjson::ondemand::field field;
        if (std::move(member).get(field)) return {};
        std::string_view key;
        if (field.unescaped_key().get(key)) return {};
        std::optional<std::string>* slot = nullptr;
        if (key == "event" && !std::exchange(seen_event, true)) slot = &found.event;
        else if (key == "id" && !std::exchange(seen_id, true)) slot = &found.id;
        if (slot && scalar_text(field.value(), *slot)) return {};
    }
    // Iteration stops at the object's `}`: anything after it makes the document invalid.
    if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) return {};
    if (found.event && !safe_field(*found.event)) found.event.reset();
    if (found.id && !safe_field(*found.id)) found.id.reset();
    return found;
}

// The reused parser and padded copy for payloads up to limits::small_json_bytes. Frames
// are built on the redis thread (and in tests), so one per thread and no locking.
struct small_json {
    small_json() {
        // Sized once for the largest small payload, so growing sizes don't reallocate it.
        if (parser.allocate(limits::small_json_bytes) == simdjson::MEMALLOC) throw std::bad_alloc();
    }
    simdjson::ondemand::parser parser;
    std::unique_ptr<char[]> padded{new char[limits::small_json_bytes + simdjson::SIMDJSON_PADDING]};
};

// Event and id of a JSON object payload; none for anything else.
sse_fields json_fields(std::string_view payload) {
    // Cheap pre-check: only something that looks like an object is worth parsing.
    auto first = payload.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos || payload[first] != '{') return {};
    // simdjson reads up to SIMDJSON_PADDING bytes past the end: parse a padded copy.
    const std::size_t capacity = payload.size() + simdjson::SIMDJSON_PADDING;
    auto parse_copy = [&](simdjson::ondemand::parser& parser, char* buf) {
        std::memcpy(buf, payload.data(), payload.size());
        std::memset(buf + payload.size(), 0, simdjson::SIMDJSON_PADDING);
        return fields_of(parser, buf, payload.size(), capacity);
    };
    if (payload.size() <= limits::small_json_bytes) {
        thread_local small_json reused;
        return parse_copy(reused.parser, reused.padded.get());
    }
    // Parser state grows with the document (about 4 bytes per structural character on top of
    // the copy): a large payload gets its own, released on return.
    simdjson::ondemand::parser parser;
    std::unique_ptr<char[]> padded(new char[capacity]);
    return parse_copy(parser, padded.get());
}

// Calls `line(piece)` for each line of `payload`, split on CRLF, LF and lone CR. A trailing
// line end gives an empty last piece; an empty payload is one empty piece.
template <class Fn>
void for_each_line(std::string_view payload, Fn&& line) {
    // Two memchr-speed scans (one per line-end byte) instead of find_first_of, which tests
    // every byte against a set: each position is recomputed only once passed.
    std::size_t start = 0;
    std::size_t next_lf = payload.find('\n');
    std::size_t next_cr = payload.find('\r');
    while (true) {
        if (next_lf != std::string_view::npos && next_lf < start) next_lf = payload.find('\n', start);
        if (next_cr != std::string_view::npos && next_cr < start) next_cr = payload.find('\r', start);
        std::size_t eol = std::min(next_lf, next_cr);
        line(payload.substr(start, eol - start));
        if (eol == std::string_view::npos) break;
        start = eol + 1;
        if (payload[eol] == '\r' && start < payload.size() && payload[start] == '\n') ++start;
    }
}

constexpr std::string_view data_prefix = "data: ";

std::size_t field_line_size(std::string_view name, const std::optional<std::string>& value) {
    return value ? name.size() + 2 + value->size() + 1 : 0;
}

// The exact size write_frame fills.
std::size_t frame_size(const sse_fields& fields, std::string_view payload) {
    std::size_t n = field_line_size("event", fields.event) + field_line_size("id", fields.id) + 1;
    for_each_line(payload,
                  [&n](std::string_view piece) { n += data_prefix.size() + piece.size() + 1; });
    return n;
}

// Writes the frame into `out`, which is exactly frame_size(fields, payload) bytes.
void write_frame(std::span<char> out, const sse_fields& fields, std::string_view payload) noexcept {
    char* p = out.data();
    auto put = [&p](std::string_view s) {
        if (!s.empty()) std::memcpy(p, s.data(), s.size());
        p += s.size();
    };
    auto put_field = [&](std::string_view name, const std::optional<std::string>& value) {
        if (!value) return;
        put(name);
        put(": ");
        put(*value);
        put("\n");
    };
    put_field("event", fields.event);
    put_field("id", fields.id);
    for_each_line(payload, [&](std::string_view piece) {
        put(data_prefix);
        put(piece);
        put("\n");
    });
    put("\n");
    assert(p == out.data() + out.size());
}

// The fields of `payload`'s frame: JSON's event (and id, when `ids` takes it), or the
// entry id.
sse_fields fields_for(std::string_view payload, const sse_id_source& ids) {
    sse_fields fields = json_fields(payload);
    if (!ids.entry.empty()) fields.id = ids.entry.text();
    else if (!ids.json_id) fields.id.reset();
    return fields;
}

}  // namespace

frame_ref make_sse_frame(std::string_view payload, std::uint64_t seq, const sse_id_source& ids) {
    // The JSON buffers are released before the frame is allocated, so a large message's
    // peak holds one of them, not both.
    const sse_fields fields = fields_for(payload, ids);
    return frame_ref::build(
        frame_size(fields, payload), seq,
        [&](std::span<char> out) { write_frame(out, fields, payload); }, ids.entry);
}

frame_ref make_reset_frame(stream_id head, std::string_view reason, std::optional<stream_id> asked) {
    // The client's header is echoed only as a well-formed id: nothing else of it reaches JSON.
    std::string data = asked ? fmt::format(R"({{"reason":"{}","last_event_id":"{}"}})", reason, asked->text())
                             : fmt::format(R"({{"reason":"{}","last_event_id":null}})", reason);
    std::string text = head.empty() ? fmt::format("event: jugglite-reset\ndata: {}\n\n", data)
                                    : fmt::format("event: jugglite-reset\nid: {}\ndata: {}\n\n",
                                                  head.text(), data);
    return frame_ref::make(text, 0, head);
}

std::string build_sse_frame(std::string_view payload, const sse_id_source& ids) {
    const sse_fields fields = fields_for(payload, ids);
    const std::size_t size = frame_size(fields, payload);
    std::string out;
    // GCC 12's libstdc++ may hand the callback more than `size` (the grown capacity), so the
    // callback uses `size` itself.
    out.resize_and_overwrite(size, [&](char* p, std::size_t) {
        write_frame({p, size}, fields, payload);
        return size;
    });
    return out;
}

std::string registration_comment(std::span<const std::string> channels) {
    std::string out = ": registered to channels: ";
    for (std::size_t i = 0; i < channels.size(); ++i) {
        if (i) out.append(", ");
        out.append(channels[i]);
    }
    out.push_back('\n');
    return out;
}

std::string keepalive_comment(std::uint32_t open_connections) {
    return fmt::format(": keepalive {}\n\n", open_connections);
}

}  // namespace jugglite

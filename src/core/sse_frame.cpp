#include "core/sse_frame.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <optional>

namespace jugglite {

namespace {

// A field value is written only if it can't break the frame: CR or LF would end the
// line early (and let a publisher inject fields), NUL makes browsers drop an `id`.
bool safe_field(std::string_view v) { return v.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos; }

// The textual form of a JSON string or number member, or nullopt for any other type.
std::optional<std::string> scalar_text(simdjson::dom::element e) {
    switch (e.type()) {
        case simdjson::dom::element_type::STRING: return std::string(std::string_view(e));
        case simdjson::dom::element_type::INT64: return std::to_string(int64_t(e));
        case simdjson::dom::element_type::UINT64: return std::to_string(uint64_t(e));
        case simdjson::dom::element_type::DOUBLE: {
            // Shortest text that round-trips; JSON numbers have no NaN or infinity.
            char buf[32];
            auto [end, ec] = std::to_chars(buf, buf + sizeof buf, double(e));
            return std::string(buf, end);
        }
        default: return std::nullopt;
    }
}

// Appends `event:`/`id:` lines when the payload is a JSON object that carries them.
void append_json_fields(std::string& out, std::string_view payload) {
    // Cheap pre-check: only something that looks like an object is worth parsing.
    auto first = payload.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos || payload[first] != '{') return;

    // One parser per thread: frames are built on the redis thread (and in tests).
    // simdjson reads up to SIMDJSON_PADDING bytes past the end: parse from a reused,
    // padded per-thread copy rather than allocating one per message.
    thread_local simdjson::dom::parser parser;
    thread_local std::string padded;
    padded.assign(payload);
    padded.resize(payload.size() + simdjson::SIMDJSON_PADDING);
    simdjson::dom::element doc;
    if (parser.parse(padded.data(), payload.size(), false).get(doc) != simdjson::SUCCESS)
        return;  // invalid JSON: plain data
    simdjson::dom::object obj;
    if (doc.get(obj) != simdjson::SUCCESS) return;

    for (std::string_view key : {std::string_view("event"), std::string_view("id")}) {
        simdjson::dom::element value;
        if (obj.at_key(key).get(value) != simdjson::SUCCESS) continue;
        auto text = scalar_text(value);
        if (!text || !safe_field(*text)) continue;
        out.append(key).append(": ").append(*text).push_back('\n');
    }
}

}  // namespace

std::string build_sse_frame(std::string_view payload) {
    std::string out;
    out.reserve(payload.size() + 16);
    append_json_fields(out, payload);
    // Two memchr-speed scans (one per line-end byte) instead of find_first_of, which tests
    // every byte against a set: each position is recomputed only once passed.
    std::size_t start = 0;
    std::size_t next_lf = payload.find('\n');
    std::size_t next_cr = payload.find('\r');
    while (true) {
        if (next_lf != std::string_view::npos && next_lf < start) next_lf = payload.find('\n', start);
        if (next_cr != std::string_view::npos && next_cr < start) next_cr = payload.find('\r', start);
        std::size_t eol = std::min(next_lf, next_cr);
        out.append("data: ").append(payload.substr(start, eol - start)).push_back('\n');
        if (eol == std::string_view::npos) break;
        start = eol + 1;
        if (payload[eol] == '\r' && start < payload.size() && payload[start] == '\n') ++start;
    }
    out.push_back('\n');
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

}  // namespace jugglite

#include "core/grant.h"

#include <fnmatch.h>
#include <simdjson.h>

#include <algorithm>

#include "core/limits.h"

namespace jugglite {

bool glob_match(std::string_view pattern, std::string_view name) {
    if (pattern.find_first_of("*?[\\") == std::string_view::npos) return pattern == name;
    std::string p(pattern), n(name);  // fnmatch needs terminated strings
    return fnmatch(p.c_str(), n.c_str(), 0) == 0;
}

bool grant::allows(std::string_view channel) const {
    return std::any_of(channels.begin(), channels.end(),
                       [&](const std::string& pattern) { return glob_match(pattern, channel); });
}

void grant::filter(std::vector<std::string>& requested) const {
    std::erase_if(requested, [&](const std::string& c) { return !allows(c); });
}

std::expected<grant, std::string> parse_grant_json(std::string_view body) {
    if (body.size() > limits::max_auth_answer_bytes)
        return std::unexpected("the answer is larger than the limit");
    // The DOM parser validates the whole document, trailing bytes included.
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(body.data(), body.size()).get(doc))
        return std::unexpected("the answer is not valid JSON");
    simdjson::dom::object obj;
    if (doc.get(obj)) return std::unexpected("the answer is not a JSON object");
    grant g;
    simdjson::dom::array channels;
    if (obj["channels"].get(channels)) return std::unexpected("no \"channels\" array");
    for (simdjson::dom::element item : channels) {
        std::string_view name;
        if (item.get(name)) return std::unexpected("\"channels\" must hold strings");
        g.channels.emplace_back(name);
    }
    simdjson::dom::element sub;
    if (!obj["sub"].get(sub)) {
        std::string_view text;
        if (!sub.get(text)) g.sub = std::string(text);
        else if (sub.is_number()) g.sub = simdjson::to_string(sub);
    }
    return g;
}

}  // namespace jugglite

// Reading a value out of a Prometheus exposition, for the unit and integration tests.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace test {

// The labels of `selector` (`a="x",b="y"` out of `name{a="x",b="y"}`) are all among those
// of `series` (of the same name).
inline bool labels_match(std::string_view series, std::string_view selector) {
    const auto open = selector.find('{');
    if (!series.starts_with(selector.substr(0, open + 1))) return false;
    std::string_view wanted = selector.substr(open + 1);
    if (wanted.ends_with('}')) wanted.remove_suffix(1);
    const std::string_view have = series.substr(open);  // "{...}"
    while (!wanted.empty()) {
        const auto comma = wanted.find("\",");
        const std::string_view pair = wanted.substr(0, comma == std::string_view::npos ? wanted.size() : comma + 1);
        wanted.remove_prefix(std::min(wanted.size(), pair.size() + (comma == std::string_view::npos ? 0 : 1)));
        const auto at = have.find(pair);
        if (at == std::string_view::npos || (have[at - 1] != '{' && have[at - 1] != ',')) return false;
    }
    return true;
}

// The value of `name` in a Prometheus exposition (a /metrics answer, head or not): with
// labels (`x_total{reason="auth"}`), the sum of the samples that carry all of them; else the
// sum of every sample of that name over its labels; -1 when there is none.
inline long long metric_in(std::string_view body, std::string_view name) {
    long long sum = 0;
    bool found = false;
    if (auto head_end = body.find("\r\n\r\n"); head_end != std::string_view::npos)
        body.remove_prefix(head_end + 4);
    while (!body.empty()) {
        std::string_view line = body.substr(0, body.find('\n'));
        body.remove_prefix(std::min(body.size(), line.size() + 1));
        const auto space = line.rfind(' ');
        if (line.starts_with('#') || space == std::string_view::npos) continue;
        const std::string_view series = line.substr(0, space);
        const bool match = name.find('{') != std::string_view::npos
                               ? labels_match(series, name)
                               : series == name || (series.starts_with(name) && series[name.size()] == '{');
        if (!match) continue;
        found = true;
        sum += static_cast<long long>(std::stod(std::string(line.substr(space + 1))));
    }
    return found ? sum : -1;
}

}  // namespace test

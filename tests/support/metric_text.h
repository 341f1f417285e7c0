// Reading a value out of a Prometheus exposition, for the unit and integration tests.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace test {

// The value of `name` in a Prometheus exposition (a /metrics answer, head or not): the
// one sample when `name` carries labels (`x_total{reason="auth"}`), else the sum of every
// sample of that name over its labels; -1 when there is none.
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
                               ? series == name
                               : series == name || (series.starts_with(name) && series[name.size()] == '{');
        if (!match) continue;
        found = true;
        sum += static_cast<long long>(std::stod(std::string(line.substr(space + 1))));
    }
    return found ? sum : -1;
}

}  // namespace test

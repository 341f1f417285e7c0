#include "core/prometheus.h"

#include <fmt/format.h>

namespace jugglite {

namespace {

// HELP text escapes backslash and newline; label values escape the double quote too.
void append_escaped(std::string& out, std::string_view s, bool quote) {
    for (char ch : s) {
        switch (ch) {
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '"':
                if (quote) out += "\\\"";
                else out += ch;
                break;
            default: out += ch;
        }
    }
}

std::string_view type_name(prom_writer::type t) {
    switch (t) {
        case prom_writer::type::counter: return "counter";
        case prom_writer::type::gauge: return "gauge";
        case prom_writer::type::histogram: return "histogram";
    }
    return "untyped";
}

}  // namespace

void prom_writer::family(std::string_view name, type t, std::string_view help) {
    fmt::format_to(std::back_inserter(_out), "# HELP {} ", name);
    append_escaped(_out, help, false);
    fmt::format_to(std::back_inserter(_out), "\n# TYPE {} {}\n", name, type_name(t));
}

void prom_writer::series(std::string_view name, prom_labels labels, std::string_view extra_name,
                         std::string_view extra_value) {
    _out += name;
    if (labels.size() == 0 && extra_name.empty()) return;
    char sep = '{';
    auto label = [&](std::string_view k, std::string_view v) {
        _out += sep;
        _out += k;
        _out += "=\"";
        append_escaped(_out, v, true);
        _out += '"';
        sep = ',';
    };
    for (const auto& [k, v] : labels) label(k, v);
    if (!extra_name.empty()) label(extra_name, extra_value);
    _out += '}';
}

void prom_writer::sample(std::string_view name, prom_labels labels, std::uint64_t value) {
    series(name, labels);
    fmt::format_to(std::back_inserter(_out), " {}\n", value);
}

void prom_writer::sample(std::string_view name, prom_labels labels, double value) {
    series(name, labels);
    fmt::format_to(std::back_inserter(_out), " {}\n", value);
}

void prom_writer::counter(std::string_view name, std::string_view help, std::uint64_t value) {
    family(name, type::counter, help);
    sample(name, {}, value);
}

void prom_writer::gauge(std::string_view name, std::string_view help, std::uint64_t value) {
    family(name, type::gauge, help);
    sample(name, {}, value);
}

void prom_writer::histogram(std::string_view name, prom_labels labels,
                            std::span<const double> bounds, std::span<const std::uint64_t> counts,
                            double sum) {
    const std::string bucket = fmt::format("{}_bucket", name);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
        total += i < counts.size() ? counts[i] : 0;
        const std::string le = i < bounds.size() ? fmt::format("{}", bounds[i]) : "+Inf";
        series(bucket, labels, "le", le);
        fmt::format_to(std::back_inserter(_out), " {}\n", total);
    }
    sample(fmt::format("{}_sum", name), labels, sum);
    sample(fmt::format("{}_count", name), labels, total);
}

}  // namespace jugglite

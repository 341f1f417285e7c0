// A writer for the Prometheus text exposition format (version 0.0.4): families with their
// # HELP and # TYPE lines, samples with escaped labels, and histograms from bucket counts.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace jugglite {

using prom_label = std::pair<std::string_view, std::string_view>;
using prom_labels = std::initializer_list<prom_label>;

class prom_writer {
public:
    enum class type : std::uint8_t { counter, gauge, histogram };

    // Starts family `name`: its HELP (escaped) and TYPE lines. Every sample of the family
    // must follow before the next family starts (the format forbids interleaving).
    void family(std::string_view name, type t, std::string_view help);

    // One sample line: `name{labels} value`.
    void sample(std::string_view name, prom_labels labels, std::uint64_t value);
    void sample(std::string_view name, prom_labels labels, double value);

    // A family with a single unlabelled sample.
    void counter(std::string_view name, std::string_view help, std::uint64_t value);
    void gauge(std::string_view name, std::string_view help, std::uint64_t value);

    // A histogram's series (`_bucket` with cumulative `le`, `_sum`, `_count`) from
    // `counts`, which are per bucket, not cumulative: counts[i] for values at most
    // bounds[i] and above bounds[i-1], and one more for values above the last bound.
    void histogram(std::string_view name, prom_labels labels, std::span<const double> bounds,
                   std::span<const std::uint64_t> counts, double sum);

    [[nodiscard]] const std::string& text() const noexcept { return _out; }
    [[nodiscard]] std::string take() noexcept { return std::move(_out); }

private:
    void series(std::string_view name, prom_labels labels, std::string_view extra_name = {},
                std::string_view extra_value = {});

    std::string _out;
};

}  // namespace jugglite

// A log-bucketed latency histogram (16 buckets per power of two, ~4.4% resolution) that
// lives in plain memory, so worker processes can fill it in shared memory and the parent
// can merge them.
#pragma once

#include <cmath>
#include <cstdint>

namespace loadgen {

struct histogram {
    static constexpr int per_octave = 16;
    static constexpr int buckets = 40 * per_octave;  // up to 2^40 us (12 days)

    std::uint64_t count[buckets];
    std::uint64_t total;
    std::uint64_t max_us;

    void record(std::uint64_t us) noexcept {
        int idx = static_cast<int>(std::log2(static_cast<double>(us) + 1.0) * per_octave);
        if (idx >= buckets) idx = buckets - 1;
        ++count[idx];
        ++total;
        if (us > max_us) max_us = us;
    }

    void merge(const histogram& o) noexcept {
        for (int i = 0; i < buckets; ++i) count[i] += o.count[i];
        total += o.total;
        if (o.max_us > max_us) max_us = o.max_us;
    }

    // Upper edge of bucket `idx`, in microseconds.
    static double upper_us(int idx) noexcept {
        return std::exp2(static_cast<double>(idx + 1) / per_octave) - 1.0;
    }

    // The value below which fraction `q` of the samples lie (bucket upper edge, capped at max).
    [[nodiscard]] double quantile_us(double q) const noexcept {
        if (total == 0) return 0;
        auto want = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
        if (want == 0) want = 1;
        std::uint64_t seen = 0;
        for (int i = 0; i < buckets; ++i) {
            seen += count[i];
            if (seen >= want) return std::fmin(upper_us(i), static_cast<double>(max_us));
        }
        return static_cast<double>(max_us);
    }
};

}  // namespace loadgen

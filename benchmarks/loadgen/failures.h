// Why loadgen's streams did not open: counted by each worker in the shared mapping (plain
// memory, atomics only), summed by the parent into the JSON of its result.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace loadgen {

// Which side lost a stream.
enum fail_reason : int {
    fail_socket,        // socket() failed (loadgen's own limits)
    fail_connect,       // connect() failed at once (e.g. EADDRNOTAVAIL: out of source ports)
    fail_timeout,       // the handshake timed out (SYNs unanswered: a listen queue overflowed)
    fail_refused,       // ECONNREFUSED: nobody listening
    fail_reset,         // reset before the response (ECONNRESET, or another socket error)
    fail_eof,           // the server closed before its response head
    fail_send,          // the request could not be written
    fail_status,        // answered, but not with 200
    fail_reasons
};
inline constexpr const char* fail_names[fail_reasons] = {"socket", "connect", "timeout", "refused",
                                                         "reset", "eof", "send", "status"};

// The reason for a socket error before the response.
inline fail_reason reason_of(int err) noexcept {
    return err == ETIMEDOUT ? fail_timeout : err == ECONNREFUSED ? fail_refused : fail_reset;
}

// One worker's counts.
struct failure_counts {
    std::atomic<std::int64_t> by_reason[fail_reasons];
    // The answers that were not 200, by status code; [0]: a status line that did not parse.
    std::atomic<std::int64_t> by_status[600];

    void count(fail_reason why) noexcept { by_reason[why].fetch_add(1, std::memory_order_relaxed); }
    // An answer that was not 200: `head` starts with its status line.
    void count_answer(std::string_view head) noexcept {
        int code = 0;
        if (head.size() >= 12) std::from_chars(head.data() + 9, head.data() + 12, code);
        by_status[code >= 100 && code < 600 ? code : 0].fetch_add(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::int64_t failed() const noexcept { return sum(by_reason); }
    [[nodiscard]] std::int64_t answers() const noexcept { return sum(by_status); }

private:
    template <std::size_t N>
    static std::int64_t sum(const std::atomic<std::int64_t> (&a)[N]) noexcept {
        std::int64_t n = 0;
        for (const auto& x : a) n += x.load(std::memory_order_relaxed);
        return n;
    }
};

// The counts of `workers` workers (`of(w)` is worker w's), summed into two JSON objects:
// by_reason ({"socket":n,...,"pending":n}; pending: of `failed`, those that had neither
// opened nor failed by the deadline) and by_status ({"408":n,...; "other": unparsed}).
struct failure_summary {
    std::string by_reason, by_status;
};

template <class Of>
failure_summary summarize(int workers, Of of, std::int64_t failed) {
    auto total = [&](auto field) {
        std::int64_t n = 0;
        for (int w = 0; w < workers; ++w) n += field(of(w)).load(std::memory_order_relaxed);
        return n;
    };
    failure_summary s{"{", "{"};
    std::int64_t explained = 0;
    for (int r = 0; r < fail_reasons; ++r) {
        std::int64_t n = total([r](const failure_counts& c) -> const auto& { return c.by_reason[r]; });
        explained += n;
        s.by_reason += fmt::format("\"{}\":{},", fail_names[r], n);
    }
    s.by_reason += fmt::format("\"pending\":{}}}", std::max<std::int64_t>(0, failed - explained));
    for (int code = 0; code < 600; ++code) {
        std::int64_t n = total([code](const failure_counts& c) -> const auto& { return c.by_status[code]; });
        if (n == 0) continue;
        if (s.by_status.size() > 1) s.by_status += ',';
        s.by_status += code ? fmt::format("\"{}\":{}", code, n) : fmt::format("\"other\":{}", n);
    }
    s.by_status += '}';
    return s;
}

}  // namespace loadgen

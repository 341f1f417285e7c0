// Tests for drain_pace: how many streams a draining shard closes by when, and their retry:.
#include <doctest/doctest.h>

#include "core/drain_pace.h"
#include "core/limits.h"

using namespace jugglite;
using namespace std::chrono_literals;

TEST_CASE("drain_pace: a few streams all close at the first step") {
    drain_pace p(50, 10'000, 5s, 100ms, 1'000);
    CHECK(p.due(1'000) == 50);
    CHECK_FALSE(p.expired(1'000));
}

TEST_CASE("drain_pace: many streams close at the rate, one step ahead, never more per second") {
    drain_pace p(10'000, 2'000, 10s, 100ms, 0);
    CHECK(p.due(0) == 200);        // one step's worth at once
    CHECK(p.due(900) == 2'000);    // the first second: the rate
    CHECK(p.due(1'900) == 4'000);
    for (std::int64_t t = 0; t + 1'000 <= 10'000; t += 100)
        CHECK(p.due(t + 1'000) - p.due(t) <= 2'000);  // any one second, at most the rate
    CHECK(p.due(4'900) == 10'000);
    CHECK(p.due(60'000) == 10'000);
    const auto r = p.retry(0);
    CHECK(r.lo == limits::refusal_retry_min.count());
    CHECK(r.hi == limits::refusal_retry_max.count());
}

TEST_CASE("drain_pace: at the window's end the rest close, their retry: spread to keep the rate") {
    drain_pace p(100'000, 10'000, 5s, 100ms, 0);
    CHECK(p.due(4'800) == 49'000);
    CHECK_FALSE(p.expired(4'999));
    CHECK(p.expired(5'000));
    CHECK(p.due(5'000) == 100'000);
    // 50,000 left at 10,000/s would have taken 5 s: their reconnects spread over 5 s.
    const auto r = p.retry(50'000);
    CHECK(r.lo == 1'000);
    CHECK(r.hi == 6'000);
    // Never further than drain_retry_max.
    CHECK(drain_pace(100'000'000, 1, 1s, 100ms, 0).retry(100'000'000).hi ==
          limits::drain_retry_max.count());
}

// Tests for spsc_queue (order, capacity, leftovers, a two-thread stress run) and wake_flag.
#include "core/spsc_queue.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "core/frame.h"
#include "core/shard_link.h"

using namespace jugglite;

namespace {

// Counts live instances so leaks and double destruction show up as a wrong count.
struct tracked {
    static inline int live = 0;
    int value;
    explicit tracked(int v) noexcept : value(v) { ++live; }
    tracked(tracked&& o) noexcept : value(o.value) { ++live; }
    tracked(const tracked&) = delete;
    ~tracked() { --live; }
};

// True when constructing a queue of `capacity` in a child process aborts it.
bool construction_aborts(std::size_t capacity) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        std::signal(SIGABRT, SIG_DFL);  // bypass doctest's crash report in the child
        spsc_queue<int> q(capacity);
        _exit(q.capacity() == capacity ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status)) REQUIRE(WEXITSTATUS(status) == 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

}  // namespace

TEST_CASE("spsc_queue pops in push order") {
    spsc_queue<int> q(8);
    CHECK(q.capacity() == 8);
    CHECK(q.empty());
    CHECK(!q.try_pop().has_value());
    for (int i = 0; i < 5; ++i) CHECK(q.try_push(int{i}));
    CHECK(!q.empty());
    for (int i = 0; i < 5; ++i) {
        auto v = q.try_pop();
        REQUIRE(v.has_value());
        CHECK(*v == i);
    }
    CHECK(q.empty());
    CHECK(!q.try_pop().has_value());
}

TEST_CASE("spsc_queue reports full and leaves the rejected value untouched") {
    spsc_queue<std::unique_ptr<int>> q(4);
    for (int i = 0; i < 4; ++i) CHECK(q.try_push(std::make_unique<int>(i)));
    auto extra = std::make_unique<int>(99);
    CHECK(!q.try_push(std::move(extra)));
    REQUIRE(extra != nullptr);
    CHECK(*extra == 99);

    // One pop makes room for exactly one more.
    auto first = q.try_pop();
    REQUIRE(first.has_value());
    CHECK(**first == 0);
    CHECK(q.try_push(std::move(extra)));
    CHECK(extra == nullptr);
    CHECK(!q.try_push(std::make_unique<int>(100)));
    for (int expected : {1, 2, 3, 99}) {
        auto v = q.try_pop();
        REQUIRE(v.has_value());
        CHECK(**v == expected);
    }
    CHECK(!q.try_pop().has_value());
}

TEST_CASE("spsc_queue wraps around its slots many times") {
    spsc_queue<int> q(4);
    int next_push = 0, next_pop = 0;
    for (int round = 0; round < 1000; ++round) {
        while (q.try_push(int{next_push})) ++next_push;
        CHECK(next_push - next_pop == 4);
        for (int k = 0; k < 3; ++k) {
            auto v = q.try_pop();
            REQUIRE(v.has_value());
            CHECK(*v == next_pop++);
        }
    }
}

TEST_CASE("spsc_queue capacity must be a power of two of at least 2") {
    CHECK(!construction_aborts(2));
    CHECK(!construction_aborts(1024));
    CHECK(construction_aborts(0));
    CHECK(construction_aborts(1));
    CHECK(construction_aborts(3));
    CHECK(construction_aborts(6));
    CHECK(construction_aborts(1000));
}

TEST_CASE("spsc_queue destroys popped values once and leftovers on destruction") {
    tracked::live = 0;
    {
        spsc_queue<tracked> q(8);
        for (int i = 0; i < 6; ++i) CHECK(q.try_push(tracked{i}));
        CHECK(tracked::live == 6);
        {
            auto v = q.try_pop();
            REQUIRE(v.has_value());
            CHECK(v->value == 0);
            CHECK(tracked::live == 6);  // five queued plus the popped one
        }
        CHECK(tracked::live == 5);
    }
    CHECK(tracked::live == 0);
}

TEST_CASE("spsc_queue releases leftover frame references on destruction") {
    frame_ref f = frame_ref::make("payload");
    {
        spsc_queue<shard_message> q(4);
        CHECK(q.try_push(shard_message{f, "a"}));
        CHECK(q.try_push(shard_message{f, "b"}));
        CHECK(f.use_count() == 3);
    }
    CHECK(f.use_count() == 1);
}

TEST_CASE("spsc_queue two threads: 1,000,000 integers arrive in order, none lost") {
    constexpr std::uint64_t count = 1'000'000;
    spsc_queue<std::uint64_t> q(1024);
    std::thread producer([&] {
        for (std::uint64_t i = 0; i < count; ++i) {
            while (!q.try_push(std::uint64_t{i})) std::this_thread::yield();
        }
    });
    std::uint64_t expected = 0;
    std::uint64_t out_of_order = 0;
    while (expected < count) {
        auto v = q.try_pop();
        if (!v) {
            std::this_thread::yield();
            continue;
        }
        if (*v != expected) ++out_of_order;
        expected = *v + 1;
    }
    producer.join();
    CHECK(out_of_order == 0);
    CHECK(expected == count);
    CHECK(q.empty());
}

TEST_CASE("spsc_queue two threads: frame references survive the hand-over intact") {
    constexpr std::uint64_t count = 200'000;
    frame_ref shared = frame_ref::make("shared frame");
    spsc_queue<shard_message> q(256);
    std::thread producer([&] {
        for (std::uint64_t i = 0; i < count; ++i) {
            shard_message m{i % 2 ? shared : frame_ref::make(std::to_string(i), i),
                            std::to_string(i)};
            while (!q.try_push(std::move(m))) std::this_thread::yield();
        }
    });
    std::uint64_t received = 0, bad = 0;
    while (received < count) {
        auto m = q.try_pop();
        if (!m) {
            std::this_thread::yield();
            continue;
        }
        const std::string expected = std::to_string(received);
        if (m->channel != expected) ++bad;
        if (received % 2) {
            if (m->frame.get() != shared.get()) ++bad;
        } else if (m->frame->bytes() != expected || m->frame->seq() != received) {
            ++bad;
        }
        ++received;
    }
    producer.join();
    CHECK(bad == 0);
    CHECK(shared.use_count() == 1);
}

TEST_CASE("wake_flag: should_wake is true once after set_sleeping, false otherwise") {
    wake_flag w;
    CHECK(!w.should_wake());
    w.set_sleeping();
    CHECK(w.should_wake());
    CHECK(!w.should_wake());
    CHECK(!w.should_wake());

    w.set_sleeping();
    w.clear();  // the consumer found work and did not block
    CHECK(!w.should_wake());

    w.set_sleeping();
    w.set_sleeping();  // sleeping twice still earns one wakeup
    CHECK(w.should_wake());
    CHECK(!w.should_wake());
}

TEST_CASE("wake_flag: with racing producers exactly one wins each sleep") {
    wake_flag w;
    for (int round = 0; round < 200; ++round) {
        w.set_sleeping();
        std::atomic<int> wins{0};
        std::thread a([&] { wins += w.should_wake() ? 1 : 0; });
        std::thread b([&] { wins += w.should_wake() ? 1 : 0; });
        a.join();
        b.join();
        CHECK(wins.load() == 1);
    }
}

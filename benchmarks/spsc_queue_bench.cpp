// Micro-benchmarks of spsc_queue: an uncontended push+pop pair and a two-thread stream.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "core/frame.h"
#include "core/shard_link.h"
#include "core/spsc_queue.h"

namespace {

void bm_push_pop_int(benchmark::State& state) {
    jugglite::spsc_queue<std::uint64_t> q(1024);
    std::uint64_t i = 0;
    for (auto _ : state) {
        bool pushed = q.try_push(std::uint64_t{i++});
        benchmark::DoNotOptimize(pushed);
        auto v = q.try_pop();
        benchmark::DoNotOptimize(v);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// The real redis->shard element: a frame reference plus the channel name.
void bm_push_pop_message(benchmark::State& state) {
    jugglite::spsc_queue<jugglite::shard_message> q(1024);
    const jugglite::frame_ref f = jugglite::frame_ref::make("data: hello\n\n");
    for (auto _ : state) {
        bool pushed = q.try_push(jugglite::shard_message{f, "news"});
        benchmark::DoNotOptimize(pushed);
        auto m = q.try_pop();
        benchmark::DoNotOptimize(m);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// A side that finds the queue full (empty) spins this often before yielding the core, so
// the run stays meaningful when the two threads share a core with other work.
constexpr unsigned spin_limit = 256;

// One producer thread and the benchmark thread as consumer, `batch` elements per iteration.
// On a loaded 2-core machine the figures are indicative only.
void bm_two_thread_throughput(benchmark::State& state) {
    constexpr std::uint64_t batch = 1 << 16;
    jugglite::spsc_queue<std::uint64_t> q(static_cast<std::size_t>(state.range(0)));
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> requested{0};
    std::thread producer([&] {
        std::uint64_t next = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            if (next == requested.load(std::memory_order_acquire)) {
                std::this_thread::yield();
                continue;
            }
            for (unsigned spins = 0; !q.try_push(std::uint64_t{next}); ++spins) {
                if (stop.load(std::memory_order_relaxed)) return;
                if (spins >= spin_limit) std::this_thread::yield();
            }
            ++next;
        }
    });
    std::uint64_t expected = 0, errors = 0;
    for (auto _ : state) {
        requested.fetch_add(batch, std::memory_order_release);
        for (std::uint64_t n = 0, spins = 0; n < batch;) {
            auto v = q.try_pop();
            if (!v) {
                if (++spins >= spin_limit) std::this_thread::yield();
                continue;
            }
            spins = 0;
            errors += *v != expected;
            ++expected;
            ++n;
        }
    }
    stop.store(true);
    producer.join();
    if (errors) state.SkipWithError("elements arrived out of order");
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}

}  // namespace

BENCHMARK(bm_push_pop_int);
BENCHMARK(bm_push_pop_message);
BENCHMARK(bm_two_thread_throughput)->Arg(1024)->Arg(1 << 14)->UseRealTime();

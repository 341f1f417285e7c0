// Micro-benchmarks of channel_registry::find at 10, 1K and 100K channels, and
// subscription_table::shards_for.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/channel_registry.h"
#include "core/subscription_table.h"

namespace {

// Channel names shaped like real ones ("user:12345:notifications").
std::vector<std::string> channel_names(std::size_t n) {
    std::vector<std::string> names;
    names.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::string name = "user:";
        name += std::to_string(i * 7919 % 1'000'003);
        name += ":notifications";
        names.push_back(std::move(name));
    }
    return names;
}

void bm_registry_find_hit(benchmark::State& state) {
    const auto names = channel_names(static_cast<std::size_t>(state.range(0)));
    jugglite::channel_registry reg;
    for (std::uint32_t i = 0; i < names.size(); ++i) (void)reg.add(names[i], {i, 0});
    std::size_t k = 0;
    for (auto _ : state) {
        const jugglite::channel_entry* e = reg.find(names[k]);
        benchmark::DoNotOptimize(e);
        if (++k == names.size()) k = 0;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void bm_registry_find_miss(benchmark::State& state) {
    const auto names = channel_names(static_cast<std::size_t>(state.range(0)));
    jugglite::channel_registry reg;
    for (std::uint32_t i = 0; i < names.size(); ++i) (void)reg.add(names[i], {i, 0});
    const std::string missing = "user:none:notifications";
    for (auto _ : state) {
        const jugglite::channel_entry* e = reg.find(missing);
        benchmark::DoNotOptimize(e);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void bm_shards_for(benchmark::State& state) {
    const auto names = channel_names(static_cast<std::size_t>(state.range(0)));
    jugglite::subscription_table si(5000, names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
        (void)si.want(names[i], static_cast<unsigned>(i % 8), true);
        (void)si.want(names[i], static_cast<unsigned>((i * 3 + 1) % 8), true);
    }
    std::size_t k = 0;
    for (auto _ : state) {
        std::uint64_t mask = si.shards_for(names[k]);
        benchmark::DoNotOptimize(mask);
        if (++k == names.size()) k = 0;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

}  // namespace

BENCHMARK(bm_registry_find_hit)->Arg(10)->Arg(1000)->Arg(100'000);
BENCHMARK(bm_registry_find_miss)->Arg(10)->Arg(1000)->Arg(100'000);
BENCHMARK(bm_shards_for)->Arg(10)->Arg(1000)->Arg(100'000);

// Micro-benchmarks of the SSE frame builders: plain and JSON-object payloads of 64 B to 1 MiB,
// as a string (build_sse_frame) and built in place in a frame (make_sse_frame, the redis
// thread's path). 1 MiB is past limits::small_json_bytes: its JSON buffers are allocated and
// freed per message.
#include <benchmark/benchmark.h>

#include <string>

#include "core/sse_frame.h"

namespace {

// Printable text of `size` bytes with a line end every 80 bytes, like a log or a message body.
std::string plain_payload(std::size_t size) {
    std::string p;
    p.reserve(size);
    for (std::size_t i = 0; p.size() < size; ++i) p.push_back(i % 80 == 79 ? '\n' : 'a' + i % 26);
    return p;
}

// A JSON object of `size` bytes carrying event and id members, on one line.
std::string json_payload(std::size_t size) {
    std::string p = R"({"event":"update","id":12345,"body":")";
    const std::string tail = "\"}";
    while (p.size() + tail.size() < size) p.push_back('a' + p.size() % 26);
    return p + tail;
}

void bm_plain(benchmark::State& state) {
    const std::string payload = plain_payload(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        std::string frame = jugglite::build_sse_frame(payload);
        benchmark::DoNotOptimize(frame.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
}

void bm_json(benchmark::State& state) {
    const std::string payload = json_payload(static_cast<std::size_t>(state.range(0)));
    if (jugglite::build_sse_frame(payload).rfind("event: update\nid: 12345\n", 0) != 0)
        state.SkipWithError("JSON payload did not yield event and id lines");
    for (auto _ : state) {
        std::string frame = jugglite::build_sse_frame(payload);
        benchmark::DoNotOptimize(frame.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
}

void bm_frame_plain(benchmark::State& state) {
    const std::string payload = plain_payload(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        jugglite::frame_ref frame = jugglite::make_sse_frame(payload, 1);
        benchmark::DoNotOptimize(frame.get());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
}

void bm_frame_json(benchmark::State& state) {
    const std::string payload = json_payload(static_cast<std::size_t>(state.range(0)));
    if (!jugglite::make_sse_frame(payload, 1)->bytes().starts_with("event: update\nid: 12345\n"))
        state.SkipWithError("JSON payload did not yield event and id lines");
    for (auto _ : state) {
        jugglite::frame_ref frame = jugglite::make_sse_frame(payload, 1);
        benchmark::DoNotOptimize(frame.get());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload.size()));
}

}  // namespace

BENCHMARK(bm_plain)->Arg(64)->Arg(1024)->Arg(64 * 1024)->Arg(1024 * 1024);
BENCHMARK(bm_json)->Arg(64)->Arg(1024)->Arg(64 * 1024)->Arg(1024 * 1024);
BENCHMARK(bm_frame_plain)->Arg(64)->Arg(1024)->Arg(64 * 1024)->Arg(1024 * 1024);
BENCHMARK(bm_frame_json)->Arg(64)->Arg(1024)->Arg(64 * 1024)->Arg(1024 * 1024);

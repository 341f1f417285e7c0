// Tests for frame and frame_ref: building in place, bytes, sequence numbers, reference counts.
#include "core/frame.h"

#include <doctest/doctest.h>

#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace jugglite;
using namespace std::string_literals;

TEST_CASE("frame_ref::make copies the bytes and keeps the sequence number") {
    std::string src = "data: x\0y\xff\n\n"s;
    frame_ref f = frame_ref::make(src, 42);
    src.assign(src.size(), '#');  // the frame owns its own copy
    REQUIRE(f);
    CHECK(f->bytes() == "data: x\0y\xff\n\n"s);
    CHECK(f->size() == 12);
    CHECK(f->seq() == 42);
    CHECK(frame_ref::make("a")->seq() == 0);
}

TEST_CASE("frame_ref::build hands the writer exactly the frame's bytes, once") {
    int calls = 0;
    frame_ref f = frame_ref::build(5, 7, [&calls](std::span<char> out) {
        ++calls;
        CHECK(out.size() == 5);
        std::memcpy(out.data(), "ab\0cd", 5);
    });
    CHECK(calls == 1);
    REQUIRE(f);
    CHECK(f->bytes() == "ab\0cd"s);
    CHECK(f->size() == 5);
    CHECK(f->seq() == 7);
    CHECK(f.use_count() == 1);
    frame_ref empty = frame_ref::build(0, 1, [](std::span<char> out) { CHECK(out.empty()); });
    CHECK(empty->bytes().empty());
}

TEST_CASE("frame_ref::build passes on what the writer throws and refuses more than 4 GiB") {
    CHECK_THROWS_AS(
        (void)frame_ref::build(3, 0, [](std::span<char>) { throw std::runtime_error("w"); }),
        std::runtime_error);
    bool called = false;
    // Refused before anything is allocated, as a bad_alloc the frame's builders already handle.
    CHECK_THROWS_AS((void)frame_ref::build(std::size_t{1} << 32, 0,
                                           [&called](std::span<char>) { called = true; }),
                    std::bad_alloc);
    CHECK(!called);
}

TEST_CASE("an empty frame is valid and empty") {
    frame_ref f = frame_ref::make("");
    REQUIRE(f);
    CHECK(f->size() == 0);
    CHECK(f->bytes().empty());
    CHECK(f.use_count() == 1);
}

TEST_CASE("a default frame_ref holds nothing") {
    frame_ref f;
    CHECK(!f);
    CHECK(f.get() == nullptr);
    CHECK(f.use_count() == 0);
    f.reset();  // harmless
    CHECK(!f);
}

TEST_CASE("copies share the frame and count references") {
    frame_ref a = frame_ref::make("hello");
    CHECK(a.use_count() == 1);
    {
        frame_ref b = a;
        CHECK(a.use_count() == 2);
        CHECK(b.get() == a.get());
        frame_ref c;
        c = b;
        CHECK(a.use_count() == 3);
        CHECK(c->bytes() == "hello");
    }
    CHECK(a.use_count() == 1);
}

TEST_CASE("moves transfer the reference without counting") {
    frame_ref a = frame_ref::make("m");
    const frame* raw = a.get();
    frame_ref b = std::move(a);
    CHECK(!a);
    CHECK(b.get() == raw);
    CHECK(b.use_count() == 1);
    frame_ref c;
    c = std::move(b);
    CHECK(!b);
    CHECK(c.use_count() == 1);
}

TEST_CASE("assignment releases the previous frame") {
    frame_ref keep_x = frame_ref::make("x");
    frame_ref keep_y = frame_ref::make("y");
    frame_ref h = keep_x;
    CHECK(keep_x.use_count() == 2);
    h = keep_y;
    CHECK(keep_x.use_count() == 1);
    CHECK(keep_y.use_count() == 2);
    h = h;  // self-assignment keeps the count
    CHECK(keep_y.use_count() == 2);
    h.reset();
    CHECK(!h);
    CHECK(keep_y.use_count() == 1);
}

TEST_CASE("references dropped concurrently from several threads balance out") {
    frame_ref f = frame_ref::make("fan-out");
    constexpr int threads = 4, per_thread = 10'000;
    std::vector<std::vector<frame_ref>> held(threads);
    for (auto& v : held) v.assign(per_thread, f);
    CHECK(f.use_count() == 1 + threads * per_thread);
    std::vector<std::thread> pool;
    for (auto& v : held) pool.emplace_back([&v] { v.clear(); });
    for (auto& t : pool) t.join();
    CHECK(f.use_count() == 1);
}

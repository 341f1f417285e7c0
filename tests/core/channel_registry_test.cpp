// Tests for channel_registry (add, swap-remove, find).
#include "core/channel_registry.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace jugglite;

namespace {

bool same(const subscriber& a, const subscriber& b) {
    return a.conn == b.conn && a.slot_in_conn == b.slot_in_conn;
}

}  // namespace

TEST_CASE("channel_registry: only the first subscriber of a channel is first") {
    channel_registry reg;
    CHECK(reg.size() == 0);
    CHECK(reg.find("a") == nullptr);

    auto a1 = reg.add("a", {1, 0});
    CHECK(a1.first);
    CHECK(a1.pos == 0);
    REQUIRE(a1.entry != nullptr);
    CHECK(a1.entry->name == "a");

    auto a2 = reg.add("a", {2, 3});
    CHECK(!a2.first);
    CHECK(a2.pos == 1);
    CHECK(a2.entry == a1.entry);

    auto b1 = reg.add("b", {1, 1});
    CHECK(b1.first);
    CHECK(b1.pos == 0);
    CHECK(b1.entry != a1.entry);

    CHECK(reg.size() == 2);
    CHECK(reg.find("a") == a1.entry);
    CHECK(reg.find("b") == b1.entry);
    CHECK(reg.find("c") == nullptr);
    CHECK(reg.find("A") == nullptr);  // names are case-sensitive

    const auto& subs = reg.find("a")->subscribers;
    REQUIRE(subs.size() == 2);
    CHECK(same(subs[0], {1, 0}));
    CHECK(same(subs[1], {2, 3}));
}

TEST_CASE("channel_registry: remove swaps the last subscriber into the hole and reports it") {
    channel_registry reg;
    auto first = reg.add("news", {10, 0});
    (void)reg.add("news", {11, 1});
    (void)reg.add("news", {12, 2});
    channel_entry* e = first.entry;

    auto r = reg.remove(e, 0);
    CHECK(!r.last);
    REQUIRE(r.moved.has_value());
    CHECK(same(*r.moved, {12, 2}));
    REQUIRE(e->subscribers.size() == 2);
    CHECK(same(e->subscribers[0], {12, 2}));
    CHECK(same(e->subscribers[1], {11, 1}));

    // Removing the last position moves nobody.
    auto r2 = reg.remove(e, 1);
    CHECK(!r2.last);
    CHECK(!r2.moved.has_value());
    REQUIRE(e->subscribers.size() == 1);
    CHECK(same(e->subscribers[0], {12, 2}));
    CHECK(reg.find("news") == e);

    auto r3 = reg.remove(e, 0);
    CHECK(r3.last);
    CHECK(!r3.moved.has_value());
    CHECK(reg.find("news") == nullptr);
    CHECK(reg.size() == 0);

    // The channel comes back fresh.
    auto again = reg.add("news", {13, 0});
    CHECK(again.first);
    CHECK(again.pos == 0);
}

TEST_CASE("channel_registry: other channels are untouched by a remove") {
    channel_registry reg;
    auto a = reg.add("a", {1, 0});
    auto b = reg.add("b", {1, 1});
    auto r = reg.remove(a.entry, a.pos);
    CHECK(r.last);
    CHECK(reg.size() == 1);
    CHECK(reg.find("b") == b.entry);
    REQUIRE(b.entry->subscribers.size() == 1);
    CHECK(same(b.entry->subscribers[0], {1, 1}));
}

TEST_CASE("channel_registry: positions stay consistent through many swap-removes") {
    // Mirror of what a shard does: every connection remembers its position and updates
    // it when a remove reports that it moved.
    channel_registry reg;
    constexpr std::uint32_t n = 500;
    std::vector<std::uint32_t> pos_of(n);
    channel_entry* e = nullptr;
    for (std::uint32_t c = 0; c < n; ++c) {
        auto added = reg.add("hot", {c, 0});
        pos_of[c] = added.pos;
        e = added.entry;
    }
    // Remove every third connection, then the rest, checking positions after each step.
    std::vector<std::uint32_t> order;
    for (std::uint32_t c = 0; c < n; c += 3) order.push_back(c);
    for (std::uint32_t c = 0; c < n; ++c)
        if (c % 3) order.push_back(c);
    std::size_t left = n;
    for (std::uint32_t c : order) {
        auto r = reg.remove(e, pos_of[c]);
        --left;
        if (r.moved) pos_of[r.moved->conn] = pos_of[c];
        CHECK(r.last == (left == 0));
        if (left == 0) break;
        REQUIRE(e->subscribers.size() == left);
        bool consistent = true;
        for (std::uint32_t i = 0; i < e->subscribers.size(); ++i)
            consistent &= pos_of[e->subscribers[i].conn] == i;
        CHECK(consistent);
    }
    CHECK(reg.find("hot") == nullptr);
}

TEST_CASE("channel_registry: entries stay put while other channels come and go") {
    channel_registry reg;
    auto a = reg.add("stable", {0, 0});
    for (std::uint32_t i = 0; i < 5000; ++i) (void)reg.add(std::to_string(i), {i, 0});
    CHECK(reg.find("stable") == a.entry);
    CHECK(a.entry->name == "stable");
    CHECK(reg.size() == 5001);
}

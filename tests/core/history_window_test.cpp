// Tests for the in-memory history windows: exact coverage learned from previous ids and
// from reads, gaps, catch-ups, and the byte and length bounds.
#include "core/history_window.h"

#include <doctest/doctest.h>

#include "core/sse_frame.h"

using namespace jugglite;

namespace {

stream_id id(std::uint64_t ms, std::uint64_t seq = 0) { return {ms, seq}; }

history_entry entry(stream_id i, std::string_view payload = "x") {
    return {i, make_sse_frame(payload, 0, {i, false})};
}

std::vector<stream_id> ids_of(const std::vector<history_entry>& v) {
    std::vector<stream_id> out;
    for (const auto& e : v) out.push_back(e.id);
    return out;
}

std::vector<stream_id> collect(const history_window& w, stream_id from, stream_id upto = id(UINT64_MAX)) {
    std::vector<history_entry> out;
    w.collect(from, upto, out);
    return ids_of(out);
}

stream_read read_of(stream_id from, std::vector<stream_id> ids, std::optional<stream_id> first_previous) {
    stream_read r;
    r.from = from;
    for (auto i : ids) r.entries.push_back(entry(i));
    r.first_previous = first_previous;
    return r;
}

}  // namespace

TEST_CASE("a window learns its base from the first message's previous id") {
    history_windows w(1 << 20, 100);
    CHECK(w.find("a") == nullptr);
    CHECK(w.on_live("a", entry(id(10)), id(5)) == history_windows::fit::appended);
    const history_window* a = w.find("a");
    REQUIRE(a);
    CHECK(a->status() == history_window::state::known);
    CHECK(a->base() == id(5));
    CHECK(a->covers(id(5)));
    CHECK(a->covers(id(7)));   // no entry between 5 and 10: nothing after 7 is missing
    CHECK_FALSE(a->covers(id(4)));
    CHECK(w.on_live("a", entry(id(11)), id(10)) == history_windows::fit::appended);
    CHECK(collect(*a, id(5)) == std::vector{id(10), id(11)});
    CHECK(collect(*a, id(10)) == std::vector{id(11)});
    CHECK(collect(*a, id(5), id(10)) == std::vector{id(10)});
    // The first message a channel ever had carries no previous id: everything is known.
    w.on_live("b", entry(id(3)), std::nullopt);
    CHECK(w.find("b")->covers(id(0, 1)));
}

TEST_CASE("a message whose previous id was not routed is a gap, not appended") {
    history_windows w(1 << 20, 100);
    w.on_live("a", entry(id(10)), id(5));
    CHECK(w.on_live("a", entry(id(30)), id(20)) == history_windows::fit::gap);
    CHECK(w.find("a")->tail() == id(10));
    // The catch-up read from the tail holds 10 (inclusive), 20 and 30.
    auto fresh = w.catch_up("a", read_of(id(10), {id(10), id(20), id(30)}, id(5)));
    CHECK(ids_of(fresh) == std::vector{id(20), id(30)});
    CHECK(collect(*w.find("a"), id(5)) == std::vector{id(10), id(20), id(30)});
    CHECK(w.find("a")->covers(id(5)));
}

TEST_CASE("a catch-up whose tail was trimmed restarts the window at what the read holds") {
    history_windows w(1 << 20, 100);
    w.on_live("a", entry(id(10)), id(5));
    w.link_lost();
    CHECK(w.find("a")->status() == history_window::state::stale);
    CHECK_FALSE(w.find("a")->covers(id(5)));
    CHECK(w.stale_channels() == std::vector<std::string>{"a"});
    // The stream now starts at 40, whose previous (30) is after the tail: 20 and 30 are gone.
    auto fresh = w.catch_up("a", read_of(id(10), {id(40), id(50)}, id(30)));
    CHECK(ids_of(fresh) == std::vector{id(40), id(50)});
    const history_window* a = w.find("a");
    CHECK(a->status() == history_window::state::known);
    CHECK(a->base() == id(30));
    CHECK_FALSE(a->covers(id(10)));
    CHECK(a->covers(id(30)));
}

TEST_CASE("one channel's window goes stale when its own link is lost, the others stay known") {
    history_windows w(1 << 20, 100);
    w.on_live("a", entry(id(10)), id(5));
    w.on_live("b", entry(id(11)), id(6));
    w.missed("a");
    w.missed("nobody");  // no window: nothing to do
    CHECK(w.find("a")->status() == history_window::state::stale);
    CHECK_FALSE(w.find("a")->covers(id(5)));
    CHECK(w.find("b")->covers(id(6)));
    CHECK(w.stale_channels() == std::vector<std::string>{"a"});
}

TEST_CASE("a read seeds an unknown window and extends a known one backwards") {
    history_windows w(1 << 20, 100);
    // Unknown: the read from 10 (which still exists) is the whole history after 10.
    w.seed("a", read_of(id(10), {id(10), id(20), id(30)}, id(5)), id(30));
    const history_window* a = w.find("a");
    CHECK(a->base() == id(10));
    CHECK(collect(*a, id(0)) == std::vector{id(20), id(30)});
    // A read from further back, whose first entry names nothing before it (the stream's first).
    w.seed("a", read_of(id(1), {id(2), id(10), id(20), id(30)}, std::nullopt), id(30));
    CHECK(a->base() == id(0));
    CHECK(collect(*a, id(0)) == std::vector{id(2), id(10), id(20), id(30)});
    // A read that does not reach the window's base adds nothing.
    history_windows v(1 << 20, 100);
    v.on_live("b", entry(id(50)), id(40));
    v.seed("b", read_of(id(1), {id(2), id(3)}, std::nullopt), id(3));
    CHECK(v.find("b")->base() == id(40));
    // An empty read vouches for nothing.
    v.seed("c", read_of(id(1), {}, std::nullopt), id(3));
    CHECK(v.find("c") == nullptr);
}

TEST_CASE("a stream that went back restarts the window") {
    history_windows w(1 << 20, 100);
    w.on_live("a", entry(id(100)), id(90));
    CHECK(w.on_live("a", entry(id(7)), std::nullopt) == history_windows::fit::appended);
    CHECK(w.find("a")->base() == id(0));
    CHECK(collect(*w.find("a"), id(0)) == std::vector{id(7)});
}

TEST_CASE("windows are bounded by length per channel and by bytes overall, oldest first") {
    history_windows byLength(1 << 20, 3);
    for (std::uint64_t i = 1; i <= 5; ++i) byLength.on_live("a", entry(id(i)), i > 1 ? std::optional(id(i - 1)) : std::nullopt);
    CHECK(byLength.find("a")->size() == 3);
    CHECK(byLength.find("a")->base() == id(2));
    CHECK(byLength.evicted() == 2);

    const std::string payload(1000, 'p');
    const std::size_t one = sizeof(history_entry) + sizeof(frame) + entry(id(1), payload).frame->size();
    history_windows byBytes(one * 4, 100);
    byBytes.on_live("a", entry(id(1), payload), std::nullopt);
    byBytes.on_live("b", entry(id(2), payload), std::nullopt);
    byBytes.on_live("a", entry(id(3), payload), id(1));
    byBytes.on_live("b", entry(id(4), payload), id(2));
    CHECK(byBytes.bytes() == one * 4);
    CHECK(byBytes.evicted() == 0);
    byBytes.on_live("a", entry(id(5), payload), id(3));
    // The globally oldest entry (1, on a) went; a's base moved past it.
    CHECK(byBytes.evicted() == 1);
    CHECK(byBytes.find("a")->base() == id(1));
    CHECK(byBytes.find("b")->base() == id(0));
    byBytes.on_live("a", entry(id(6), payload), id(5));
    CHECK(byBytes.find("b")->base() == id(2));  // then b's 2
    byBytes.forget("a");
    CHECK(byBytes.find("a") == nullptr);
    CHECK(byBytes.bytes() == one);
}

TEST_CASE("a restart begins the window again at a message, past a gap") {
    history_windows w(1 << 20, 100);
    w.on_live("a", entry(id(10)), id(5));
    CHECK(w.on_live("a", entry(id(30)), id(20)) == history_windows::fit::gap);
    w.restart("a", entry(id(30)), id(20));
    const history_window* a = w.find("a");
    CHECK(a->base() == id(20));
    CHECK(collect(*a, id(0)) == std::vector{id(30)});
    CHECK_FALSE(a->covers(id(10)));
}

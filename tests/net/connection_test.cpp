// Tests for connection's send queue: enqueue and its cap, plan_send, consume, drop_pending; no I/O.
#include "net/connection.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace jugglite;

namespace {

constexpr std::size_t no_cap = SIZE_MAX;

// The bytes a plan asks to write, concatenated.
std::string planned_bytes(const send_plan& p) {
    if (p.msg == nullptr) return std::string(p.data, p.len);
    std::string out;
    for (std::size_t i = 0; i < p.msg->msg_iovlen; ++i)
        out.append(static_cast<const char*>(p.msg->msg_iov[i].iov_base), p.msg->msg_iov[i].iov_len);
    return out;
}

std::vector<std::string> planned_pieces(const send_plan& p) {
    REQUIRE(p.msg != nullptr);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < p.msg->msg_iovlen; ++i)
        out.emplace_back(static_cast<const char*>(p.msg->msg_iov[i].iov_base),
                         p.msg->msg_iov[i].iov_len);
    return out;
}

void enqueue_all(connection& c, std::initializer_list<std::string_view> frames) {
    for (auto f : frames) REQUIRE(c.enqueue(frame_ref::make(f), no_cap));
}

}  // namespace

TEST_CASE("a fresh connection has nothing pending") {
    connection c;
    CHECK(!c.has_pending());
    CHECK(c.unsent_bytes() == 0);
    CHECK(c.state == conn_state::free);
    CHECK(c.drop_pending() == 0);
}

TEST_CASE("one frame is sent with a plain send") {
    connection c;
    enqueue_all(c, {"data: hello\n\n"});
    CHECK(c.has_pending());
    CHECK(c.unsent_bytes() == 13);

    send_plan p = c.plan_send();
    CHECK(c.send_inflight);
    CHECK(p.count == 1);
    CHECK(p.msg == nullptr);
    REQUIRE(p.data != nullptr);
    CHECK(std::string(p.data, p.len) == "data: hello\n\n");

    CHECK(c.consume(13) == 1);
    CHECK(!c.send_inflight);
    CHECK(!c.has_pending());
    CHECK(c.unsent_bytes() == 0);
}

TEST_CASE("several frames are gathered into one sendmsg") {
    connection c;
    enqueue_all(c, {"ab", "cde", "f"});
    CHECK(c.unsent_bytes() == 6);
    send_plan p = c.plan_send();
    CHECK(p.count == 3);
    REQUIRE(p.msg != nullptr);
    CHECK(p.data == nullptr);
    CHECK(p.msg->msg_iovlen == 3);
    CHECK(p.msg->msg_name == nullptr);
    CHECK(p.msg->msg_control == nullptr);
    CHECK(planned_pieces(p) == std::vector<std::string>{"ab", "cde", "f"});
    CHECK(c.consume(6) == 3);
    CHECK(!c.has_pending());
    CHECK(c.unsent_bytes() == 0);
}

TEST_CASE("a short write of a single frame resumes where it stopped") {
    connection c;
    enqueue_all(c, {"hello"});
    (void)c.plan_send();
    CHECK(c.consume(2) == 0);
    CHECK(c.has_pending());
    CHECK(c.unsent_bytes() == 3);
    send_plan p = c.plan_send();
    CHECK(p.count == 1);
    CHECK(std::string(p.data, p.len) == "llo");
    CHECK(c.consume(3) == 1);
    CHECK(!c.has_pending());
}

TEST_CASE("short writes across frame boundaries") {
    connection c;
    enqueue_all(c, {"abc", "defg", "hi"});

    send_plan p1 = c.plan_send();
    CHECK(planned_bytes(p1) == "abcdefghi");
    CHECK(c.consume(2) == 0);  // inside the first frame
    CHECK(c.unsent_bytes() == 7);

    send_plan p2 = c.plan_send();
    CHECK(p2.count == 3);
    CHECK(planned_pieces(p2) == std::vector<std::string>{"c", "defg", "hi"});
    CHECK(c.consume(3) == 1);  // finishes "c", then two bytes of "defg"
    CHECK(c.unsent_bytes() == 4);

    send_plan p3 = c.plan_send();
    CHECK(p3.count == 2);
    CHECK(planned_pieces(p3) == std::vector<std::string>{"fg", "hi"});
    CHECK(c.consume(2) == 1);  // ends exactly on a frame boundary
    CHECK(c.unsent_bytes() == 2);

    send_plan p4 = c.plan_send();
    CHECK(p4.count == 1);
    CHECK(p4.msg == nullptr);
    CHECK(std::string(p4.data, p4.len) == "hi");
    CHECK(c.consume(2) == 1);
    CHECK(!c.has_pending());
}

TEST_CASE("one write can complete several frames and stop inside the next") {
    connection c;
    enqueue_all(c, {"11", "22", "33", "44"});
    (void)c.plan_send();
    CHECK(c.consume(5) == 2);
    CHECK(c.unsent_bytes() == 3);
    send_plan p = c.plan_send();
    CHECK(planned_pieces(p) == std::vector<std::string>{"3", "44"});
    CHECK(c.consume(3) == 2);
    CHECK(!c.has_pending());
}

TEST_CASE("a send covers at most max_iov_per_send frames") {
    connection c;
    constexpr std::size_t total = limits::max_iov_per_send + 36;
    std::string all;
    for (std::size_t i = 0; i < total; ++i) {
        std::string f = "frame " + std::to_string(i) + "\n";
        all += f;
        REQUIRE(c.enqueue(frame_ref::make(f), no_cap));
    }
    CHECK(c.unsent_bytes() == all.size());

    send_plan p = c.plan_send();
    CHECK(p.count == limits::max_iov_per_send);
    REQUIRE(p.msg != nullptr);
    CHECK(p.msg->msg_iovlen == limits::max_iov_per_send);
    std::string first = planned_bytes(p);
    CHECK(all.starts_with(first));
    CHECK(c.consume(first.size()) == limits::max_iov_per_send);

    send_plan rest = c.plan_send();
    CHECK(rest.count == 36);
    CHECK(first + planned_bytes(rest) == all);
    CHECK(c.consume(all.size() - first.size()) == 36);
    CHECK(!c.has_pending());
}

TEST_CASE("frames enqueued while a send is in flight keep the plan valid and follow it") {
    connection c;
    enqueue_all(c, {"one", "two"});
    send_plan p = c.plan_send();
    // Grow the queue a lot so its storage moves; the plan must still point at live bytes.
    for (int i = 0; i < 1000; ++i) REQUIRE(c.enqueue(frame_ref::make("x"), no_cap));
    CHECK(planned_pieces(p) == std::vector<std::string>{"one", "two"});
    CHECK(c.consume(6) == 2);
    CHECK(c.unsent_bytes() == 1000);
    std::string sent;
    while (c.has_pending()) {
        send_plan q = c.plan_send();
        std::string b = planned_bytes(q);
        sent += b;
        CHECK(c.consume(b.size()) == q.count);
    }
    CHECK(sent == std::string(1000, 'x'));
}

TEST_CASE("byte-at-a-time writes through a long queue keep every byte in order") {
    // Long enough that consume compacts the queue on the way.
    connection c;
    std::string all;
    for (int i = 0; i < 300; ++i) {
        std::string f = std::to_string(i) + ";";
        all += f;
        REQUIRE(c.enqueue(frame_ref::make(f), no_cap));
    }
    std::string sent;
    std::uint32_t frames_done = 0;
    while (c.has_pending()) {
        send_plan p = c.plan_send();
        std::string b = planned_bytes(p);
        REQUIRE(!b.empty());
        sent += b.front();
        frames_done += c.consume(1);
        CHECK(c.unsent_bytes() == all.size() - sent.size());
    }
    CHECK(sent == all);
    CHECK(frames_done == 300);
}

TEST_CASE("the connection holds one reference per queued frame and drops it when sent") {
    connection c;
    frame_ref f = frame_ref::make("shared");
    REQUIRE(c.enqueue(f, no_cap));
    REQUIRE(c.enqueue(f, no_cap));
    CHECK(f.use_count() == 3);
    (void)c.plan_send();
    CHECK(c.consume(6) == 1);
    CHECK(f.use_count() == 2);
    (void)c.plan_send();
    CHECK(c.consume(6) == 1);
    CHECK(f.use_count() == 1);
}

TEST_CASE("a connection with nothing queued takes a frame larger than the cap") {
    connection c;
    constexpr std::size_t cap = 1024 * 1024;
    frame_ref big = frame_ref::make(std::string(2 * 1024 * 1024, 'b'));
    CHECK(c.enqueue(big, cap));
    CHECK(c.pending_bytes() == 0);
    CHECK(c.unsent_bytes() == 2 * 1024 * 1024);
    // Small frames queue behind it up to the cap.
    CHECK(c.enqueue(frame_ref::make("small"), cap));
    CHECK(c.pending_bytes() == 5);
}

TEST_CASE("two 600 KB frames fit a 1 MiB cap, a third is refused") {
    connection c;
    constexpr std::size_t cap = 1024 * 1024;
    frame_ref f = frame_ref::make(std::string(600 * 1000, 'm'));
    CHECK(c.enqueue(f, cap));
    CHECK(c.enqueue(f, cap));
    CHECK(c.pending_bytes() == 600 * 1000);
    CHECK(!c.enqueue(f, cap));
    CHECK(c.pending_bytes() == 1'200'000);
}

TEST_CASE("the head frame never counts against the cap, partly sent or not") {
    connection c;
    frame_ref head = frame_ref::make(std::string(20, 'h'));
    frame_ref six = frame_ref::make("123456");
    frame_ref four = frame_ref::make("abcd");
    frame_ref one = frame_ref::make("z");
    CHECK(c.enqueue(head, 10));
    CHECK(c.enqueue(six, 10));
    CHECK(c.enqueue(four, 10));  // exactly at the cap is fine
    CHECK(c.pending_bytes() == 10);
    CHECK(c.unsent_bytes() == 30);
    // A send covering all three frames leaves the backlog as it was, and so does a short
    // write inside the head frame.
    send_plan p = c.plan_send();
    CHECK(p.count == 3);
    CHECK(c.consume(15) == 0);
    CHECK(c.pending_bytes() == 10);
    CHECK(c.unsent_bytes() == 15);
    // Finishing the head frame makes the next one the head: it stops counting.
    (void)c.plan_send();
    CHECK(c.consume(7) == 1);  // the head's last 5 bytes and 2 bytes of "123456"
    CHECK(c.pending_bytes() == 4);
    CHECK(c.enqueue(frame_ref::make("123456"), 10));
    CHECK(c.pending_bytes() == 10);
}

TEST_CASE("enqueue reports the backlog past the cap but still holds the frame") {
    connection c;
    frame_ref one = frame_ref::make("z");
    REQUIRE(c.enqueue(frame_ref::make("head"), 10));
    REQUIRE(c.enqueue(frame_ref::make("0123456789"), 10));
    CHECK(!c.enqueue(one, 10));
    CHECK(c.pending_bytes() == 11);
    CHECK(c.unsent_bytes() == 15);
    CHECK(one.use_count() == 2);
    // Sending brings the backlog back under the cap.
    (void)c.plan_send();
    CHECK(c.consume(4) == 1);
    CHECK(c.pending_bytes() == 1);
    CHECK(c.enqueue(frame_ref::make("123456789"), 10));
    CHECK(!c.enqueue(frame_ref::make("!"), 10));
}

TEST_CASE("drop_pending releases every queued frame, including a partly sent one") {
    connection c;
    frame_ref f = frame_ref::make("abcdef");
    for (int i = 0; i < 3; ++i) REQUIRE(c.enqueue(f, no_cap));
    CHECK(f.use_count() == 4);
    (void)c.plan_send();
    CHECK(c.consume(8) == 1);  // one frame done, two bytes into the next
    CHECK(c.drop_pending() == 2);
    CHECK(!c.has_pending());
    CHECK(c.unsent_bytes() == 0);
    CHECK(f.use_count() == 1);
    CHECK(c.drop_pending() == 0);

    // The queue works normally afterwards, starting from the first byte of a new frame.
    enqueue_all(c, {"new"});
    send_plan p = c.plan_send();
    CHECK(std::string(p.data, p.len) == "new");
    CHECK(c.consume(3) == 1);
}

TEST_CASE("open starts a read deadline, reset frees everything and bumps the generation") {
    connection c;
    c.open(1'000);
    CHECK(c.state == conn_state::reading);
    CHECK(c.deadline_ms == 1'000 + limits::request_timeout.count());
    CHECK(c.last_write_ms == 1'000);
    CHECK(!c.send_inflight);

    frame_ref f = frame_ref::make("q");
    REQUIRE(c.enqueue(f, no_cap));
    c.request = "GET / HTTP/1.1\r\n";
    const auto gen = c.gen;
    c.reset();
    CHECK(c.gen == gen + 1);
    CHECK(c.state == conn_state::free);
    CHECK(!c.has_pending());
    CHECK(c.unsent_bytes() == 0);
    CHECK(c.request.empty());
    CHECK(c.channels.empty());
    CHECK(f.use_count() == 1);
}

// Messages larger than --max-pending: a connection with nothing queued takes one whole, and
// the cap bounds only the backlog behind it, so nobody is dropped for one large message.
#include <doctest/doctest.h>
#include <sys/ioctl.h>

#include <functional>
#include <thread>

#include "support/sse.h"

using namespace test;

namespace {

// A counter from /metrics, asked over a fresh connection from `connect`.
long long metric(const std::function<raw_client()>& connect, std::string_view name) {
    raw_client c = connect();
    c.get("/metrics");
    c.read_until_closed(5s);
    return metric_in(c.received(), name);
}

// `size` bytes of printable text, no line ends, that changes every byte so a lost or
// reordered piece shows.
std::string filler(std::size_t size, char seed) {
    std::string s(size, ' ');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
    return s;
}

// Three streams on one fresh channel, each opened by `connect`, all confirmed by Redis.
struct three_subscribers {
    explicit three_subscribers(const std::function<raw_client()>& connect)
        : channel(unique_channel("large")) {
        for (int i = 0; i < 3; ++i) {
            raw_client c = connect();
            c.get("/stream?channel=" + channel);
            REQUIRE(c.read_until(": registered to channels: " + channel + "\n"));
            streams.push_back(std::move(c));
        }
    }
    std::string channel;
    std::vector<raw_client> streams;
};

// Bytes waiting in a client's receive queue, not read yet.
int unread_bytes(const raw_client& c) {
    int n = -1;
    ::ioctl(c.fd(), FIONREAD, &n);
    return n;
}

}  // namespace

TEST_CASE("large messages: a 2 MB message and the next one reach all 3 subscribers, none dropped") {
    jugglite_server server;  // default --max-pending: 1 MiB
    auto connect = [&server] { return raw_client::tcp(server.port()); };
    redis_client redis(shared_redis().port());
    three_subscribers subs(connect);
    REQUIRE(wait_numsub(redis, subs.channel));

    // A JSON object with its event and id after a 2 MB member: the whole document is read.
    const std::string big =
        R"({"blob":")" + filler(2 * 1024 * 1024, 0) + R"(","event":"big","id":7})";
    CHECK(redis.publish(subs.channel, big) == 1);
    CHECK(redis.publish(subs.channel, "small") == 1);

    const std::string expected = ": registered to channels: " + subs.channel + "\n" +
                                 "event: big\nid: 7\ndata: " + big + "\n\n" + "data: small\n\n";
    for (raw_client& c : subs.streams) {
        CHECK(c.read_until("data: small\n\n", 20s));
        CHECK(c.body().size() == expected.size());
        CHECK((c.body() == expected));  // not decomposed: megabytes of text on failure
        CHECK_FALSE(c.closed());
    }
    CHECK(metric(connect, "jugglite_slow_consumers_total") == 0);
    for (raw_client& c : subs.streams) CHECK_FALSE(c.read_until_closed(200ms));
}

TEST_CASE("large messages: two 600 KB messages back to back reach all 3 subscribers") {
    // Over a unix socket the kernel holds only about 200 KB per connection (no autotuning
    // to megabytes as on loopback TCP), so what is still queued in jugglite is known.
    const std::string path = temp_dir() + "/j.sock";
    jugglite_server server({"--socket", path});  // default --max-pending: 1 MiB
    auto connect = [&path] { return raw_client::unix_socket(path); };
    redis_client redis(shared_redis().port());
    three_subscribers subs(connect);
    REQUIRE(wait_numsub(redis, subs.channel));

    // The subscribers are a little behind: an earlier message sits unread in their sockets,
    // fully written, so the first 600 KB message is still being written when the second is
    // queued behind it. Together they pass the cap; the second alone does not.
    const std::string earlier = filler(150'000, 0);
    CHECK(redis.publish(subs.channel, earlier) == 1);
    const int earlier_frame = static_cast<int>(earlier.size() + 8);
    for (raw_client& c : subs.streams)
        REQUIRE(eventually([&c, earlier_frame] { return unread_bytes(c) == earlier_frame; }));
    std::this_thread::sleep_for(100ms);  // the shard sees those sends complete

    const std::string first = filler(600'000, 1);
    const std::string second = filler(600'000, 2);
    CHECK(redis.publish(subs.channel, first) == 1);
    CHECK(redis.publish(subs.channel, second) == 1);

    const std::string expected = ": registered to channels: " + subs.channel + "\n" + "data: " +
                                 earlier + "\n\n" + "data: " + first + "\n\n" + "data: " +
                                 second + "\n\n";
    for (raw_client& c : subs.streams) {
        CHECK(c.read_until(second.substr(second.size() - 64) + "\n\n", 20s));
        CHECK(c.body().size() == expected.size());
        CHECK((c.body() == expected));  // not decomposed: megabytes of text on failure
        CHECK_FALSE(c.closed());
    }
    CHECK(metric(connect, "jugglite_slow_consumers_total") == 0);
}

TEST_CASE("large messages: --max-message-bytes range, environment variable and startup line") {
    auto r = run_jugglite({"--max-message-bytes", "1023"});
    CHECK(r.status == 2);
    CHECK(r.output ==
          "jugglite: --max-message-bytes must be between 1024 and 536870912 (got 1023) "
          "(see --help)\n");
    r = run_jugglite({"--max-message-bytes", "536870913"});
    CHECK(r.status == 2);
    r = run_jugglite({}, {"JUGGLITE_MAX_MESSAGE_BYTES=0"});
    CHECK(r.status == 2);
    CHECK(r.output.find("--max-message-bytes must be between 1024") != std::string::npos);
    r = run_jugglite({"--help"});
    CHECK(r.output.find("--max-message-bytes") != std::string::npos);

    jugglite_server defaults;
    CHECK(defaults.log().find("max_message_bytes=16777216 ") != std::string::npos);
    jugglite_server from_env({}, shared_redis().url(), {"JUGGLITE_MAX_MESSAGE_BYTES=4096"});
    CHECK(from_env.log().find("max_message_bytes=4096 ") != std::string::npos);
}

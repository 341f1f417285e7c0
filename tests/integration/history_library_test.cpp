// The history library in a real redis-server: FUNCTION LOAD, then FCALL jugglite_publish as
// a publisher would, checked through the stream, the channel and the clock.
#include <doctest/doctest.h>

#include "core/history.h"
#include "support/sse.h"

using namespace test;
using jugglite::history_settings;
using jugglite::parse_envelope;
using jugglite::stream_id;

namespace {

void load(redis_client& redis, const history_settings& s) {
    std::string reply = redis.command({"FUNCTION", "LOAD", "REPLACE", jugglite::history_library(s)});
    REQUIRE(reply == "jugglite");
}

}  // namespace

TEST_CASE("FCALL jugglite_publish appends, publishes an envelope and returns the id") {
    history_settings s;
    s.prefix = unique_channel("hist") + ":";
    redis_client redis(shared_redis().port());
    load(redis, s);
    CHECK(redis.command({"FCALL", "jugglite_version", "0"}) == "1");
    auto ch = unique_channel("user:{42}:");
    redis_client listener(shared_redis().port());
    listener.subscribe(ch);

    std::string first = redis.command({"FCALL", "jugglite_publish", "1", ch, "one"});
    std::string second = redis.command({"FCALL", "jugglite_publish", "1", ch, "{\"id\":\"app\"}"});
    REQUIRE(stream_id::parse(first));
    REQUIRE(stream_id::parse(second));
    CHECK(*stream_id::parse(first) < *stream_id::parse(second));

    auto m1 = listener.next_message();
    auto e1 = parse_envelope(m1);
    REQUIRE(e1);
    CHECK(e1->id.text() == first);
    CHECK_FALSE(e1->previous);
    CHECK(e1->payload == "one");
    auto m2 = listener.next_message();
    auto e2 = parse_envelope(m2);
    REQUIRE(e2);
    CHECK(e2->id.text() == second);
    REQUIRE(e2->previous);
    CHECK(e2->previous->text() == first);
    CHECK(e2->payload == "{\"id\":\"app\"}");

    std::string key = jugglite::history_key(s, ch);
    CHECK(redis.command({"XLEN", key}) == "2");
    long long pttl = std::stoll(redis.command({"PTTL", key}));
    CHECK(pttl > 0);
    CHECK(pttl <= 3'600'000);
    // A plain PUBLISH on the same channel goes on working, without an envelope.
    redis.publish(ch, "plain");
    CHECK(listener.next_message() == "plain");
}

TEST_CASE("ids order messages across channels, even many within one millisecond") {
    history_settings s;
    s.prefix = unique_channel("hist") + ":";
    redis_client redis(shared_redis().port());
    load(redis, s);
    auto a = unique_channel("a"), b = unique_channel("b{x}");
    std::optional<stream_id> last;
    for (int i = 0; i < 500; ++i) {
        auto id = stream_id::parse(redis.command({"FCALL", "jugglite_publish", "1", i % 2 ? a : b, "m"}));
        REQUIRE(id);
        if (last) CHECK(*last < *id);
        last = id;
    }
    CHECK(redis.command({"XLEN", jugglite::history_key(s, a)}) == "250");
}

TEST_CASE("streams are trimmed to the history length") {
    history_settings s;
    s.prefix = unique_channel("hist") + ":";
    s.length = 10;
    redis_client redis(shared_redis().port());
    load(redis, s);
    auto ch = unique_channel();
    for (int i = 0; i < 1000; ++i) redis.command({"FCALL", "jugglite_publish", "1", ch, "m"});
    // MAXLEN ~ trims whole stream nodes (100 entries by default), never below the length.
    long long len = std::stoll(redis.command({"XLEN", jugglite::history_key(s, ch)}));
    CHECK(len >= 10);
    CHECK(len <= 10 + 100);
}

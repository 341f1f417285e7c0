// Tests for subscription_table: what the redis thread sends, and whom it tells, for each
// shard report and Redis answer.
#include "core/subscription_table.h"

#include <doctest/doctest.h>

#include <algorithm>

using namespace jugglite;
using want = subscription_table::want_result;

namespace {

constexpr std::int64_t grace = 5000;

bool has(const std::vector<std::string>& v, std::string_view s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

TEST_CASE("subscription_table: the first want subscribes, later ones wait or are ready") {
    subscription_table t(grace, 100);
    CHECK(t.want("a", 0, true) == want::subscribe);
    CHECK(t.want("a", 1, true) == want::pending);  // SUBSCRIBE still unanswered
    CHECK(t.shards_for("a") == 0b11);
    CHECK(t.on_subscribed("a") == 0b11);  // both shards hear it is ready
    CHECK(t.want("a", 2, true) == want::ready);
    CHECK(t.shards_for("a") == 0b111);
}

TEST_CASE("subscription_table: unwanted channels are unsubscribed only after the grace period") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true) == want::subscribe);
    REQUIRE(t.on_subscribed("a") == 1);
    t.unwant("a", 0, 1000);
    CHECK(t.shards_for("a") == 0);
    CHECK(t.expire(1000 + grace - 1).empty());
    CHECK(t.expire(1000 + grace) == std::vector<std::string>{"a"});
    CHECK(t.size() == 1);  // kept until Redis answers
    t.on_unsubscribed("a");
    CHECK(t.size() == 0);
}

TEST_CASE("subscription_table: a reload within the grace period costs no command") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true) == want::subscribe);
    REQUIRE(t.on_subscribed("a") == 1);
    t.unwant("a", 0, 1000);
    CHECK(t.want("a", 1, true) == want::ready);
    CHECK(t.expire(1000 + grace).empty());
    // Unwanted again later: the new deadline counts, not the cancelled one.
    t.unwant("a", 1, 3000);
    CHECK(t.expire(1000 + grace).empty());
    CHECK(t.expire(3000 + grace) == std::vector<std::string>{"a"});
}

TEST_CASE("subscription_table: wanted again while the UNSUBSCRIBE is in flight") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true) == want::subscribe);
    REQUIRE(t.on_subscribed("a") == 1);
    t.unwant("a", 0, 0);
    REQUIRE(t.expire(grace).size() == 1);
    CHECK(t.want("a", 0, true) == want::subscribe);  // sent behind the UNSUBSCRIBE
    t.on_unsubscribed("a");                          // the old command's answer
    CHECK(t.size() == 1);
    CHECK(t.on_subscribed("a") == 1);  // now ready
    CHECK(t.want("a", 1, true) == want::ready);
}

TEST_CASE("subscription_table: ready is reported only when the last command is answered") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true) == want::subscribe);
    t.unwant("a", 0, 0);
    REQUIRE(t.expire(grace).size() == 1);  // SUBSCRIBE and UNSUBSCRIBE both in flight
    REQUIRE(t.want("a", 1, true) == want::subscribe);
    CHECK(t.on_subscribed("a") == 0);  // the first SUBSCRIBE: an UNSUBSCRIBE follows it
    t.on_unsubscribed("a");
    CHECK(t.on_subscribed("a") == 0b10);
}

TEST_CASE("subscription_table: a forbidden channel is reported to every shard that wants it") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("bad", 0, true) == want::subscribe);
    REQUIRE(t.want("bad", 1, true) == want::pending);
    CHECK(t.on_refused("bad") == 0b11);
    // The shards drop it and report that; then it is gone.
    t.unwant("bad", 0, 0);
    t.unwant("bad", 1, 0);
    CHECK(t.size() == 0);
    CHECK(t.expire(grace * 2).empty());
    // A later stream asks again: Redis is asked again (its ACL may have changed).
    CHECK(t.want("bad", 0, true) == want::subscribe);
}

TEST_CASE("subscription_table: a refused batch is retried channel by channel") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("ok", 0, true) == want::subscribe);
    REQUIRE(t.want("bad", 0, true) == want::subscribe);
    CHECK(t.on_batch_refused("ok"));
    CHECK(t.on_batch_refused("bad"));
    CHECK(t.on_subscribed("ok") == 1);
    CHECK(t.on_refused("bad") == 1);
}

TEST_CASE("subscription_table: a refused batch is not retried when a later command decides") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true) == want::subscribe);
    t.unwant("a", 0, 0);
    REQUIRE(t.expire(grace).size() == 1);  // UNSUBSCRIBE behind the SUBSCRIBE batch
    CHECK_FALSE(t.on_batch_refused("a"));
    t.on_unsubscribed("a");
    CHECK(t.size() == 0);
}

TEST_CASE("subscription_table: a lost link forgets Redis' state, a new one resubscribes") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true) == want::subscribe);
    REQUIRE(t.want("b", 1, true) == want::subscribe);
    REQUIRE(t.on_subscribed("a") == 1);
    REQUIRE(t.on_subscribed("b") == 2);
    t.unwant("b", 1, 0);  // in its grace period when the link drops
    t.on_link_lost();
    CHECK(t.size() == 1);
    CHECK(t.want("c", 0, false) == want::pending);  // no link: nothing to send yet
    t.unwant("a", 0, 0);
    CHECK(t.want("a", 0, false) == want::pending);
    auto again = t.on_link_up();
    CHECK(again.size() == 2);
    CHECK(has(again, "a"));
    CHECK(has(again, "c"));
    CHECK(t.expire(grace * 10).empty());
    CHECK(t.on_subscribed("a") == 1);
    CHECK(t.want("a", 1, true) == want::ready);
    CHECK(t.want("c", 1, true) == want::pending);
}

TEST_CASE("subscription_table: past max_channels a new channel is refused, known ones are not") {
    subscription_table t(grace, 2);
    REQUIRE(t.want("a", 0, true) == want::subscribe);
    REQUIRE(t.want("b", 0, true) == want::subscribe);
    CHECK(t.want("c", 0, true) == want::over_capacity);
    CHECK(t.size() == 2);
    CHECK(t.shards_for("c") == 0);
    t.unwant("c", 0, 0);  // the shard drops it and reports: nothing to find
    CHECK(t.want("a", 1, true) == want::pending);
    REQUIRE(t.on_subscribed("b") == 1);
    t.unwant("b", 0, 0);
    CHECK(t.want("c", 0, true) == want::over_capacity);  // b still counts in its grace period
    REQUIRE(t.expire(grace).size() == 1);
    t.on_unsubscribed("b");
    CHECK(t.want("c", 0, true) == want::subscribe);
}

// On a cluster each node has a link, and channels live on the link of their slot's node.

TEST_CASE("subscription_table: one link lost leaves the channels of the others subscribed") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true, 1) == want::subscribe);
    REQUIRE(t.want("b", 1, true, 2) == want::subscribe);
    REQUIRE(t.on_subscribed("a", 1) == 0b01);
    REQUIRE(t.on_subscribed("b", 2) == 0b10);
    CHECK(t.load(1) == 1);
    CHECK(t.load(2) == 1);

    auto lost = t.on_link_lost(1);
    REQUIRE(lost.size() == 1);
    CHECK(lost[0] == std::pair<std::string, shard_mask>{"a", 0b01});
    CHECK_FALSE(t.subscribed("a"));
    CHECK(t.subscribed("b"));
    CHECK(t.on_link_up(2).empty());  // nothing on link 2 needs subscribing
    CHECK(t.on_link_up(1) == std::vector<std::string>{"a"});
    CHECK(t.on_subscribed("a", 1) == 0b01);
}

TEST_CASE("subscription_table: a lost link forgets its channels in their grace period and names them") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("kept", 0, true, 1) == want::subscribe);
    REQUIRE(t.want("leaving", 1, true, 1) == want::subscribe);
    REQUIRE(t.want("elsewhere", 1, true, 2) == want::subscribe);
    REQUIRE(t.on_subscribed("kept", 1) == 0b01);
    REQUIRE(t.on_subscribed("leaving", 1) == 0b10);
    REQUIRE(t.on_subscribed("elsewhere", 2) == 0b10);
    t.unwant("leaving", 1, 0);  // in its grace period, still subscribed
    t.unwant("elsewhere", 1, 0);
    std::vector<std::string> forgotten;
    auto lost = t.on_link_lost(1, &forgotten);
    CHECK(lost == std::vector<std::pair<std::string, shard_mask>>{{"kept", 0b01}});
    CHECK(forgotten == std::vector<std::string>{"leaving"});
    CHECK(t.link_of("leaving") == subscription_table::no_link);
    CHECK(t.subscribed("elsewhere"));  // another link's grace channel stays
}

TEST_CASE("subscription_table: answers from a link the channel no longer lives on change nothing") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true, 1) == want::subscribe);
    // The topology moves it to link 2 before link 1 answered.
    auto moved = t.place([](std::string_view) { return subscription_table::link_id{2}; });
    REQUIRE(moved.size() == 1);
    CHECK(moved[0].subscribed_there);  // a SUBSCRIBE was in flight there
    CHECK(t.link_of("a") == 2);
    CHECK(t.on_subscribed("a", 1) == 0);
    CHECK_FALSE(t.subscribed("a"));
    CHECK(t.on_link_up(2) == std::vector<std::string>{"a"});
    CHECK(t.on_subscribed("a", 2) == 0b1);
    CHECK(t.subscribed("a"));
    CHECK(t.load(1) == 0);
    CHECK(t.load(2) == 1);
}

TEST_CASE("subscription_table: a channel that moves is reported, an unwanted one forgotten") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true, 1) == want::subscribe);
    REQUIRE(t.want("b", 1, true, 1) == want::subscribe);
    REQUIRE(t.want("c", 0, true, 1) == want::subscribe);
    REQUIRE(t.on_subscribed("a", 1) == 1);
    REQUIRE(t.on_subscribed("b", 1) == 2);
    REQUIRE(t.on_subscribed("c", 1) == 1);
    t.unwant("b", 1, 0);  // in its grace period
    auto moved = t.place([](std::string_view name) {
        return name == "c" ? subscription_table::link_id{1} : subscription_table::link_id{3};
    });
    REQUIRE(moved.size() == 2);
    std::sort(moved.begin(), moved.end(), [](const auto& x, const auto& y) { return x.name < y.name; });
    CHECK(moved[0].name == "a");
    CHECK(moved[0].shards == 1);
    CHECK(moved[0].from == 1);
    CHECK(moved[0].subscribed_there);
    CHECK(moved[1].name == "b");  // reported with no shards: to unsubscribe where it was
    CHECK(moved[1].shards == 0);
    CHECK(moved[1].subscribed_there);
    CHECK(t.size() == 2);  // b is gone: unsubscribing it on its new node would be pointless
    CHECK(t.expire(grace).empty());
    CHECK(t.subscribed("c"));
    CHECK(t.on_link_up(3) == std::vector<std::string>{"a"});
}

TEST_CASE("subscription_table: a channel whose slot has no node waits, then is subscribed where it lands") {
    subscription_table t(grace, 100);
    CHECK(t.want("a", 0, false, subscription_table::no_link) == want::pending);
    CHECK(t.load(subscription_table::no_link) == 1);
    auto moved = t.place([](std::string_view) { return subscription_table::link_id{4}; });
    CHECK(moved.size() == 1);
    CHECK(t.load(subscription_table::no_link) == 0);
    CHECK(t.on_link_up(4) == std::vector<std::string>{"a"});
}

TEST_CASE("subscription_table: a node dropping a channel on its own unconfirms it until it is subscribed again") {
    subscription_table t(grace, 100);
    REQUIRE(t.want("a", 0, true, 1) == want::subscribe);
    REQUIRE(t.want("a", 2, true, 1) == want::pending);
    REQUIRE(t.on_subscribed("a", 1) == 0b101);
    CHECK(t.on_dropped("a", 2) == 0);  // another link: not its word
    CHECK(t.subscribed("a"));
    CHECK(t.on_dropped("a", 1) == 0b101);
    CHECK_FALSE(t.subscribed("a"));
    CHECK(t.want("a", 1, true, 1) == want::subscribe);  // a new want sends it again
    CHECK(t.on_subscribed("a", 1) == 0b111);
    // Dropped while nobody wants it: forgotten.
    t.unwant("a", 0, 0);
    t.unwant("a", 1, 0);
    t.unwant("a", 2, 0);
    CHECK(t.on_dropped("a", 1) == 0);
    CHECK(t.size() == 0);
    CHECK(t.load(1) == 0);
}

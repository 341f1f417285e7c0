// key_slot against the real thing: a cluster-enabled redis-server's CLUSTER KEYSLOT (a pure
// computation there; the node needs no slots assigned) for random keys full of braces.
#include <doctest/doctest.h>

#include <random>

#include "core/key_slot.h"
#include "support/sse.h"

using namespace test;

TEST_CASE("key_slot agrees with CLUSTER KEYSLOT on thousands of keys with and without tags") {
    std::string dir = temp_dir();
    // A cluster node's bus listens on its port + 10000, so the port must be 55535 or less.
    int port = free_port();
    while (port > 55535) port = free_port();
    redis_server cluster_node(port, {"--cluster-enabled", "yes", "--cluster-config-file",
                                            dir + "/nodes.conf"});
    redis_client redis(cluster_node.port());
    std::mt19937 rng(42);
    const std::string alphabet = "ab{}:_-.0123456789 {}}{";
    std::vector<std::string> keys = {"", "{", "}", "{}", "{}{}", "}{", "{{}}", "a{b}c", "a{}b",
                                     "user:{42}:feed", "\xff\xfe{\x01}", "player_42"};
    for (int i = 0; i < 3000; ++i) {
        std::string k(std::uniform_int_distribution<int>(1, 12)(rng), ' ');
        for (char& c : k) c = alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
        keys.push_back(k);
    }
    int mismatches = 0;
    for (const auto& k : keys) {
        std::string expected = redis.command({"CLUSTER", "KEYSLOT", k});
        if (std::to_string(jugglite::key_slot(k)) != expected) {
            ++mismatches;
            INFO("key '" << k << "': redis " << expected << ", ours " << jugglite::key_slot(k));
            CHECK(false);
        }
    }
    CHECK(mismatches == 0);
}

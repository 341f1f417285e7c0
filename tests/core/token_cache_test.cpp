#include <doctest/doctest.h>

#include "core/token_cache.h"

using namespace jugglite;

TEST_CASE("a cached grant is found by its token until it expires") {
    token_cache cache(2);
    grant g{{"a"}, "u", 1000};
    cache.store(token_cache::key_of("token-1"), g);
    auto hit = cache.find(token_cache::key_of("token-1"), 900, 5);
    REQUIRE(hit.has_value());
    CHECK(hit->sub == "u");
    CHECK(cache.find(token_cache::key_of("token-2"), 900, 5) == std::nullopt);
    CHECK(cache.find(token_cache::key_of("token-1"), 1005, 5).has_value());  // within the leeway
    CHECK(cache.find(token_cache::key_of("token-1"), 1006, 5) == std::nullopt);
    CHECK(cache.find(token_cache::key_of("token-1"), 900, 5) == std::nullopt);  // dropped once expired
}

TEST_CASE("the oldest entry goes when the cache is full, and no-exp grants stay") {
    token_cache cache(2);
    cache.store(token_cache::key_of("t1"), grant{{}, "1", 0});
    cache.store(token_cache::key_of("t2"), grant{{}, "2", 0});
    cache.store(token_cache::key_of("t3"), grant{{}, "3", 0});
    CHECK(cache.find(token_cache::key_of("t1"), 1 << 30, 0) == std::nullopt);
    CHECK(cache.find(token_cache::key_of("t2"), 1 << 30, 0)->sub == "2");
    CHECK(cache.find(token_cache::key_of("t3"), 1 << 30, 0)->sub == "3");
    CHECK(cache.size() == 2);
    token_cache off(0);
    off.store(token_cache::key_of("t"), grant{});
    CHECK(off.find(token_cache::key_of("t"), 0, 0) == std::nullopt);
}

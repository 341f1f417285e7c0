#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "core/connection_event.h"

using namespace jugglite;
using nlohmann::json;

TEST_CASE("a register event carries every field, and hostile text stays inside its string") {
    std::vector<std::string> channels{"a", "b\"c"};
    std::string ua = "Evil\"},\"type\":\"x\n\xff";
    auto text = register_event({"node-1", "node-1/1a/0/7", &channels, "user-42", "192.0.2.1", ua, 1700000000123});
    auto j = json::parse(text);
    CHECK(j["type"] == "register");
    CHECK(j["node"] == "node-1");
    CHECK(j["id"] == "node-1/1a/0/7");
    CHECK(j["channels"] == json::array({"a", "b\"c"}));
    CHECK(j["sub"] == "user-42");
    CHECK(j["ip"] == "192.0.2.1");
    CHECK(j["user_agent"].get<std::string>().starts_with("Evil\"},\"type\":\"x\n"));
    CHECK(j["at"] == 1700000000123);
    CHECK(text.find('\n') == std::string::npos);
}

TEST_CASE("unregister and node events") {
    auto u = json::parse(unregister_event("n", "n/1/0/1", "slow_consumer", 1500, 42));
    CHECK(u == json{{"type", "unregister"}, {"node", "n"}, {"id", "n/1/0/1"},
                    {"reason", "slow_consumer"}, {"duration_ms", 1500}, {"at", 42}});
    auto n = json::parse(node_event("n", 1234, 43));
    CHECK(n == json{{"type", "node"}, {"node", "n"}, {"streams", 1234}, {"at", 43}});
    CHECK(stream_event_id("host:3000", "18c", 1, 99) == "host:3000/18c/1/99");
}

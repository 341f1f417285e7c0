// --events-channel through the real binary and a real Redis: what an application
// subscribed to the events channel sees, as the Ruby Jugglite's on_register/on_unregister.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/sse.h"
#include "support/tokens.h"

using namespace test;
using nlohmann::json;

namespace {

// The next event of `type` on `sub`, skipping others (heartbeats); null json if none came.
json next_event(redis_client& sub, const std::string& type, std::chrono::milliseconds timeout = 5s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        std::string m = sub.next_message(1s);
        if (m.empty()) continue;
        auto j = json::parse(m);
        if (j["type"] == type) return j;
    }
    return {};
}

}  // namespace

TEST_CASE("register and unregister carry one id, the grant's sub, the peer and the agent") {
    const std::string secret = "events-secret-0123456789";
    auto events = unique_channel("events");
    redis_client listener(shared_redis().port());
    listener.subscribe(events);
    jugglite_server server({"--events-channel", events, "--node-name", "node-a", "--jwt-secret", secret});
    auto ch = unique_channel();
    auto tok = sign_hs256(R"({"sub":"user-7","channels":["*"],"exp":4102444800})", secret);
    auto c = raw_client::tcp(server.port());
    c.send("GET /s?channel=" + ch + "&token=" + tok + " HTTP/1.1\r\nUser-Agent: agent/2\r\n\r\n");
    REQUIRE(c.read_until(": registered to channels: "));

    json reg = next_event(listener, "register");
    REQUIRE(reg.is_object());
    CHECK(reg["node"] == "node-a");
    CHECK(reg["channels"] == json::array({ch}));
    CHECK(reg["sub"] == "user-7");
    CHECK(reg["ip"] == "127.0.0.1");
    CHECK(reg["user_agent"] == "agent/2");
    CHECK(reg["at"].get<std::int64_t>() > 1'700'000'000'000);
    std::string id = reg["id"];
    CHECK(id.starts_with("node-a/"));

    c.close();
    json unreg = next_event(listener, "unregister");
    REQUIRE(unreg.is_object());
    CHECK(unreg["id"] == id);
    CHECK(unreg["node"] == "node-a");
    CHECK(unreg["reason"] == "client_gone");
    CHECK(unreg["duration_ms"].get<std::int64_t>() >= 0);

    // A second stream gets another id.
    auto d = open_stream(server.port(), "/s?channel=" + ch + "&token=" + tok);
    json reg2 = next_event(listener, "register");
    REQUIRE(reg2.is_object());
    CHECK(reg2["id"] != id);
    CHECK(metric(server.port(), "jugglite_events_published_total") >= 3);
}

TEST_CASE("a node heartbeat carries the open-stream count, and shutdown unregisters every stream") {
    auto events = unique_channel("events");
    redis_client listener(shared_redis().port());
    listener.subscribe(events);
    jugglite_server server({"--events-channel", events, "--node-name", "node-b", "--events-heartbeat", "1"});
    auto ch = unique_channel();
    std::vector<raw_client> streams;
    for (int i = 0; i < 3; ++i) streams.push_back(open_stream(server.port(), "/s?channel=" + ch));
    bool saw_three = false;
    for (int i = 0; i < 5 && !saw_three; ++i) {
        json hb = next_event(listener, "node", 3s);
        REQUIRE(hb.is_object());
        CHECK(hb["node"] == "node-b");
        saw_three = hb["streams"] == 3;
    }
    CHECK(saw_three);
    CHECK(server.terminate() == 0);
    int shutdown_unregisters = 0;
    for (int i = 0; i < 3; ++i) {
        json u = next_event(listener, "unregister", 3s);
        if (u.is_object() && u["reason"] == "shutdown") ++shutdown_unregisters;
    }
    CHECK(shutdown_unregisters == 3);
}

TEST_CASE("a stream without a registration sends no unregister, and plain requests send none") {
    auto events = unique_channel("events");
    redis_client listener(shared_redis().port());
    listener.subscribe(events);
    jugglite_server server({"--events-channel", events, "--events-heartbeat", "3600"});
    CHECK(http_get(server.port(), "/healthz").starts_with("HTTP/1.1"));
    CHECK(http_get(server.port(), "/nope?channel=%zz").starts_with("HTTP/1.1 400"));
    json hb = next_event(listener, "node", 2s);  // the first heartbeat goes out at start
    CHECK(hb.is_object());
    CHECK(listener.next_message(1s).empty());
}

TEST_CASE("while Redis is down, events are dropped and counted, and they flow again after") {
    redis_server own(free_port());
    auto events = unique_channel("events");
    jugglite_server server({"--events-channel", events, "--events-heartbeat", "1"}, own.url());
    auto ch = unique_channel();
    auto c = open_stream(server.port(), "/s?channel=" + ch);
    REQUIRE(eventually([&] { return metric(server.port(), "jugglite_events_published_total") >= 1; }));
    own.stop();
    c.close();  // its unregister finds no Redis
    CHECK(eventually([&] { return metric(server.port(), R"(jugglite_events_dropped_total{reason="redis_down"})") >= 2; }, 15s));
    CHECK(metric(server.port(), "jugglite_events_link_errors_total") >= 1);
    own.start();
    redis_client listener(own.port());
    listener.subscribe(events);
    json hb = next_event(listener, "node", 15s);
    CHECK(hb.is_object());
}

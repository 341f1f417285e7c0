// /metrics as Prometheus sees it: promtool's check of the exposition, and a real
// Prometheus server scraping jugglite and answering a query about it.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/sse.h"

using namespace test;

namespace {

// promtool's verdict on an exposition: its exit status and what it printed.
run_result promtool_check(const std::string& body) {
    const std::string dir = temp_dir();
    {
        std::ofstream(dir + "/metrics.txt") << body;
    }
    const int rc = std::system(("promtool check metrics < " + dir + "/metrics.txt > " + dir +
                                "/promtool.out 2>&1").c_str());
    std::ifstream out(dir + "/promtool.out");
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, std::string(std::istreambuf_iterator<char>(out), {})};
}

// The body of `url`'s answer, fetched with curl (a keep-alive server like Prometheus'
// never closes the connection for raw_client).
std::string curl_get(const std::string& url, const std::string& query) {
    const std::string dir = temp_dir();
    const std::string cmd = "curl -sG -m 5 --data-urlencode '" + query + "' '" + url + "' > " +
                            dir + "/body 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) return {};
    std::ifstream in(dir + "/body");
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("/metrics: the Prometheus text format, accepted by promtool, with delivery delays") {
    redis_server own_redis;  // --history loads its library: not on the shared Redis
    jugglite_server server({"--history"}, own_redis.url());
    auto ch = unique_channel();
    auto c = open_stream(server.port(), "/stream?channel=" + ch);
    redis_client redis(own_redis.port());
    REQUIRE(wait_numsub(redis, ch));
    redis.publish(ch, "one");
    REQUIRE(c.read_until("data: one\n\n"));

    std::string m = http_get(server.port(), "/metrics");
    CHECK(m.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(m.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
    CHECK(metric_in(m, "jugglite_connections_open") == 1);
    CHECK(metric_in(m, R"(jugglite_connections_open{shard="0"})") +
              metric_in(m, R"(jugglite_connections_open{shard="1"})") == 1);
    CHECK(metric_in(m, "jugglite_connections_opened_total") >= 1);
    CHECK(metric_in(m, "jugglite_redis_up") == 1);
    // The message's frame was delivered once: one observation of its delay.
    CHECK(eventually([&] { return metric(server.port(), "jugglite_delivery_delay_seconds_count") == 1; }));
    // Within a round of the timer slices (1 s), the stream shows in the queued-bytes snapshot.
    CHECK(eventually([&] { return metric(server.port(), R"(jugglite_streams_by_queued_bytes{upto="+Inf"})") == 1; }));
    CHECK(metric(server.port(), "jugglite_history_resumes_total") == 0);

    m = http_get(server.port(), "/metrics");
    const std::string body = m.substr(m.find("\r\n\r\n") + 4);
    auto check = promtool_check(body);
    INFO(check.output);
    CHECK(check.status == 0);
    CHECK(check.output.empty());  // no lint findings either
    // promtool can fail: a counter without _total is a finding.
    auto bad = promtool_check("# HELP bad a counter\n# TYPE bad counter\nbad 1\n");
    CHECK(bad.status != 0);
}

TEST_CASE("a real Prometheus scrapes /metrics and answers a query for jugglite_connections_open") {
    jugglite_server server;
    const auto ch = unique_channel();
    std::vector<raw_client> streams;
    for (int i = 0; i < 3; ++i) streams.push_back(open_stream(server.port(), "/stream?channel=" + ch));

    const std::string dir = temp_dir();
    const int port = free_port();
    std::ofstream(dir + "/prometheus.yml")
        << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        << "scrape_configs:\n  - job_name: jugglite\n    static_configs:\n"
        << "      - targets: ['127.0.0.1:" << server.port() << "']\n";
    auto prom = child_process::spawn(
        {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
         "--storage.tsdb.path=" + dir + "/data", "--web.listen-address=127.0.0.1:" + std::to_string(port),
         "--log.level=warn"},
        {}, dir + "/prometheus.log");
    const std::string api = "http://127.0.0.1:" + std::to_string(port) + "/api/v1/query";
    std::string answer;
    const bool seen = eventually([&] {
        answer = curl_get(api, "query=sum(jugglite_connections_open)");
        return answer.find(R"("value":[)") != std::string::npos && answer.find(R"(,"3"]})") != std::string::npos;
    }, 30s);
    INFO(answer);
    INFO(prom.log());
    CHECK(seen);
    // The scrape itself is healthy, with every shard's series.
    answer = curl_get(api, R"(query=count(jugglite_connections_open{job="jugglite"}))");
    CHECK(answer.find(R"(,"2"]})") != std::string::npos);  // two shards
    answer = curl_get(api, R"(query=up{job="jugglite"})");
    CHECK(answer.find(R"(,"1"]})") != std::string::npos);

    // Every query of the shipped Grafana dashboard parses and finds its series. Rates need
    // two scrapes inside their window.
    std::this_thread::sleep_for(3s);
    std::ifstream file(JUGGLITE_SOURCE_DIR "/deploy/grafana-dashboard.json");
    const auto dashboard = nlohmann::json::parse(file);
    int queries = 0;
    for (const auto& panel : dashboard.at("panels")) {
        for (const auto& target : panel.at("targets")) {
            std::string expr = target.at("expr");
            for (auto [from, to] : {std::pair{"$job", ".+"}, {"$__rate_interval", "5s"}})
                for (std::size_t p; (p = expr.find(from)) != std::string::npos;)
                    expr.replace(p, std::string_view(from).size(), to);
            const std::string got = curl_get(api, "query=" + expr);
            INFO(panel.at("title").get<std::string>() << ": " << expr << " -> " << got);
            const auto answer = nlohmann::json::parse(got, nullptr, false);
            REQUIRE(!answer.is_discarded());
            CHECK(answer.value("status", "") == "success");
            CHECK(!answer["data"]["result"].empty());
            ++queries;
        }
    }
    CHECK(queries >= 12);
    (void)prom.stop(SIGTERM, 10s);
}

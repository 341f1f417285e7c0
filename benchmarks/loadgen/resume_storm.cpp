// resume_storm: a reconnect storm with Last-Event-ID against jugglite --history.
//
// It starts the server itself (--server, a shell command line), opens --conns streams over
// --channels channels, and publishes with FCALL jugglite_publish at --rate messages/s
// (round robin over the channels; payload "<seq on its channel> <send ns>"). After
// --before seconds it kills the server (SIGKILL), keeps publishing, restarts it after
// --down seconds, and then every stream reconnects at once, each with the id of the last
// message it received. It measures:
// - how long until every stream has caught up (received the last message published on its
//   channel before the reconnects began), as p50/p99/max from the start of the storm;
// - loss, duplicates and reordering across every stream, over the whole run;
// - the Redis commands the storm cost (INFO commandstats, restart to all caught up).
// Connections are spread over worker processes (below the open-file limit) and over
// source addresses 127.0.0.x.
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <cxxopts.hpp>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace {

constexpr int max_channels = 1024;
constexpr int max_workers = 64;
constexpr int conns_per_worker = 19000;

std::int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

struct options {
    std::string server;
    int port = 0;
    int redis_port = 6379;
    int conns = 10000;
    int channels = 10;
    double rate = 100;
    double before = 5, down = 1, after = 10, settle = 5;
    int sources = 16;
    std::string json;
};

struct worker_stats {
    std::atomic<std::int64_t> streaming;  // streams with their headers read
    std::atomic<std::int64_t> caught_up;
    std::int64_t frames, lost, dup, reorder, resets, failed_connects;
};

struct shared_state {
    std::atomic<int> phase;  // 0 connect, 1 run, 2 server down, 3 reconnect, 4 stop
    std::atomic<std::int64_t> storm_start_ns;
    std::atomic<std::int64_t> published[max_channels];   // next seq per channel
    std::int64_t target[max_channels];                    // caught up: received target-1
    worker_stats workers[max_workers];
};

struct conn {
    int fd = -1;
    int index = 0;
    int channel = 0;
    std::uint8_t state = 0;  // 0 connecting, 1 sent, 2 streaming, 3 down
    bool caught_up = false;
    std::int64_t next = 0;   // next seq expected on its channel
    std::string last_id;
    std::string tail;
};

class worker {
public:
    worker(const options& o, shared_state& sh, std::int64_t* caught, int id, int workers)
        : _o(o), _sh(sh), _caught(caught), _st(sh.workers[id]) {
        for (int i = id; i < o.conns; i += workers) {
            conn c;
            c.index = i;
            c.channel = i % o.channels;
            _conns.push_back(c);
        }
    }

    void run() {
        _ep = epoll_create1(0);
        for (std::size_t i = 0; i < _conns.size(); ++i) open(i);
        std::vector<epoll_event> ev(4096);
        bool reconnected = false;
        std::int64_t next_retry = 0;
        while (_sh.phase.load() != 4) {
            int phase = _sh.phase.load();
            std::int64_t t = now_ns();
            if (phase == 3 && (!reconnected || t >= next_retry)) {
                // The storm: every stream that is down comes back at once.
                for (std::size_t i = 0; i < _conns.size(); ++i)
                    if (_conns[i].state == 3) open(i);
                reconnected = true;
                next_retry = t + 200'000'000;
            }
            int n = epoll_wait(_ep, ev.data(), static_cast<int>(ev.size()), 5);
            t = now_ns();
            for (int i = 0; i < n; ++i) handle(ev[i].data.u64, ev[i].events, t);
        }
        for (auto& c : _conns) {
            if (c.fd >= 0) close(c.fd);
            std::int64_t end = _sh.published[c.channel].load();
            if (c.next < end) _st.lost += end - c.next;
        }
    }

private:
    void open(std::size_t i) {
        conn& c = _conns[i];
        c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        sockaddr_in src{};
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl((127u << 24) | static_cast<unsigned>(1 + c.index % _o.sources));
        bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
        sockaddr_in dst{};
        dst.sin_family = AF_INET;
        dst.sin_port = htons(static_cast<std::uint16_t>(_o.port));
        inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
        if (connect(c.fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) < 0 && errno != EINPROGRESS) {
            down(c);
            return;
        }
        c.state = 0;
        c.tail.clear();
        epoll_event e{EPOLLOUT | EPOLLIN | EPOLLRDHUP, {.u64 = i}};
        epoll_ctl(_ep, EPOLL_CTL_ADD, c.fd, &e);
    }

    void down(conn& c) {
        if (c.fd >= 0) {
            epoll_ctl(_ep, EPOLL_CTL_DEL, c.fd, nullptr);
            close(c.fd);
        }
        if (c.state < 2) ++_st.failed_connects;
        else _st.streaming.fetch_sub(1);
        c.fd = -1;
        c.state = 3;
    }

    void handle(std::size_t i, std::uint32_t events, std::int64_t t) {
        conn& c = _conns[i];
        if (c.state == 3) return;
        if (c.state == 0 && (events & EPOLLOUT)) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                down(c);
                return;
            }
            std::string req = fmt::format("GET /stream?channel=storm{} HTTP/1.1\r\nHost: x\r\n"
                                          "Accept: text/event-stream\r\n{}\r\n",
                                          c.channel,
                                          c.last_id.empty() ? "" : "Last-Event-ID: " + c.last_id + "\r\n");
            if (send(c.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
                down(c);
                return;
            }
            c.state = 1;
            epoll_event e{EPOLLIN | EPOLLRDHUP, {.u64 = i}};
            epoll_ctl(_ep, EPOLL_CTL_MOD, c.fd, &e);
        }
        if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
        char buf[65536];
        while (true) {
            ssize_t n = recv(c.fd, buf, sizeof buf, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN)) {
                down(c);
                return;
            }
            if (n < 0) return;
            consume(c, std::string_view(buf, static_cast<std::size_t>(n)), t);
            if (n < static_cast<ssize_t>(sizeof buf)) return;
        }
    }

    void consume(conn& c, std::string_view data, std::int64_t t) {
        std::string joined;
        if (!c.tail.empty()) {
            joined = std::move(c.tail);
            joined.append(data);
            data = joined;
            c.tail.clear();
        }
        if (c.state == 1) {
            auto end = data.find("\r\n\r\n");
            if (end == std::string_view::npos) {
                c.tail.assign(data);
                return;
            }
            if (!data.starts_with("HTTP/1.1 200")) {
                down(c);
                return;
            }
            c.state = 2;
            _st.streaming.fetch_add(1);
            data.remove_prefix(end + 4);
        }
        while (true) {
            auto nl = data.find('\n');
            if (nl == std::string_view::npos) break;
            std::string_view line = data.substr(0, nl);
            data.remove_prefix(nl + 1);
            if (line.starts_with("id: ")) c.last_id.assign(line.substr(4));
            else if (line.starts_with("event: jugglite-reset")) ++_st.resets;
            else if (line.starts_with("data: ")) on_data(c, line.substr(6), t);
        }
        if (!data.empty()) c.tail.assign(data);
    }

    void on_data(conn& c, std::string_view payload, std::int64_t t) {
        std::int64_t seq = 0;
        auto r = std::from_chars(payload.data(), payload.data() + payload.size(), seq);
        if (r.ec != std::errc{}) return;  // the reset's JSON
        ++_st.frames;
        if (seq < c.next) ++_st.dup;
        else if (seq > c.next) _st.lost += seq - c.next, ++_st.reorder;
        c.next = std::max(c.next, seq + 1);
        if (!c.caught_up && _sh.phase.load() >= 3 && c.next >= _sh.target[c.channel] && _sh.target[c.channel] > 0) {
            c.caught_up = true;
            _caught[c.index] = t - _sh.storm_start_ns.load();
            _st.caught_up.fetch_add(1);
        }
    }

    const options& _o;
    shared_state& _sh;
    std::int64_t* _caught;
    worker_stats& _st;
    int _ep = -1;
    std::vector<conn> _conns;
};

pid_t start_server(const std::string& cmd, int port) {
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
        _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        close(fd);
        if (ok) return pid;
        usleep(25'000);
    }
    throw std::runtime_error("the server did not come up");
}

// INFO commandstats as command -> calls.
std::map<std::string, long long> commandstats(redisContext* r) {
    std::map<std::string, long long> out;
    auto* reply = static_cast<redisReply*>(redisCommand(r, "INFO commandstats"));
    if (!reply || reply->type != REDIS_REPLY_STRING) return out;
    std::string text(reply->str, reply->len);
    freeReplyObject(reply);
    std::size_t p = 0;
    while ((p = text.find("cmdstat_", p)) != std::string::npos) {
        auto colon = text.find(':', p);
        auto calls = text.find("calls=", colon);
        std::string name = text.substr(p + 8, colon - p - 8);
        out[name] = std::stoll(text.substr(calls + 6));
        p = colon;
    }
    return out;
}

double percentile(std::vector<std::int64_t> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return static_cast<double>(v[std::min(v.size() - 1, static_cast<std::size_t>(q * (v.size() - 1)))]) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
    cxxopts::Options spec("resume_storm", "a Last-Event-ID reconnect storm against jugglite --history");
    spec.add_options()
        ("server", "shell command that runs the server (it is killed and run again)", cxxopts::value<std::string>())
        ("port", "the server's port", cxxopts::value<int>())
        ("redis-port", "Redis port", cxxopts::value<int>()->default_value("6379"))
        ("conns", "streams", cxxopts::value<int>()->default_value("10000"))
        ("channels", "channels (stream i listens to storm<i % channels>)", cxxopts::value<int>()->default_value("10"))
        ("rate", "messages per second, over all channels", cxxopts::value<double>()->default_value("100"))
        ("before", "seconds of publishing before the kill", cxxopts::value<double>()->default_value("5"))
        ("down", "seconds the server stays down", cxxopts::value<double>()->default_value("1"))
        ("after", "seconds of publishing after the storm began", cxxopts::value<double>()->default_value("10"))
        ("settle", "seconds to wait for the last messages", cxxopts::value<double>()->default_value("5"))
        ("sources", "source addresses 127.0.0.1..N", cxxopts::value<int>()->default_value("16"))
        ("json", "write the results here", cxxopts::value<std::string>()->default_value(""));
    auto r = spec.parse(argc, argv);
    options o;
    o.server = r["server"].as<std::string>();
    o.port = r["port"].as<int>();
    o.redis_port = r["redis-port"].as<int>();
    o.conns = r["conns"].as<int>();
    o.channels = std::clamp(r["channels"].as<int>(), 1, max_channels);
    o.rate = r["rate"].as<double>();
    o.before = r["before"].as<double>();
    o.down = r["down"].as<double>();
    o.after = r["after"].as<double>();
    o.settle = r["settle"].as<double>();
    o.sources = r["sources"].as<int>();
    o.json = r["json"].as<std::string>();

    auto* sh = static_cast<shared_state*>(mmap(nullptr, sizeof(shared_state), PROT_READ | PROT_WRITE,
                                                MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    new (sh) shared_state{};
    auto* caught = static_cast<std::int64_t*>(mmap(nullptr, sizeof(std::int64_t) * o.conns,
                                                   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    std::fill(caught, caught + o.conns, -1);

    pid_t server = start_server(o.server, o.port);
    redisContext* redis = redisConnect("127.0.0.1", o.redis_port);
    // The library is loaded by the server; wait for it.
    for (int i = 0; i < 200; ++i) {
        auto* rep = static_cast<redisReply*>(redisCommand(redis, "FCALL_RO jugglite_version 0"));
        bool ok = rep && rep->type == REDIS_REPLY_INTEGER;
        if (rep) freeReplyObject(rep);
        if (ok) break;
        usleep(25'000);
    }
    const int workers = std::clamp((o.conns + conns_per_worker - 1) / conns_per_worker, 2, max_workers);
    std::vector<pid_t> kids;
    for (int w = 0; w < workers; ++w) {
        pid_t pid = fork();
        if (pid == 0) {
            worker(o, *sh, caught, w, workers).run();
            _exit(0);
        }
        kids.push_back(pid);
    }
    auto streaming = [&] {
        std::int64_t n = 0;
        for (int w = 0; w < workers; ++w) n += sh->workers[w].streaming.load();
        return n;
    };
    std::int64_t wait_end = now_ns() + 60'000'000'000LL;
    while (streaming() < o.conns && now_ns() < wait_end) usleep(10'000);
    fmt::print(stderr, "{} streams open\n", streaming());
    usleep(500'000);  // every SUBSCRIBE confirmed before the first message

    // The publisher: FCALL jugglite_publish, round robin over the channels, at the rate.
    std::atomic<bool> publishing{true};
    std::thread pub([&] {
        redisContext* p = redisConnect("127.0.0.1", o.redis_port);
        const std::int64_t period = static_cast<std::int64_t>(1e9 / o.rate);
        std::int64_t next = now_ns();
        for (std::int64_t k = 0; publishing.load(); ++k) {
            int ch = static_cast<int>(k % o.channels);
            std::int64_t seq = sh->published[ch].load();
            std::string channel = fmt::format("storm{}", ch);
            std::string payload = fmt::format("{} {}", seq, now_ns());
            auto* rep = static_cast<redisReply*>(redisCommand(p, "FCALL jugglite_publish 1 %b %b", channel.data(),
                                                              channel.size(), payload.data(), payload.size()));
            if (rep) freeReplyObject(rep);
            sh->published[ch].store(seq + 1);
            next += period;
            std::int64_t wait = next - now_ns();
            if (wait > 0) usleep(static_cast<useconds_t>(wait / 1000));
        }
        redisFree(p);
    });
    sh->phase.store(1);
    usleep(static_cast<useconds_t>(o.before * 1e6));
    kill(-server, SIGKILL);
    waitpid(server, nullptr, 0);
    sh->phase.store(2);
    usleep(static_cast<useconds_t>(o.down * 1e6));
    server = start_server(o.server, o.port);
    auto stats_before = commandstats(redis);
    for (int c = 0; c < o.channels; ++c) sh->target[c] = sh->published[c].load();
    sh->storm_start_ns.store(now_ns());
    const std::int64_t storm_start = now_ns();
    sh->phase.store(3);
    auto caught_total = [&] {
        std::int64_t n = 0;
        for (int w = 0; w < workers; ++w) n += sh->workers[w].caught_up.load();
        return n;
    };
    while (caught_total() < o.conns && now_ns() - storm_start < 60'000'000'000LL) usleep(5'000);
    const double all_caught_s = (now_ns() - storm_start) / 1e9;
    auto stats_after = commandstats(redis);
    std::int64_t rest = storm_start + static_cast<std::int64_t>(o.after * 1e9) - now_ns();
    if (rest > 0) usleep(static_cast<useconds_t>(rest / 1000));
    publishing.store(false);
    pub.join();
    usleep(static_cast<useconds_t>(o.settle * 1e6));
    sh->phase.store(4);
    for (pid_t k : kids) waitpid(k, nullptr, 0);
    kill(-server, SIGTERM);
    waitpid(server, nullptr, 0);

    std::int64_t frames = 0, lost = 0, dup = 0, reorder = 0, resets = 0, failed = 0;
    for (int w = 0; w < workers; ++w) {
        const auto& s = sh->workers[w];
        frames += s.frames, lost += s.lost, dup += s.dup, reorder += s.reorder, resets += s.resets;
        failed += s.failed_connects;
    }
    std::vector<std::int64_t> times;
    for (int i = 0; i < o.conns; ++i)
        if (caught[i] >= 0) times.push_back(caught[i]);
    long long published = 0;
    for (int c = 0; c < o.channels; ++c) published += sh->published[c].load();
    long long total_cmds = 0;
    std::string per_cmd;
    for (const auto& [name, calls] : stats_after) {
        long long d = calls - (stats_before.count(name) ? stats_before[name] : 0);
        if (d <= 0) continue;
        total_cmds += d;
        per_cmd += fmt::format("{}\"{}\": {}", per_cmd.empty() ? "" : ", ", name, d);
    }
    std::string out = fmt::format(
        "{{\"conns\": {}, \"channels\": {}, \"rate\": {}, \"published\": {}, \"frames\": {}, "
        "\"caught_up\": {}, \"all_caught_up_s\": {:.3f}, \"caught_up_ms\": {{\"p50\": {:.1f}, \"p99\": {:.1f}, "
        "\"max\": {:.1f}}}, \"lost\": {}, \"duplicates\": {}, \"reordered\": {}, \"resets\": {}, "
        "\"failed_connects\": {}, \"redis_commands\": {}, \"redis_commands_by_name\": {{{}}}}}\n",
        o.conns, o.channels, o.rate, published, frames, times.size(), all_caught_s, percentile(times, 0.5),
        percentile(times, 0.99), percentile(times, 1.0), lost, dup, reorder, resets, failed, total_cmds, per_cmd);
    fmt::print("{}", out);
    if (!o.json.empty()) std::ofstream(o.json) << out;
    return lost == 0 && dup == 0 && static_cast<int>(times.size()) == o.conns ? 0 : 1;
}

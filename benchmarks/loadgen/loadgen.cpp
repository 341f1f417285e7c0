// loadgen: opens N SSE streams to any SSE server (jugglite, nchan, the floor), publishes
// M messages at a fixed rate through Redis PUBLISH (or FCALL jugglite_publish) or an HTTP
// POST endpoint, and measures
// delivery: loss, duplicates, reordering, publish->receive latency, and the server's memory
// and CPU from /proc. Connections are spread over worker processes (each below the
// open-file limit) and over source addresses 127.0.0.x.
//
// Payload format: "<seq> <step> <send_ns> xxxx..." padded to --size bytes (send_ns on
// CLOCK_MONOTONIC).
//
// With --duration it only watches: another program publishes (the chaos and soak drivers,
// tagging each message's <step> with their phase), and loadgen prints one JSON status line
// a second: streams open and closed, frames, and per tag the frames and their latency.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <cxxopts.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "failures.h"
#include "histogram.h"

namespace {

using loadgen::fail_reason;
using loadgen::failure_counts;
using loadgen::histogram;
using enum loadgen::fail_reason;

constexpr int max_steps = 16;
constexpr int max_workers = 64;
constexpr int max_conns_per_worker = 19000;  // below the 20000 open-file hard limit

std::int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

// ---- options ---------------------------------------------------------------------------

struct options {
    std::string host = "127.0.0.1";
    int port = 3000;
    std::string path = "/stream?channel=bench";  // "{i}" is replaced by the connection index
    int conns = 1000;
    int workers = 2;
    double ramp = 5000;  // connections per second
    int sources = 8;     // 127.0.0.1 .. 127.0.0.<sources>
    std::string publish = "redis";  // "redis" or "http"
    std::string pub_host = "127.0.0.1";
    int pub_port = 6379;
    std::string pub_path = "/pub?channel={ch}";
    std::string channel = "bench";
    int private_channels = 0;  // >0: first publish once to p0..p<n-1>, then --messages to channel
    std::string private_prefix = "p";
    std::vector<double> rates{5};
    double step_seconds = 10;
    int messages = -1;  // per step; -1: rate * step_seconds
    int size = 64;
    double hold = 1;
    double settle = 10;
    double churn = 0;  // connects+disconnects per second during publishing
    std::vector<int> pids;
    std::string label = "server";
    std::string json;
    std::string cdf;
    std::string probe;  // shell command run once all streams are open; output goes in the JSON
    std::string header;               // an extra request header line; {i} and {token} as in path
    std::vector<std::string> tokens;  // {token} of connection i is tokens[i % size]
    double duration = 0;  // >0: watch mode, no publishing (see the top of the file)
    bool rst = false;     // close with a reset (SO_LINGER 0) instead of a FIN
    int rcvbuf = 0;       // >0: SO_RCVBUF of each stream (a small window: a slow reader)
};

// ---- shared memory between the parent and its workers ----------------------------------

struct worker_stats {
    std::atomic<std::int64_t> connected;
    failure_counts failures;  // streams that did not open, and why
    std::atomic<std::int64_t> frames;  // data frames received on measured connections
    std::atomic<std::int64_t> churn_done;
    std::int64_t step_frames[max_steps];
    std::int64_t dup;      // a sequence number seen twice on one connection
    std::int64_t reorder;  // a sequence number lower than one seen before
    std::int64_t closed_early;  // measured connections the server closed
    std::int64_t lost;     // computed at the end from expected counts
    histogram hist[max_steps];
    std::atomic<bool> done;
};

struct shared_state {
    std::atomic<bool> stop;
    std::atomic<bool> churn_on;
    std::atomic<int> published_steps;  // steps whose messages were all published
    std::int64_t step_messages[max_steps];  // messages published per step (seq range)
    std::int64_t step_first_seq[max_steps];
    std::int64_t private_first_seq;
    std::int64_t private_count;
    worker_stats workers[max_workers];
};

// ---- a worker: its share of the connections ---------------------------------------------

struct conn {
    int fd = -1;
    int index = 0;
    std::uint8_t state = 0;  // 0 connecting, 1 request sent, 2 streaming, 3 closed
    bool churn = false;
    std::int64_t last_seq = -1;
    std::int64_t churn_close_ns = 0;
    std::int64_t received = 0;
    std::string tail;  // an incomplete line carried to the next read
};

class worker {
public:
    worker(const options& o, shared_state& sh, int id) : _o(o), _sh(sh), _id(id), _st(sh.workers[id]) {}

    void run() {
        _ep = epoll_create1(0);
        for (int i = _id; i < _o.conns; i += _o.workers) _mine.push_back(i);
        _conns.reserve(_mine.size() + 4096);
        std::int64_t start = now_ns();
        std::size_t started = 0;
        double churn_credit = 0;
        std::int64_t last_loop = start;
        std::vector<epoll_event> events(4096);
        while (!_sh.stop.load(std::memory_order_relaxed)) {
            std::int64_t now = now_ns();
            // Ramp: start the connections that are due by now.
            double due = (now - start) / 1e9 * _o.ramp / _o.workers;
            while (started < _mine.size() && started < due) open_conn(_mine[started++], false);
            if (_sh.churn_on.load(std::memory_order_relaxed) && _o.churn > 0) {
                churn_credit += (now - last_loop) / 1e9 * _o.churn / _o.workers;
                while (churn_credit >= 1) {
                    churn_credit -= 1;
                    open_conn(-1, true);
                }
            }
            last_loop = now;
            close_due_churn(now);
            int n = epoll_wait(_ep, events.data(), static_cast<int>(events.size()), 5);
            std::int64_t t = now_ns();
            for (int i = 0; i < n; ++i) handle(events[i], t);
        }
        finish();
    }

private:
    void open_conn(int index, bool churn) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            if (!churn) _st.failures.count(fail_socket);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (_o.rcvbuf > 0 && !churn) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &_o.rcvbuf, sizeof _o.rcvbuf);
        sockaddr_in src{};
        src.sin_family = AF_INET;
        int k = (churn ? _churn_seq++ : index) % std::max(1, _o.sources);
        src.sin_addr.s_addr = htonl((127u << 24) | static_cast<unsigned>(1 + k));
        bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
        sockaddr_in dst{};
        dst.sin_family = AF_INET;
        dst.sin_port = htons(static_cast<uint16_t>(_o.port));
        inet_pton(AF_INET, _o.host.c_str(), &dst.sin_addr);
        int rc = connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
        if (rc < 0 && errno != EINPROGRESS) {
            close(fd);
            if (!churn) _st.failures.count(fail_connect);
            return;
        }
        std::size_t slot = _conns.size();
        if (!_free.empty()) {
            slot = _free.back();
            _free.pop_back();
        } else {
            _conns.emplace_back();
        }
        conn& c = _conns[slot];
        c = conn{};
        c.fd = fd;
        c.index = churn ? _o.conns + _churn_seq : index;
        c.churn = churn;
        epoll_event ev{EPOLLOUT | EPOLLIN | EPOLLRDHUP, {.u64 = slot}};
        epoll_ctl(_ep, EPOLL_CTL_ADD, fd, &ev);
    }

    // `text` with {i} (the connection's index; churn clients count on past --conns) and
    // {token} (its line of --tokens) filled in.
    std::string fill(std::string text, const conn& c) const {
        if (auto p = text.find("{i}"); p != std::string::npos) text.replace(p, 3, std::to_string(c.index));
        if (auto p = text.find("{token}"); p != std::string::npos && !_o.tokens.empty())
            text.replace(p, 7, _o.tokens[static_cast<std::size_t>(c.index) % _o.tokens.size()]);
        return text;
    }

    std::string request_for(const conn& c) {
        std::string header = _o.header.empty() ? std::string() : fill(_o.header, c) + "\r\n";
        return fmt::format("GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: text/event-stream\r\n{}\r\n",
                           fill(_o.path, c), _o.host, _o.port, header);
    }

    void handle(const epoll_event& ev, std::int64_t t) {
        conn& c = _conns[ev.data.u64];
        if (c.state == 3) return;
        if (c.state == 0 && (ev.events & EPOLLOUT)) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                fail(c, ev.data.u64, loadgen::reason_of(err));
                return;
            }
            std::string req = request_for(c);
            if (send(c.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
                fail(c, ev.data.u64, fail_send);
                return;
            }
            c.state = 1;
            epoll_event mod{EPOLLIN | EPOLLRDHUP, {.u64 = ev.data.u64}};
            epoll_ctl(_ep, EPOLL_CTL_MOD, c.fd, &mod);
        }
        if (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_from(c, ev.data.u64, t);
    }

    void fail(conn& c, std::uint64_t slot, fail_reason why) {
        if (!c.churn) _st.failures.count(why);
        drop(c, slot);
    }

    void drop(conn& c, std::uint64_t slot) {
        epoll_ctl(_ep, EPOLL_CTL_DEL, c.fd, nullptr);
        close(c.fd);
        c.fd = -1;
        c.state = 3;
        c.tail = {};
        if (c.churn) _free.push_back(slot);
    }

    void read_from(conn& c, std::uint64_t slot, std::int64_t t) {
        char buf[65536];
        while (true) {
            ssize_t n = recv(c.fd, buf, sizeof buf, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                if (c.state == 2 && !c.churn) ++_st.closed_early;
                if (c.state < 2) {
                    fail(c, slot, n == 0 ? fail_eof : loadgen::reason_of(errno));
                } else {
                    drop(c, slot);
                }
                return;
            }
            if (n < 0) return;
            consume(c, slot, std::string_view(buf, static_cast<std::size_t>(n)), t);
            if (c.state == 3) return;
            if (n < static_cast<ssize_t>(sizeof buf)) return;
        }
    }

    void consume(conn& c, std::uint64_t slot, std::string_view data, std::int64_t t) {
        std::string joined;
        if (!c.tail.empty()) {
            joined = std::move(c.tail);
            joined.append(data);
            data = joined;
            c.tail = {};
        }
        if (c.state == 1) {
            auto end = data.find("\r\n\r\n");
            if (end == std::string_view::npos) {
                if (data.size() > 16384) {
                    fail(c, slot, fail_status);
                    return;
                }
                c.tail.assign(data);
                return;
            }
            if (!data.starts_with("HTTP/1.1 200") && !data.starts_with("HTTP/1.0 200")) {
                if (!c.churn) _st.failures.count_answer(data);
                fail(c, slot, fail_status);
                return;
            }
            c.state = 2;
            if (c.churn) {
                c.churn_close_ns = t + 500'000'000;  // a churn client stays for half a second
                _churn_open.push_back(slot);
            } else {
                _st.connected.fetch_add(1, std::memory_order_relaxed);
            }
            data.remove_prefix(end + 4);
        }
        if (c.churn) return;  // churn clients only connect and leave
        while (true) {
            auto nl = data.find('\n');
            if (nl == std::string_view::npos) break;
            std::string_view line = data.substr(0, nl);
            data.remove_prefix(nl + 1);
            if (line.starts_with("data: ")) on_data(c, line.substr(6), t);
        }
        if (!data.empty()) c.tail.assign(data);
    }

    void on_data(conn& c, std::string_view payload, std::int64_t t) {
        std::int64_t seq = 0, step = 0, sent = 0;
        const char* p = payload.data();
        const char* end = p + payload.size();
        auto r1 = std::from_chars(p, end, seq);
        if (r1.ec != std::errc{} || r1.ptr == end) return;
        auto r2 = std::from_chars(r1.ptr + 1, end, step);
        if (r2.ec != std::errc{} || r2.ptr == end) return;
        auto r3 = std::from_chars(r2.ptr + 1, end, sent);
        if (r3.ec != std::errc{}) return;
        if (seq == c.last_seq) {
            ++_st.dup;
            return;
        }
        if (seq < c.last_seq) ++_st.reorder;
        c.last_seq = std::max(c.last_seq, seq);
        ++c.received;
        if (step >= 0 && step < max_steps) {
            _st.hist[step].record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, t - sent) / 1000));
            ++_st.step_frames[step];
        }
        _st.frames.fetch_add(1, std::memory_order_relaxed);
    }

    void close_due_churn(std::int64_t now) {
        std::size_t kept = 0;
        for (std::size_t i = 0; i < _churn_open.size(); ++i) {
            conn& c = _conns[_churn_open[i]];
            if (c.state == 2 && now >= c.churn_close_ns) {
                drop(c, _churn_open[i]);
                _st.churn_done.fetch_add(1, std::memory_order_relaxed);
            } else if (c.state == 2) {
                _churn_open[kept++] = _churn_open[i];
            }
        }
        _churn_open.resize(kept);
    }

    void finish() {
        // Expected per measured connection: every stepped message, plus its private one.
        for (auto& c : _conns) {
            if (c.churn || c.fd < 0) continue;
            if (_o.rst) {
                linger l{1, 0};
                setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            }
            close(c.fd);
        }
        _st.done.store(true);
    }

    const options& _o;
    shared_state& _sh;
    int _id;
    worker_stats& _st;
    int _ep = -1;
    std::vector<int> _mine;
    std::vector<conn> _conns;
    std::vector<std::size_t> _free;
    std::vector<std::size_t> _churn_open;
    int _churn_seq = 0;
};

// ---- /proc sampling --------------------------------------------------------------------

struct proc_sample {
    std::int64_t rss_bytes = 0;
    double cpu_seconds = 0;
};

proc_sample sample_pids(const std::vector<int>& pids) {
    proc_sample s;
    long ticks = sysconf(_SC_CLK_TCK);
    for (int pid : pids) {
        std::ifstream stat(fmt::format("/proc/{}/stat", pid));
        std::string line;
        if (std::getline(stat, line)) {
            auto rp = line.rfind(')');
            std::istringstream rest(line.substr(rp + 2));
            std::string f;
            std::vector<std::string> fields;
            while (rest >> f) fields.push_back(f);
            // fields[0] is field 3 (state); utime is field 14, stime field 15.
            if (fields.size() > 13)
                s.cpu_seconds += (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
        }
        std::ifstream status(fmt::format("/proc/{}/status", pid));
        while (std::getline(status, line))
            if (line.starts_with("VmRSS:")) s.rss_bytes += std::stoll(line.substr(6)) * 1024;
    }
    return s;
}

std::int64_t slab_bytes() {
    std::ifstream in("/proc/meminfo");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with("Slab:")) return std::stoll(line.substr(5)) * 1024;
    return 0;
}

// ---- the publisher (parent process) -----------------------------------------------------

class publisher {
public:
    explicit publisher(const options& o) : _o(o) {
        _fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<uint16_t>(o.pub_port));
        inet_pton(AF_INET, o.pub_host.c_str(), &sa.sin_addr);
        if (connect(_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            throw std::runtime_error(fmt::format("cannot connect to publisher {}:{}", o.pub_host, o.pub_port));
        int one = 1;
        setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // Replies are drained by a thread: the publisher never waits for one (open loop).
        _reader = std::thread([this] {
            char buf[65536];
            while (recv(_fd, buf, sizeof buf, 0) > 0) {
            }
        });
    }
    ~publisher() {
        shutdown(_fd, SHUT_RDWR);
        _reader.join();
        close(_fd);
    }

    void publish(const std::string& channel, std::int64_t seq, int step) {
        std::string payload = fmt::format("{} {} {} ", seq, step, now_ns());
        if (static_cast<int>(payload.size()) < _o.size) payload.append(_o.size - payload.size(), 'x');
        std::string out;
        if (_o.publish == "redis") {
            out = fmt::format("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{}\r\n${}\r\n{}\r\n", channel.size(),
                              channel, payload.size(), payload);
        } else if (_o.publish == "fcall") {
            // jugglite's history function (--history): the same message, with an entry id.
            out = fmt::format("*5\r\n$5\r\nFCALL\r\n$16\r\njugglite_publish\r\n$1\r\n1\r\n"
                              "${}\r\n{}\r\n${}\r\n{}\r\n",
                              channel.size(), channel, payload.size(), payload);
        } else {
            std::string path = _o.pub_path;
            if (auto p = path.find("{ch}"); p != std::string::npos) path.replace(p, 4, channel);
            out = fmt::format("POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n"
                              "Content-Length: {}\r\n\r\n{}",
                              path, _o.pub_host, payload.size(), payload);
        }
        std::string_view rest = out;
        while (!rest.empty()) {
            ssize_t n = send(_fd, rest.data(), rest.size(), MSG_NOSIGNAL);
            if (n <= 0) throw std::runtime_error("publisher connection lost");
            rest.remove_prefix(static_cast<std::size_t>(n));
        }
    }

private:
    const options& _o;
    int _fd = -1;
    std::thread _reader;
};

void sleep_until_ns(std::int64_t t) {
    timespec ts{static_cast<time_t>(t / 1'000'000'000), static_cast<long>(t % 1'000'000'000)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
}

std::vector<double> parse_doubles(const std::string& s) {
    std::vector<double> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(std::stod(item));
    return out;
}

options parse_options(int argc, char** argv) {
    cxxopts::Options o("loadgen", "SSE load generator: N streams, M messages, latency and loss.");
    o.add_options()
        ("host", "server address", cxxopts::value<std::string>()->default_value("127.0.0.1"))
        ("port", "server port", cxxopts::value<int>()->default_value("3000"))
        ("path", "stream path; {i} becomes the connection index, {token} its token (--tokens)",
         cxxopts::value<std::string>()->default_value("/stream?channel=bench"))
        ("conns", "streams to open", cxxopts::value<int>()->default_value("1000"))
        ("workers", "worker processes (raised so each holds < 19000)", cxxopts::value<int>()->default_value("2"))
        ("ramp", "connections opened per second", cxxopts::value<double>()->default_value("5000"))
        ("sources", "source addresses 127.0.0.1..N", cxxopts::value<int>()->default_value("8"))
        ("publish", "redis (PUBLISH) | fcall (FCALL jugglite_publish) | http",
         cxxopts::value<std::string>()->default_value("redis"))
        ("pub-host", "publisher host", cxxopts::value<std::string>()->default_value("127.0.0.1"))
        ("pub-port", "publisher port (Redis or HTTP)", cxxopts::value<int>()->default_value("6379"))
        ("pub-path", "HTTP publish path; {ch} becomes the channel",
         cxxopts::value<std::string>()->default_value("/pub?channel={ch}"))
        ("channel", "channel the stepped messages go to", cxxopts::value<std::string>()->default_value("bench"))
        ("private-channels", "first publish one message to each of <prefix>0..N-1",
         cxxopts::value<int>()->default_value("0"))
        ("private-prefix", "prefix of the private channels", cxxopts::value<std::string>()->default_value("p"))
        ("rates", "comma-separated message rates (msg/s), one step each",
         cxxopts::value<std::string>()->default_value("5"))
        ("step-seconds", "seconds of publishing per step", cxxopts::value<double>()->default_value("10"))
        ("messages", "messages per step (default rate x step-seconds)", cxxopts::value<int>()->default_value("-1"))
        ("size", "payload bytes", cxxopts::value<int>()->default_value("64"))
        ("hold", "seconds to hold idle streams before sampling memory", cxxopts::value<double>()->default_value("1"))
        ("settle", "max seconds to wait for deliveries after a step", cxxopts::value<double>()->default_value("10"))
        ("churn", "extra connects+disconnects per second while publishing", cxxopts::value<double>()->default_value("0"))
        ("pids", "server PIDs to sample (comma-separated)", cxxopts::value<std::string>()->default_value(""))
        ("label", "name in the summary", cxxopts::value<std::string>()->default_value("server"))
        ("json", "write the full result here", cxxopts::value<std::string>()->default_value(""))
        ("cdf", "write the latency CDF (us fraction) of the first step here",
         cxxopts::value<std::string>()->default_value(""))
        ("probe", "shell command to run once the streams are open (output recorded)",
         cxxopts::value<std::string>()->default_value(""))
        ("header", "an extra request header line; {i} and {token} as in --path",
         cxxopts::value<std::string>()->default_value(""))
        ("tokens", "file of tokens, one per line: connection i's {token} is line i (cycling)",
         cxxopts::value<std::string>()->default_value(""))
        ("duration", "watch mode: hold the streams this many seconds, publish nothing, print a "
                     "JSON status line each second", cxxopts::value<double>()->default_value("0"))
        ("rst", "close the streams with a reset (SO_LINGER 0) at the end")
        ("rcvbuf", "SO_RCVBUF of each stream, set before connecting (0: the kernel's)",
         cxxopts::value<int>()->default_value("0"))
        ("h,help", "help");
    auto r = o.parse(argc, argv);
    if (r.count("help")) {
        fmt::print("{}\n", o.help());
        std::exit(0);
    }
    options opt;
    opt.host = r["host"].as<std::string>();
    opt.port = r["port"].as<int>();
    opt.path = r["path"].as<std::string>();
    opt.conns = r["conns"].as<int>();
    opt.workers = std::clamp(std::max(r["workers"].as<int>(), (opt.conns + max_conns_per_worker - 1) / max_conns_per_worker), 1, max_workers);
    opt.ramp = r["ramp"].as<double>();
    opt.sources = r["sources"].as<int>();
    opt.publish = r["publish"].as<std::string>();
    opt.pub_host = r["pub-host"].as<std::string>();
    opt.pub_port = r["pub-port"].as<int>();
    opt.pub_path = r["pub-path"].as<std::string>();
    opt.channel = r["channel"].as<std::string>();
    opt.private_channels = r["private-channels"].as<int>();
    opt.private_prefix = r["private-prefix"].as<std::string>();
    opt.rates = parse_doubles(r["rates"].as<std::string>());
    if (opt.rates.size() > max_steps) opt.rates.resize(max_steps);
    opt.step_seconds = r["step-seconds"].as<double>();
    opt.messages = r["messages"].as<int>();
    opt.size = r["size"].as<int>();
    opt.hold = r["hold"].as<double>();
    opt.settle = r["settle"].as<double>();
    opt.churn = r["churn"].as<double>();
    for (double p : parse_doubles(r["pids"].as<std::string>())) opt.pids.push_back(static_cast<int>(p));
    opt.label = r["label"].as<std::string>();
    opt.json = r["json"].as<std::string>();
    opt.cdf = r["cdf"].as<std::string>();
    opt.probe = r["probe"].as<std::string>();
    opt.header = r["header"].as<std::string>();
    opt.duration = r["duration"].as<double>();
    opt.rst = r.count("rst") > 0;
    opt.rcvbuf = r["rcvbuf"].as<int>();
    if (auto file = r["tokens"].as<std::string>(); !file.empty()) {
        std::ifstream in(file);
        for (std::string line; std::getline(in, line);)
            if (!line.empty()) opt.tokens.push_back(line);
        if (opt.tokens.empty()) {
            fmt::print(stderr, "loadgen: no tokens in {}\n", file);
            std::exit(2);
        }
    }
    return opt;
}

std::string json_escape(std::string_view in) {
    std::string out;
    for (char c : in) {
        if (c == '"' || c == '\\') out += '\\', out += c;
        else if (c == '\n') out += "\\n";
        else if (static_cast<unsigned char>(c) >= 0x20) out += c;
    }
    return out;
}

std::int64_t total(shared_state& sh, int workers, std::atomic<std::int64_t> worker_stats::*f) {
    std::int64_t n = 0;
    for (int w = 0; w < workers; ++w) n += (sh.workers[w].*f).load();
    return n;
}

// Streams of all workers that did not open.
std::int64_t total_failed(shared_state& sh, int workers) {
    std::int64_t n = 0;
    for (int w = 0; w < workers; ++w) n += sh.workers[w].failures.failed();
    return n;
}

}  // namespace

// Watch mode: one JSON line a second until --duration is over. Worker counters are read
// without synchronisation: a status line is a sample, not an exact cut.
void watch(const options& o, shared_state& sh, std::int64_t t_start) {
    sh.churn_on.store(o.churn > 0);
    const std::int64_t end = now_ns() + static_cast<std::int64_t>(o.duration * 1e9);
    for (std::int64_t next = now_ns();; ) {
        next += 1'000'000'000;
        sleep_until_ns(std::min(next, end));
        std::int64_t failed = 0, refused = 0, closed = 0, dup = 0, reorder = 0;
        for (int w = 0; w < o.workers; ++w) {
            failed += sh.workers[w].failures.failed();
            refused += sh.workers[w].failures.answers();
            closed += sh.workers[w].closed_early;
            dup += sh.workers[w].dup;
            reorder += sh.workers[w].reorder;
        }
        const std::int64_t connected = total(sh, o.workers, &worker_stats::connected);
        std::string tags;
        for (int s = 0; s < max_steps; ++s) {
            histogram h{};
            std::int64_t frames = 0;
            for (int w = 0; w < o.workers; ++w) {
                h.merge(sh.workers[w].hist[s]);
                frames += sh.workers[w].step_frames[s];
            }
            if (frames == 0) continue;
            tags += fmt::format("{}\"{}\":{{\"frames\":{},\"p50_ms\":{:.3f},\"p99_ms\":{:.3f},\"max_ms\":{:.3f}}}",
                                tags.empty() ? "" : ",", s, frames, h.quantile_us(0.5) / 1e3,
                                h.quantile_us(0.99) / 1e3, h.max_us / 1e3);
        }
        fmt::print("{{\"t\":{:.1f},\"connected\":{},\"failed\":{},\"refused\":{},\"closed\":{},"
                   "\"open\":{},\"frames\":{},\"dup\":{},\"reorder\":{},\"churned\":{},\"tags\":{{{}}}}}\n",
                   (now_ns() - t_start) / 1e9, connected, failed, refused, closed, connected - closed, total(sh, o.workers, &worker_stats::frames), dup,
                   reorder, total(sh, o.workers, &worker_stats::churn_done), tags);
        std::fflush(stdout);
        if (now_ns() >= end) break;
    }
    sh.churn_on.store(false);
}

int main(int argc, char** argv) {
    options o;
    try {
        o = parse_options(argc, argv);
    } catch (const std::exception& e) {
        fmt::print(stderr, "loadgen: {}\n", e.what());
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);

    void* mem = mmap(nullptr, sizeof(shared_state), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    auto& sh = *new (mem) shared_state{};

    proc_sample base = sample_pids(o.pids);
    std::int64_t slab0 = slab_bytes();

    std::vector<pid_t> kids;
    std::int64_t t_start = now_ns();
    for (int w = 0; w < o.workers; ++w) {
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a parent that was killed
            worker(o, sh, w).run();
            _exit(0);
        }
        kids.push_back(pid);
    }

    // Phase 1: connect.
    std::int64_t deadline = t_start + static_cast<std::int64_t>((o.conns / o.ramp + 30) * 1e9);
    while (now_ns() < deadline) {
        auto done = total(sh, o.workers, &worker_stats::connected) + total_failed(sh, o.workers);
        if (done >= o.conns) break;
        usleep(20'000);
    }
    std::int64_t connected = total(sh, o.workers, &worker_stats::connected);
    std::int64_t failed = o.conns - connected;
    const auto why = loadgen::summarize(o.workers, [&](int w) -> const failure_counts& {
        return sh.workers[w].failures;
    }, failed);
    double connect_s = (now_ns() - t_start) / 1e9;
    usleep(static_cast<useconds_t>(o.hold * 1e6));
    proc_sample idle = sample_pids(o.pids);
    std::int64_t slab1 = slab_bytes();
    std::string probe_out;
    if (!o.probe.empty()) {
        if (FILE* f = popen(o.probe.c_str(), "r")) {
            char line[512];
            while (fgets(line, sizeof line, f)) probe_out += line;
            pclose(f);
        }
    }

    // Phase 2: publish, step by step.
    if (o.duration > 0) {
        // Why the streams that did not open failed, before the status lines.
        fmt::print("{{\"connected\":{},\"failed\":{},\"failed_by\":{},\"failed_status\":{}}}\n", connected,
                   failed, why.by_reason, why.by_status);
        std::fflush(stdout);
        watch(o, sh, t_start);
        sh.stop.store(true);
        for (pid_t k : kids) waitpid(k, nullptr, 0);
        return 0;
    }

    struct step_result {
        double rate;
        std::int64_t messages, expected, delivered;
        double seconds, cpu_us_per_frame;
    };
    std::vector<step_result> steps;
    std::int64_t seq = 0;
    sh.churn_on.store(o.churn > 0);
    proc_sample before_churn = idle;
    try {
        publisher pub(o);
        if (o.private_channels > 0) {
            // Every private channel once (as fast as the socket takes them), then the steps.
            for (int i = 0; i < o.private_channels; ++i)
                pub.publish(o.private_prefix + std::to_string(i), seq++, max_steps - 1);
        }
        for (std::size_t s = 0; s < o.rates.size(); ++s) {
            double rate = o.rates[s];
            std::int64_t m = o.messages >= 0 ? o.messages : static_cast<std::int64_t>(rate * o.step_seconds);
            std::int64_t frames0 = total(sh, o.workers, &worker_stats::frames);
            proc_sample cpu0 = sample_pids(o.pids);
            std::int64_t t0 = now_ns();
            for (std::int64_t i = 0; i < m; ++i) {
                if (rate > 0) sleep_until_ns(t0 + static_cast<std::int64_t>(i * 1e9 / rate));
                pub.publish(o.channel, seq++, static_cast<int>(s));
            }
            std::int64_t expected = m * connected;
            std::int64_t settle_end = now_ns() + static_cast<std::int64_t>(o.settle * 1e9);
            while (now_ns() < settle_end) {
                std::int64_t got = 0;
                for (int w = 0; w < o.workers; ++w) got += sh.workers[w].step_frames[s];
                if (got >= expected) break;
                usleep(10'000);
            }
            double secs = (now_ns() - t0) / 1e9;
            proc_sample cpu1 = sample_pids(o.pids);
            std::int64_t delivered = 0;
            for (int w = 0; w < o.workers; ++w) delivered += sh.workers[w].step_frames[s];
            std::int64_t frames1 = total(sh, o.workers, &worker_stats::frames);
            double cpu_us = frames1 > frames0 ? (cpu1.cpu_seconds - cpu0.cpu_seconds) * 1e6 / (frames1 - frames0) : 0;
            steps.push_back({rate, m, expected, delivered, secs, cpu_us});
        }
        if (o.private_channels > 0) {
            // Give the private deliveries their own settle (they went first).
            std::int64_t settle_end = now_ns() + static_cast<std::int64_t>(o.settle * 1e9);
            while (now_ns() < settle_end) {
                std::int64_t got = 0;
                for (int w = 0; w < o.workers; ++w) got += sh.workers[w].step_frames[max_steps - 1];
                if (got >= connected) break;
                usleep(10'000);
            }
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "loadgen: {}\n", e.what());
    }
    sh.churn_on.store(false);
    std::int64_t churned = total(sh, o.workers, &worker_stats::churn_done);
    if (o.churn > 0) usleep(2'000'000);  // let closed churn connections be reclaimed
    proc_sample after = sample_pids(o.pids);

    sh.stop.store(true);
    for (pid_t k : kids) waitpid(k, nullptr, 0);

    histogram all{};
    histogram per_step[max_steps]{};
    std::int64_t dup = 0, reorder = 0, closed_early = 0, private_got = 0;
    for (int w = 0; w < o.workers; ++w) {
        for (std::size_t s = 0; s < steps.size(); ++s) {
            per_step[s].merge(sh.workers[w].hist[s]);
            all.merge(sh.workers[w].hist[s]);
        }
        private_got += sh.workers[w].step_frames[max_steps - 1];
        dup += sh.workers[w].dup;
        reorder += sh.workers[w].reorder;
        closed_early += sh.workers[w].closed_early;
    }
    std::int64_t expected = 0, delivered = 0;
    for (auto& s : steps) {
        expected += s.expected;
        delivered += s.delivered;
    }
    if (o.private_channels > 0) {
        expected += connected;
        delivered += private_got;
    }
    std::int64_t lost = std::max<std::int64_t>(0, expected - delivered);
    double rss_per_conn = connected ? double(idle.rss_bytes - base.rss_bytes) / connected : 0;
    double slab_per_conn = connected ? double(slab1 - slab0) / connected : 0;

    // One-line summary.
    fmt::print("{}: conns {}/{} in {:.1f}s ({:.0f}/s), rss/conn {:.0f} B, slab/conn {:.0f} B, "
               "delivered {}/{} lost {} dup {} reorder {} closed {}, p50 {:.1f}ms p99 {:.1f}ms max {:.1f}ms\n",
               o.label, connected, o.conns, connect_s, connected / std::max(connect_s, 1e-9), rss_per_conn,
               slab_per_conn, delivered, expected, lost, dup, reorder, closed_early,
               all.quantile_us(0.5) / 1e3, all.quantile_us(0.99) / 1e3, all.max_us / 1e3);
    if (failed > 0) fmt::print("  failed: {}, answers by status: {}\n", why.by_reason, why.by_status);
    for (std::size_t s = 0; s < steps.size(); ++s) {
        const auto& st = steps[s];
        fmt::print("  step {}: {} msg/s x {} conns = {:.0f} deliveries/s; delivered {}/{}; p50 {:.1f}ms "
                   "p90 {:.1f}ms p99 {:.1f}ms p99.9 {:.1f}ms max {:.1f}ms; cpu {:.2f} us/frame\n",
                   s, st.rate, connected, st.rate * connected, st.delivered, st.expected,
                   per_step[s].quantile_us(0.5) / 1e3, per_step[s].quantile_us(0.9) / 1e3,
                   per_step[s].quantile_us(0.99) / 1e3, per_step[s].quantile_us(0.999) / 1e3,
                   per_step[s].max_us / 1e3, st.cpu_us_per_frame);
    }

    if (!o.json.empty()) {
        std::string js = fmt::format(
            "{{\"label\":\"{}\",\"conns\":{},\"connected\":{},\"failed\":{},\"connect_seconds\":{:.3f},"
            "\"connect_rate\":{:.1f},\"rss_base\":{},\"rss_idle\":{},\"rss_after\":{},\"rss_per_conn\":{:.1f},"
            "\"slab_per_conn\":{:.1f},\"expected\":{},\"delivered\":{},\"lost\":{},\"dup\":{},\"reorder\":{},"
            "\"closed_early\":{},\"churned\":{},\"rss_before_churn\":{},\"p50_ms\":{:.3f},\"p90_ms\":{:.3f},"
            "\"p99_ms\":{:.3f},\"p999_ms\":{:.3f},\"max_ms\":{:.3f},\"steps\":[",
            o.label, o.conns, connected, failed, connect_s, connected / std::max(connect_s, 1e-9),
            base.rss_bytes, idle.rss_bytes, after.rss_bytes, rss_per_conn, slab_per_conn, expected,
            delivered, lost, dup, reorder, closed_early, churned, before_churn.rss_bytes,
            all.quantile_us(0.5) / 1e3, all.quantile_us(0.9) / 1e3, all.quantile_us(0.99) / 1e3,
            all.quantile_us(0.999) / 1e3, all.max_us / 1e3);
        for (std::size_t s = 0; s < steps.size(); ++s) {
            const auto& st = steps[s];
            js += fmt::format(
                "{}{{\"rate\":{},\"messages\":{},\"expected\":{},\"delivered\":{},\"lost\":{},"
                "\"deliveries_per_s\":{:.1f},\"p50_ms\":{:.3f},\"p90_ms\":{:.3f},\"p99_ms\":{:.3f},"
                "\"p999_ms\":{:.3f},\"max_ms\":{:.3f},\"cpu_us_per_frame\":{:.3f}}}",
                s ? "," : "", st.rate, st.messages, st.expected, st.delivered,
                std::max<std::int64_t>(0, st.expected - st.delivered), st.rate * connected,
                per_step[s].quantile_us(0.5) / 1e3, per_step[s].quantile_us(0.9) / 1e3,
                per_step[s].quantile_us(0.99) / 1e3, per_step[s].quantile_us(0.999) / 1e3,
                per_step[s].max_us / 1e3, st.cpu_us_per_frame);
        }
        js += fmt::format("],\"failed_by\":{},\"failed_status\":{},\"probe\":\"{}\",\"workers\":{}}}\n",
                          why.by_reason, why.by_status, json_escape(probe_out), o.workers);
        std::ofstream(o.json) << js;
    }
    if (!o.cdf.empty() && !steps.empty()) {
        std::ofstream out(o.cdf);
        const histogram& h = per_step[0];
        std::uint64_t seen = 0;
        for (int i = 0; i < histogram::buckets; ++i) {
            if (!h.count[i]) continue;
            seen += h.count[i];
            out << fmt::format("{:.1f} {:.6f}\n", std::fmin(histogram::upper_us(i), double(h.max_us)) / 1e3,
                               double(seen) / double(h.total));
        }
    }
    return 0;
}

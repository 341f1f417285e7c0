// The floor: the cheapest possible SSE fan-out, for comparison only. One thread, epoll,
// one send() per subscriber per message, no queues, no timers, no limits. A socket that
// can't take a whole frame at once is closed and counted (it has nowhere to queue).
//
//   floor --port 3100 --redis-port 6379
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

volatile sig_atomic_t stopping = 0;

struct client {
    std::string request;
    std::vector<std::string> channels;
    bool streaming = false;
};

std::unordered_map<int, client> clients;
std::unordered_map<std::string, std::vector<int>> channel_fds;
redisContext* redis = nullptr;
unsigned long long frames_sent = 0, drops = 0;

void subscribe(const std::string& channel) {
    const char* argv[] = {"SUBSCRIBE", channel.c_str()};
    size_t lens[] = {9, channel.size()};
    redisAppendCommandArgv(redis, 2, argv, lens);
    int done = 0;
    while (!done) redisBufferWrite(redis, &done);
}

void drop(int epfd, int fd) {
    auto it = clients.find(fd);
    if (it == clients.end()) return;
    for (const auto& ch : it->second.channels) {
        auto& v = channel_fds[ch];
        for (auto& x : v)
            if (x == fd) {
                x = v.back();
                v.pop_back();
                break;
            }
    }
    clients.erase(it);
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
}

void on_request(int fd, client& c) {
    auto end = c.request.find("\r\n\r\n");
    if (end == std::string::npos) return;
    std::string_view line(c.request.data(), c.request.find("\r\n"));
    auto q = line.find("channel=");
    if (q != std::string_view::npos) {
        auto v = line.substr(q + 8);
        v = v.substr(0, v.find_first_of(" &"));
        while (!v.empty()) {
            auto comma = v.find(',');
            std::string name(v.substr(0, comma));
            if (!name.empty()) c.channels.push_back(name);
            if (comma == std::string_view::npos) break;
            v.remove_prefix(comma + 1);
        }
    }
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=utf-8\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n\r\n: registered\n";
    send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    for (const auto& ch : c.channels) {
        auto& v = channel_fds[ch];
        if (v.empty()) subscribe(ch);
        v.push_back(fd);
    }
    c.streaming = true;
    c.request.clear();
    c.request.shrink_to_fit();
}

void on_message(int epfd, std::string_view channel, std::string_view payload) {
    std::string frame = "data: ";
    frame.append(payload).append("\n\n");
    auto it = channel_fds.find(std::string(channel));
    if (it == channel_fds.end()) return;
    std::vector<int> dead;
    for (int fd : it->second) {
        ssize_t n = send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == static_cast<ssize_t>(frame.size()))
            ++frames_sent;
        else
            dead.push_back(fd);
    }
    for (int fd : dead) {
        ++drops;
        drop(epfd, fd);
    }
}

}  // namespace

int main(int argc, char** argv) {
    int port = 3100, redis_port = 6379;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--redis-port")) redis_port = atoi(argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, [](int) { stopping = 1; });
    signal(SIGINT, [](int) { stopping = 1; });
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);

    redis = redisConnect("127.0.0.1", redis_port);
    if (!redis || redis->err) {
        fprintf(stderr, "floor: cannot connect to redis\n");
        return 1;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) || listen(lfd, 65535)) {
        perror("floor: bind/listen");
        return 1;
    }
    int epfd = epoll_create1(0);
    epoll_event ev{EPOLLIN, {.fd = lfd}};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev = {EPOLLIN, {.fd = redis->fd}};
    epoll_ctl(epfd, EPOLL_CTL_ADD, redis->fd, &ev);
    fprintf(stderr, "floor: listening on 127.0.0.1:%d\n", port);

    std::vector<epoll_event> events(1024);
    char buf[16384];
    while (!stopping) {
        int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), 200);
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                while (true) {
                    int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
                    if (c < 0) break;
                    clients[c];
                    epoll_event cev{EPOLLIN | EPOLLRDHUP, {.fd = c}};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, c, &cev);
                }
            } else if (fd == redis->fd) {
                if (redisBufferRead(redis) != REDIS_OK) {
                    fprintf(stderr, "floor: redis read error\n");
                    return 1;
                }
                void* reply = nullptr;
                while (redisReaderGetReply(redis->reader, &reply) == REDIS_OK && reply) {
                    auto* r = static_cast<redisReply*>(reply);
                    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                        std::string_view(r->element[0]->str) == "message")
                        on_message(epfd, {r->element[1]->str, static_cast<size_t>(r->element[1]->len)},
                                   {r->element[2]->str, static_cast<size_t>(r->element[2]->len)});
                    freeReplyObject(r);
                    reply = nullptr;
                }
            } else {
                ssize_t got = recv(fd, buf, sizeof buf, 0);
                auto it = clients.find(fd);
                if (got <= 0 || it == clients.end()) {
                    drop(epfd, fd);
                    continue;
                }
                if (!it->second.streaming) {
                    it->second.request.append(buf, static_cast<size_t>(got));
                    on_request(fd, it->second);
                }
            }
        }
    }
    fprintf(stderr, "floor: frames_sent=%llu drops=%llu\n", frames_sent, drops);
    return 0;
}

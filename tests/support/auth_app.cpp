#include "support/auth_app.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "support/process.h"

namespace test {

auth_app::auth_app(std::string unix_path) : _unix_path(std::move(unix_path)) {
    if (_unix_path.empty()) {
        _listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(_listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error("auth_app: bind");
        socklen_t len = sizeof a;
        getsockname(_listen_fd, reinterpret_cast<sockaddr*>(&a), &len);
        _port = ntohs(a.sin_port);
    } else {
        _listen_fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", _unix_path.c_str());
        ::unlink(_unix_path.c_str());
        if (::bind(_listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error("auth_app: bind unix");
    }
    ::listen(_listen_fd, 512);
    _acceptor = std::thread([this] { accept_loop(); });
}

auth_app::~auth_app() {
    stop();
    _acceptor.join();
    for (auto& t : _threads) t.join();
}

void auth_app::stop() {
    if (_stopping.exchange(true)) return;
    ::shutdown(_listen_fd, SHUT_RDWR);
    std::lock_guard lock(_mu);
    for (int fd : _fds) ::shutdown(fd, SHUT_RDWR);
}

void auth_app::accept_loop() {
    while (!_stopping) {
        int fd = ::accept(_listen_fd, nullptr, nullptr);
        if (fd < 0) break;
        ++_connections;
        std::lock_guard lock(_mu);
        _fds.push_back(fd);
        _threads.emplace_back([this, fd] { serve(fd); });
    }
    ::close(_listen_fd);
}

std::map<std::string, std::string> auth_app::last_headers() const {
    std::lock_guard lock(_mu);
    return _last;
}

// Requests on one keep-alive connection, answered in order.
void auth_app::serve(int fd) {
    std::string buf;
    char chunk[4096];
    while (!_stopping) {
        auto end = buf.find("\r\n\r\n");
        if (end == std::string::npos) {
            ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
            if (n <= 0) break;
            buf.append(chunk, static_cast<std::size_t>(n));
            continue;
        }
        std::string head = buf.substr(0, end);
        buf.erase(0, end + 4);
        std::map<std::string, std::string> headers;
        std::size_t pos = head.find("\r\n");
        headers[":request"] = head.substr(0, pos);
        while (pos != std::string::npos) {
            std::size_t next = head.find("\r\n", pos + 2);
            std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
            pos = next;
            auto colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string name = line.substr(0, colon);
            std::transform(name.begin(), name.end(), name.begin(), ::tolower);
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            headers[name] = value;
        }
        {
            std::lock_guard lock(_mu);
            _last = headers;
        }
        if (auto d = _delay_ms.load(); d > 0) std::this_thread::sleep_for(std::chrono::milliseconds(d));
        if (_stopping) break;
        std::string response = answer(headers);
        ++_requests;
        if (::send(fd, response.data(), response.size(), MSG_NOSIGNAL) < 0) break;
    }
    ::close(fd);
}

// session=<name>: the user's own channel and the public ones. session=banned: 403.
// No session: 401.
std::string auth_app::answer(const std::map<std::string, std::string>& headers) {
    std::string user;
    if (auto it = headers.find("cookie"); it != headers.end()) {
        auto p = it->second.find("session=");
        if (p != std::string::npos) user = it->second.substr(p + 8, it->second.find(';', p) - p - 8);
    }
    auto reply = [](int status, const std::string& text, const std::string& body) {
        return "HTTP/1.1 " + std::to_string(status) + " " + text +
               "\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
    };
    if (user.empty()) return reply(401, "Unauthorized", "{}");
    bool revoked = user == "banned";
    {
        std::lock_guard lock(_mu);
        revoked |= std::find(_revoked.begin(), _revoked.end(), user) != _revoked.end();
    }
    if (revoked) return reply(403, "Forbidden", "{}");
    return reply(200, "OK",
                 R"({"channels":["user_)" + user + R"(","public*"],"sub":")" + user + R"("})");
}

}  // namespace test

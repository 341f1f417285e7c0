#include "net/listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace jugglite {

namespace {

std::string errno_text(std::string_view what) {
    return fmt::format("{}: {}", what, std::strerror(errno));
}

// Backlog for listen(2); the kernel caps it at net.core.somaxconn.
constexpr int listen_backlog = 65535;

// TCP_DEFER_ACCEPT: a handshake's bare ACK does not make a connection to accept; the
// client's first data segment (its request) does. When a storm overflows the accept
// queue, the kernel drops the segment that would have queued the connection, whatever it
// carries. Without this, a later bare ACK (answering a SYN-ACK retransmission) queued it
// with the request still in the client's retransmission backoff, which can outlast the
// 10 s request timeout (408s at 1M streams). Now the request arrives with the connection.
// A client that sends nothing is queued after about this many seconds anyway, and then
// has the request timeout; until then it holds no slot, only the kernel's half-open entry.
constexpr int defer_accept_seconds = 30;

}  // namespace

std::expected<unique_fd, std::string> listen_tcp(const std::string& address, std::uint16_t port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string port_text = std::to_string(port);
    if (int rc = getaddrinfo(address.c_str(), port_text.c_str(), &hints, &res); rc != 0)
        return std::unexpected(fmt::format("bad listen address '{}': {}", address, gai_strerror(rc)));
    unique_fd fd(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        freeaddrinfo(res);
        return std::unexpected(errno_text("socket"));
    }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_accept_seconds,
                 sizeof defer_accept_seconds);
    int rc = ::bind(fd.get(), res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc < 0) return std::unexpected(errno_text(fmt::format("bind {}:{}", address, port)));
    if (::listen(fd.get(), listen_backlog) < 0) return std::unexpected(errno_text("listen"));
    return fd;
}

std::expected<unique_fd, std::string> listen_unix(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path)
        return std::unexpected(fmt::format("socket path too long: {}", path));
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return std::unexpected(errno_text("socket"));
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
        return std::unexpected(errno_text(fmt::format("bind {}", path)));
    ::chmod(path.c_str(), 0666);
    if (::listen(fd.get(), listen_backlog) < 0) return std::unexpected(errno_text("listen"));
    return fd;
}

std::expected<unique_fd, std::string> make_eventfd(bool nonblocking) {
    unique_fd fd(::eventfd(0, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0)));
    if (!fd) return std::unexpected(errno_text("eventfd"));
    return fd;
}

std::uint64_t raise_nofile_limit() noexcept {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
    return lim.rlim_cur;
}

std::string format_address(const sockaddr_storage& addr, socklen_t len) {
    char text[INET6_ADDRSTRLEN] = {};
    if (addr.ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
        const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
        inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    } else if (addr.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
        const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
        if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr)) inet_ntop(AF_INET, &a.sin6_addr.s6_addr[12], text, sizeof text);
        else inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
    } else if (addr.ss_family == AF_UNIX) {
        return "unix";
    }
    return text;
}

}  // namespace jugglite

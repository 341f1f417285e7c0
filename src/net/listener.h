// Listening sockets and the eventfd used for cross-thread wakeups.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <expected>
#include <string>

#include "net/unique_fd.h"

namespace jugglite {

// A TCP listener on address:port with SO_REUSEPORT (so each shard can have its own and
// the kernel spreads connections), and the options accepted sockets inherit: TCP_NODELAY
// and SO_KEEPALIVE. Direct descriptors can't be passed to setsockopt, hence here.
[[nodiscard]] std::expected<unique_fd, std::string> listen_tcp(const std::string& address,
                                                               std::uint16_t port);

// A unix-socket listener at `path` (an existing socket file there is replaced), mode 0666
// so that a proxy running as another user can connect.
[[nodiscard]] std::expected<unique_fd, std::string> listen_unix(const std::string& path);

// A close-on-exec eventfd. A ring reads it blocking (io_uring arms a poll); poll(2) users
// read it non-blocking.
[[nodiscard]] std::expected<unique_fd, std::string> make_eventfd(bool nonblocking);

// The address in `addr` as text: "192.0.2.1", "2001:db8::1" (an IPv4-mapped IPv6 address
// as its IPv4 form), or "unix" for a unix-socket peer; empty if unknown.
[[nodiscard]] std::string format_address(const sockaddr_storage& addr, socklen_t len);

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
std::uint64_t raise_nofile_limit() noexcept;

}  // namespace jugglite

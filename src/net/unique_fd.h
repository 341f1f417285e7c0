// Move-only owner of a process file descriptor.
#pragma once

#include <unistd.h>

#include <type_traits>
#include <utility>

namespace jugglite {

class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : _fd(fd) {}
    unique_fd(unique_fd&& o) noexcept : _fd(std::exchange(o._fd, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o._fd, -1));
        return *this;
    }
    ~unique_fd() { reset(); }

    void reset(int fd = -1) noexcept {
        if (_fd >= 0) ::close(_fd);
        _fd = fd;
    }
    [[nodiscard]] int get() const noexcept { return _fd; }
    explicit operator bool() const noexcept { return _fd >= 0; }

private:
    int _fd = -1;
};

static_assert(std::is_nothrow_move_constructible_v<unique_fd>);

}  // namespace jugglite

#include "net/ring.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace jugglite {

std::expected<ring, std::string> ring::create(unsigned sq_entries, unsigned cq_entries) {
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
              IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP;
    p.cq_entries = cq_entries;
    ring r;
    int rc = io_uring_queue_init_params(sq_entries, &r._ring, &p);
    if (rc < 0) return std::unexpected(fmt::format("io_uring_queue_init: {}", std::strerror(-rc)));
    r._live = true;
    if (const char* every = std::getenv("JUGGLITE_FAILPOINT_SQE"))
        r._fail_every = static_cast<unsigned>(std::strtoul(every, nullptr, 10));
    return r;
}

ring::ring(ring&& o) noexcept
    : _ring(o._ring), _live(std::exchange(o._live, false)), _fail_every(o._fail_every), _calls(o._calls) {}

ring::~ring() {
    if (_live) io_uring_queue_exit(&_ring);
}

io_uring_sqe* ring::sqe() noexcept {
    if (_fail_every != 0 && ++_calls % _fail_every == 0) return nullptr;
    io_uring_sqe* s = io_uring_get_sqe(&_ring);
    if (s) return s;
    // The SQ is full mid-batch: push this part of the batch to the kernel and continue.
    if (io_uring_submit(&_ring) < 0) return nullptr;
    return io_uring_get_sqe(&_ring);
}

int ring::submit_and_wait(std::chrono::milliseconds timeout) noexcept {
    __kernel_timespec ts{};
    ts.tv_sec = timeout.count() / 1000;
    ts.tv_nsec = (timeout.count() % 1000) * 1'000'000;
    io_uring_cqe* cqe = nullptr;
    return io_uring_submit_and_wait_timeout(&_ring, &cqe, 1, &ts, nullptr);
}

int ring::submit() noexcept { return io_uring_submit(&_ring); }

int ring::submit_and_get_events() noexcept { return io_uring_submit_and_get_events(&_ring); }

std::expected<void, std::string> ring::register_eventfd(int eventfd) {
    int rc = io_uring_register_eventfd(&_ring, eventfd);
    if (rc < 0) return std::unexpected(fmt::format("io_uring_register_eventfd: {}", std::strerror(-rc)));
    return {};
}

std::expected<void, std::string> ring::register_sparse_files(unsigned slots) {
    int rc = io_uring_register_files_sparse(&_ring, slots);
    if (rc < 0)
        return std::unexpected(
            fmt::format("io_uring_register_files_sparse({}): {}", slots, std::strerror(-rc)));
    return {};
}

}  // namespace jugglite

// RAII owner of one io_uring, created on the thread that will submit to it.
#pragma once

#include <liburing.h>

#include <chrono>
#include <expected>
#include <string>
#include <system_error>

namespace jugglite {

class ring {
public:
    // Creates a ring with SINGLE_ISSUER | DEFER_TASKRUN and a CQ of cq_entries. Must be
    // called on the thread that submits (the kernel rejects submits from any other).
    [[nodiscard]] static std::expected<ring, std::string> create(unsigned sq_entries,
                                                                 unsigned cq_entries);
    ring(ring&& o) noexcept;
    ring& operator=(ring&&) = delete;
    ring(const ring&) = delete;
    ~ring();

    // A free SQE. When the SQ is full it submits what is queued first, so it only
    // returns nullptr if the kernel refuses the submission (-EAGAIN/-EBUSY under memory
    // pressure). For tests of that path, JUGGLITE_FAILPOINT_SQE=N in the environment makes
    // every Nth call return nullptr as if the kernel had refused.
    [[nodiscard]] io_uring_sqe* sqe() noexcept;

    // Submits queued SQEs and waits for at least one completion or `timeout`.
    // Returns the number submitted or -errno (-ETIME and -EINTR are normal).
    int submit_and_wait(std::chrono::milliseconds timeout) noexcept;
    // Submits queued SQEs without waiting.
    int submit() noexcept;
    // Submits queued SQEs and runs deferred completion work (DEFER_TASKRUN) without
    // waiting, so that ready completions become visible to drain().
    int submit_and_get_events() noexcept;

    // Calls fn(const io_uring_cqe&) for every ready completion. Each is marked seen before
    // its handler runs, so that submissions made by handlers (sqe() submits when the SQ is
    // full) find room in the CQ instead of spilling into the kernel's overflow list.
    template <class Fn>
    unsigned drain(Fn&& fn) noexcept {
        unsigned n = 0;
        io_uring_cqe* cqe;
        while (io_uring_peek_cqe(&_ring, &cqe) == 0) {
            io_uring_cqe copy = *cqe;
            io_uring_cqe_seen(&_ring, cqe);
            fn(copy);
            ++n;
        }
        return n;
    }

    // Registers `eventfd` to be signalled when completions (or, with DEFER_TASKRUN, work
    // that will produce them) arrive, so one thread can sleep on several rings.
    [[nodiscard]] std::expected<void, std::string> register_eventfd(int eventfd);
    // Turns that signalling on (before sleeping) or off (while the loop runs anyway).
    void set_eventfd_enabled(bool on) noexcept { (void)io_uring_cq_eventfd_toggle(&_ring, on); }
    // Completions ready to drain.
    [[nodiscard]] unsigned cq_ready() const noexcept { return io_uring_cq_ready(&_ring); }

    // Registers a sparse direct-descriptor table of `slots` entries.
    [[nodiscard]] std::expected<void, std::string> register_sparse_files(unsigned slots);

    [[nodiscard]] io_uring* raw() noexcept { return &_ring; }

private:
    ring() = default;
    io_uring _ring{};
    bool _live = false;
    unsigned _fail_every = 0;  // the failpoint above; 0: off
    unsigned _calls = 0;
};

static_assert(std::is_nothrow_move_constructible_v<ring>);

}  // namespace jugglite

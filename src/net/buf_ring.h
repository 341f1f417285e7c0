// A provided-buffer ring: the kernel picks a receive buffer only when data arrives, so
// an armed but idle receive holds no memory.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace jugglite {

class buf_ring {
public:
    // mmaps `count` buffers of `size` bytes (count a power of two) and registers them as
    // buffer group `group` on `r`. liburing 2.3 lacks io_uring_setup_buf_ring, hence by hand.
    [[nodiscard]] static std::expected<buf_ring, std::string> create(io_uring* r, std::uint16_t group,
                                                                     std::uint32_t count,
                                                                     std::uint32_t size);
    buf_ring(buf_ring&& o) noexcept;
    buf_ring& operator=(buf_ring&&) = delete;
    ~buf_ring();

    // The bytes a completion delivered into buffer `id`.
    [[nodiscard]] std::string_view data(std::uint16_t id, std::uint32_t len) const noexcept;
    // Gives buffer `id` back to the kernel. Call once its bytes have been copied out.
    void recycle(std::uint16_t id) noexcept;

    [[nodiscard]] std::uint16_t group() const noexcept { return _group; }

private:
    buf_ring() = default;
    io_uring* _ring = nullptr;
    io_uring_buf_ring* _br = nullptr;  // the ring of buffer descriptors
    char* _buffers = nullptr;          // count * size bytes
    std::size_t _map_bytes = 0;
    std::uint32_t _count = 0;
    std::uint32_t _size = 0;
    std::uint16_t _group = 0;
};

static_assert(std::is_nothrow_move_constructible_v<buf_ring>);

}  // namespace jugglite

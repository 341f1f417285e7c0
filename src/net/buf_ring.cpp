#include "net/buf_ring.h"

#include <sys/mman.h>

#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace jugglite {

std::expected<buf_ring, std::string> buf_ring::create(io_uring* r, std::uint16_t group,
                                                      std::uint32_t count, std::uint32_t size) {
    buf_ring b;
    b._ring = r;
    b._count = count;
    b._size = size;
    b._group = group;
    // Descriptor ring first (page aligned, as the kernel requires), buffers after it.
    std::size_t ring_bytes = sizeof(io_uring_buf) * count;
    ring_bytes = (ring_bytes + 4095) & ~std::size_t{4095};
    b._map_bytes = ring_bytes + std::size_t{count} * size;
    void* mem = ::mmap(nullptr, b._map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    if (mem == MAP_FAILED) return std::unexpected(fmt::format("mmap: {}", std::strerror(errno)));
    b._br = static_cast<io_uring_buf_ring*>(mem);
    b._buffers = static_cast<char*>(mem) + ring_bytes;

    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(b._br);
    reg.ring_entries = count;
    reg.bgid = group;
    int rc = io_uring_register_buf_ring(r, &reg, 0);
    if (rc < 0) {
        ::munmap(mem, b._map_bytes);
        b._br = nullptr;
        return std::unexpected(fmt::format("io_uring_register_buf_ring: {}", std::strerror(-rc)));
    }
    io_uring_buf_ring_init(b._br);
    int mask = io_uring_buf_ring_mask(count);
    for (std::uint32_t i = 0; i < count; ++i)
        io_uring_buf_ring_add(b._br, b._buffers + std::size_t{i} * size, size,
                              static_cast<unsigned short>(i), mask, static_cast<int>(i));
    io_uring_buf_ring_advance(b._br, static_cast<int>(count));
    return b;
}

buf_ring::buf_ring(buf_ring&& o) noexcept
    : _ring(o._ring),
      _br(std::exchange(o._br, nullptr)),
      _buffers(o._buffers),
      _map_bytes(o._map_bytes),
      _count(o._count),
      _size(o._size),
      _group(o._group) {}

buf_ring::~buf_ring() {
    if (!_br) return;
    io_uring_unregister_buf_ring(_ring, _group);
    ::munmap(_br, _map_bytes);
}

std::string_view buf_ring::data(std::uint16_t id, std::uint32_t len) const noexcept {
    return {_buffers + std::size_t{id} * _size, len};
}

void buf_ring::recycle(std::uint16_t id) noexcept {
    io_uring_buf_ring_add(_br, _buffers + std::size_t{id} * _size, _size, id,
                          io_uring_buf_ring_mask(_count), 0);
    io_uring_buf_ring_advance(_br, 1);
}

}  // namespace jugglite

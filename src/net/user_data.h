// Packing of io_uring user_data: which operation, on which connection (a conn_id: ring
// and direct-descriptor slot; for accept, the ring), for which generation of that slot.
// A slot is reused after close; a completion whose generation differs from the slot's
// current one belongs to a closed connection.
#pragma once

#include <cstdint>

namespace jugglite {

enum class op : std::uint8_t {
    accept = 1,   // an accept on the shard's listener (id: the ring)
    recv,         // multishot recv on a connection
    send,         // the one send/sendmsg in flight on a connection
    cancel,       // cancel of a connection's requests
    close,        // close_direct of a connection's slot
    accept_cancel,  // cancel of a ring's accept (at shutdown, or to pause it)
    half_close,   // shutdown(SHUT_WR) after an answer, before lingering for the client's EOF
    nop,          // an SQE handed back unused, or a close nobody waits for
};

// Layout: op in bits 56..63, generation in 32..55 (wraps at 2^24), id in 0..31.
struct tag {
    op kind;
    std::uint32_t gen;
    std::uint32_t id;

    static constexpr std::uint32_t gen_mask = (1u << 24) - 1;

    [[nodiscard]] constexpr std::uint64_t pack() const noexcept {
        return (std::uint64_t(kind) << 56) | (std::uint64_t(gen & gen_mask) << 32) | id;
    }
    [[nodiscard]] static constexpr tag unpack(std::uint64_t v) noexcept {
        return {static_cast<op>(v >> 56), std::uint32_t(v >> 32) & gen_mask, std::uint32_t(v)};
    }
};

static_assert(tag::unpack(tag{op::send, 0xabcdef, 7}.pack()).gen == 0xabcdef);
static_assert(tag::unpack(tag{op::send, 0xabcdef, 7}.pack()).id == 7);
static_assert(tag::unpack(tag{op::close, 1, 0xffffffff}.pack()).kind == op::close);

}  // namespace jugglite

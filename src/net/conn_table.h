// Connection storage for one shard thread that drives several rings. A connection is
// named by a conn_id: the index of its ring and its slot in that ring's direct-descriptor
// table. Storage grows in chunks as slots are first used, so a table sized for 20,000
// connections holds memory for the ones actually seen. The kernel hands out the lowest
// free slot after a close (it resets its allocation hint to the freed slot), so the slots
// in use stay packed and the chunks touched track the peak of connections held.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "net/connection.h"

namespace jugglite {

// Bits 0..19: the slot in its ring's table; bits 20..31: the ring.
struct conn_id {
    static constexpr unsigned slot_bits = 20;
    static constexpr std::uint32_t max_slots = (1u << slot_bits) - 1;  // per ring
    static constexpr std::uint32_t max_rings = 1u << (32 - slot_bits);  // per shard

    [[nodiscard]] static constexpr std::uint32_t make(std::uint32_t ring, std::uint32_t slot) noexcept {
        return (ring << slot_bits) | slot;
    }
    [[nodiscard]] static constexpr std::uint32_t ring(std::uint32_t id) noexcept { return id >> slot_bits; }
    [[nodiscard]] static constexpr std::uint32_t slot(std::uint32_t id) noexcept { return id & max_slots; }
};

static_assert(conn_id::ring(conn_id::make(4095, conn_id::max_slots)) == 4095);
static_assert(conn_id::slot(conn_id::make(4095, conn_id::max_slots)) == conn_id::max_slots);

class conn_table {
public:
    static constexpr std::uint32_t chunk_size = 1024;

    // `rings` rings of `slots` slots each; nothing is allocated yet.
    conn_table(std::uint32_t rings, std::uint32_t slots);

    // The connection for `id`, allocating its chunk on first use (may throw bad_alloc).
    [[nodiscard]] connection& open_slot(std::uint32_t id);
    // The connection for `id`, whose chunk exists (any id that was ever opened).
    [[nodiscard]] connection& operator[](std::uint32_t id) noexcept {
        auto& chunks = _rings[conn_id::ring(id)];
        std::uint32_t s = conn_id::slot(id);
        return chunks[s / chunk_size][s % chunk_size];
    }
    // True when `id`'s chunk exists.
    [[nodiscard]] bool has(std::uint32_t id) const noexcept;

    [[nodiscard]] std::uint32_t rings() const noexcept { return static_cast<std::uint32_t>(_rings.size()); }
    [[nodiscard]] std::uint32_t slots() const noexcept { return _slots; }
    // Chunks allocated across all rings (for tests and memory accounting).
    [[nodiscard]] std::size_t chunks() const noexcept;

private:
    std::uint32_t _slots;
    std::vector<std::vector<std::unique_ptr<connection[]>>> _rings;
};

}  // namespace jugglite

// Connection storage for one shard thread that drives several rings. A connection is
// named by a conn_id: the index of its ring and its slot in that ring's direct-descriptor
// table. Storage grows in chunks as slots are first used, so a table sized for 20,000
// connections holds memory for the ones actually seen. Slots are chosen here (slot_pool),
// not by the kernel: IORING_FILE_INDEX_ALLOC searches upward from the slot after the last
// one it handed out, so under churn it walks the whole table and touches every chunk,
// whatever the number of connections held.
#pragma once

#include <algorithm>
#include <cstdint>
#include <new>
#include <memory>
#include <optional>
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

// The free slots of one ring's table: those freed, reused last-freed first, then those
// never used, in order. So the slots touched never exceed the peak of slots held at once.
class slot_pool {
public:
    explicit slot_pool(std::uint32_t slots) : _slots(slots) {}

    // A free slot, now taken, or nullopt when all are taken (or no memory is left to
    // track one more).
    [[nodiscard]] std::optional<std::uint32_t> take() noexcept {
        if (!_free.empty()) {
            std::uint32_t s = _free.back();
            _free.pop_back();
            return s;
        }
        if (_fresh >= _slots) return std::nullopt;
        try {  // room for every slot ever taken, so that give() never allocates
            if (_free.capacity() <= _fresh)
                _free.reserve(std::min<std::size_t>(_slots, std::max<std::size_t>(64, 2 * (_fresh + 1))));
        } catch (const std::bad_alloc&) {
            return std::nullopt;
        }
        return _fresh++;
    }
    // Returns `slot` (taken before) to the pool.
    void give(std::uint32_t slot) noexcept { _free.push_back(slot); }
    // Slots [0, high_water()) have been taken at some time.
    [[nodiscard]] std::uint32_t high_water() const noexcept { return _fresh; }
    [[nodiscard]] std::uint32_t taken() const noexcept {
        return _fresh - static_cast<std::uint32_t>(_free.size());
    }

private:
    std::uint32_t _slots;
    std::uint32_t _fresh = 0;
    std::vector<std::uint32_t> _free;
};

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

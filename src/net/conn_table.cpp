#include "net/conn_table.h"

namespace jugglite {

conn_table::conn_table(std::uint32_t rings, std::uint32_t slots) : _slots(slots), _rings(rings) {
    for (auto& r : _rings) r.resize((slots + chunk_size - 1) / chunk_size);
}

connection& conn_table::open_slot(std::uint32_t id) {
    auto& chunk = _rings[conn_id::ring(id)][conn_id::slot(id) / chunk_size];
    if (!chunk) chunk = std::make_unique<connection[]>(chunk_size);
    return (*this)[id];
}

bool conn_table::has(std::uint32_t id) const noexcept {
    std::uint32_t r = conn_id::ring(id), s = conn_id::slot(id);
    return r < _rings.size() && s < _slots && _rings[r][s / chunk_size] != nullptr;
}

std::size_t conn_table::chunks() const noexcept {
    std::size_t n = 0;
    for (const auto& r : _rings)
        for (const auto& c : r) n += c != nullptr;
    return n;
}

}  // namespace jugglite

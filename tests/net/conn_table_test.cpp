// Tests for conn_table: id packing, and chunks allocated only for slots used.
#include "net/conn_table.h"

#include <doctest/doctest.h>

using namespace jugglite;

TEST_CASE("conn_id packs ring and slot and unpacks them") {
    for (std::uint32_t ring : {0u, 1u, 51u, conn_id::max_rings - 1})
        for (std::uint32_t slot : {0u, 1u, 19'935u, conn_id::max_slots}) {
            auto id = conn_id::make(ring, slot);
            CHECK(conn_id::ring(id) == ring);
            CHECK(conn_id::slot(id) == slot);
        }
}

TEST_CASE("conn_table allocates a chunk only when one of its slots is first used") {
    conn_table t(3, 20'000);
    CHECK(t.chunks() == 0);
    CHECK_FALSE(t.has(conn_id::make(1, 5)));
    connection& c = t.open_slot(conn_id::make(1, 5));
    CHECK(t.chunks() == 1);
    CHECK(t.has(conn_id::make(1, 5)));
    CHECK(t.has(conn_id::make(1, conn_table::chunk_size - 1)));
    CHECK_FALSE(t.has(conn_id::make(1, conn_table::chunk_size)));
    CHECK_FALSE(t.has(conn_id::make(0, 5)));
    CHECK(&t[conn_id::make(1, 5)] == &c);
    c.gen = 7;
    CHECK(&t.open_slot(conn_id::make(1, 5)) == &c);  // reopening keeps the object
    CHECK(t[conn_id::make(1, 5)].gen == 7);
    (void)t.open_slot(conn_id::make(2, 19'999));  // the last, partial chunk
    CHECK(t.chunks() == 2);
    CHECK_FALSE(t.has(conn_id::make(3, 0)));      // no such ring
    CHECK_FALSE(t.has(conn_id::make(2, 20'000)));  // past the table
}

TEST_CASE("slot_pool: freed slots are reused last-freed first, before any slot never used") {
    slot_pool pool(4);
    CHECK(pool.take() == 0u);
    CHECK(pool.take() == 1u);
    CHECK(pool.take() == 2u);
    pool.give(0);
    pool.give(2);
    CHECK(pool.take() == 2u);  // the last freed
    CHECK(pool.take() == 0u);
    CHECK(pool.high_water() == 3);  // churn within the peak touches nothing new
    CHECK(pool.take() == 3u);
    CHECK_FALSE(pool.take().has_value());  // all four taken
    pool.give(1);
    CHECK(pool.taken() == 3);
    CHECK(pool.take() == 1u);
}

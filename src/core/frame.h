// An immutable, reference-counted byte buffer: one SSE frame shared by every recipient.
#pragma once

#include <atomic>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

#include "core/stream_id.h"

namespace jugglite {

// Header and bytes live in one allocation. The count is atomic because the redis thread
// creates a frame and several shards release it; bytes never change after creation.
class frame {
public:
    [[nodiscard]] std::string_view bytes() const noexcept {
        return {reinterpret_cast<const char*>(this + 1), _size};
    }
    [[nodiscard]] std::uint32_t size() const noexcept { return _size; }
    [[nodiscard]] std::uint64_t seq() const noexcept { return _seq; }
    // The history entry this frame delivers (its `id:`), or empty for a message published
    // without history and for the server's own frames.
    [[nodiscard]] const stream_id& id() const noexcept { return _id; }
    // monotonic_us() when the message arrived from Redis; 0 for the frames read from
    // history and the server's own. The delivery-delay histogram leaves those out, and the
    // shard leaves out streams being resumed (their replay holds live frames kept since).
    [[nodiscard]] std::int64_t received_us() const noexcept { return _received_us; }

private:
    friend class frame_ref;
    frame(std::uint32_t size, std::uint64_t seq, stream_id id) noexcept
        : _size(size), _seq(seq), _id(id) {}

    std::atomic<std::uint32_t> _refs{1};
    std::uint32_t _size;
    std::uint64_t _seq;
    stream_id _id;
    std::int64_t _received_us = 0;
};

// Owning handle to a frame. Copy adds a reference, destruction drops one.
class frame_ref {
public:
    frame_ref() noexcept = default;
    frame_ref(const frame_ref& o) noexcept : _f(o._f) {
        if (_f) _f->_refs.fetch_add(1, std::memory_order_relaxed);
    }
    frame_ref(frame_ref&& o) noexcept : _f(std::exchange(o._f, nullptr)) {}
    frame_ref& operator=(frame_ref o) noexcept {
        std::swap(_f, o._f);
        return *this;
    }
    ~frame_ref() { reset(); }

    // Allocates a frame of exactly `size` bytes carrying `seq` (and history entry `id`), and has `write(std::span<char>)`
    // fill every one of them before the frame is returned. That span is the only writable
    // view and must not be kept: once the frame can be shared its bytes never change.
    // Throws std::bad_alloc (std::bad_array_new_length past 4 GiB, before allocating) or
    // whatever `write` throws; nothing is leaked then.
    template <class Writer>
    [[nodiscard]] static frame_ref build(std::size_t size, std::uint64_t seq, Writer&& write,
                                         stream_id id = {}) {
        if (size > UINT32_MAX) throw std::bad_array_new_length();
        void* mem = ::operator new(sizeof(frame) + size);
        frame_ref r;
        r._f = new (mem) frame(static_cast<std::uint32_t>(size), seq, id);
        std::forward<Writer>(write)(std::span<char>(static_cast<char*>(mem) + sizeof(frame), size));
        return r;
    }

    // Copies `bytes` into a new frame carrying sequence number `seq` and entry `id`.
    [[nodiscard]] static frame_ref make(std::string_view bytes, std::uint64_t seq = 0,
                                        stream_id id = {}) {
        return build(bytes.size(), seq, [bytes](std::span<char> out) {
            if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
        }, id);
    }

    void reset() noexcept {
        if (_f && _f->_refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            _f->~frame();
            ::operator delete(_f);
        }
        _f = nullptr;
    }

    // Records when the message arrived. Only before the frame is shared: its creator holds
    // the one reference.
    void stamp_received(std::int64_t us) noexcept {
        assert(_f && _f->_refs.load(std::memory_order_relaxed) == 1);
        _f->_received_us = us;
    }

    [[nodiscard]] const frame* get() const noexcept { return _f; }
    const frame* operator->() const noexcept { return _f; }
    explicit operator bool() const noexcept { return _f != nullptr; }
    // For tests and diagnostics.
    [[nodiscard]] std::uint32_t use_count() const noexcept {
        return _f ? _f->_refs.load(std::memory_order_relaxed) : 0;
    }

private:
    frame* _f = nullptr;
};

static_assert(std::is_nothrow_move_constructible_v<frame_ref>);

}  // namespace jugglite

// Bounded lock-free single-producer/single-consumer queue, plus the "sleeping" flag
// that lets the producer wake the consumer only when it is about to block.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace jugglite {

inline constexpr std::size_t cache_line = 64;

// Exactly one thread calls try_push, exactly one other calls try_pop. Capacity is a
// power of two. Each side caches the other side's index and rereads it only when the
// cached value says the queue is full (producer) or empty (consumer), so a steady
// stream costs one shared-line transfer per batch rather than per element.
template <class T>
class spsc_queue {
public:
    explicit spsc_queue(std::size_t capacity)
        : _mask(capacity - 1), _slots(std::make_unique<slot[]>(capacity)) {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0) std::abort();  // caller bug
    }
    spsc_queue(const spsc_queue&) = delete;
    spsc_queue& operator=(const spsc_queue&) = delete;
    ~spsc_queue() {
        while (try_pop()) {
        }
    }

    // Producer side. Returns false (and leaves `v` untouched) when the queue is full.
    [[nodiscard]] bool try_push(T&& v) noexcept(std::is_nothrow_move_constructible_v<T>) {
        const std::size_t tail = _tail.value.load(std::memory_order_relaxed);
        if (tail - _head_cache >= capacity()) {
            _head_cache = _head.value.load(std::memory_order_acquire);
            if (tail - _head_cache >= capacity()) return false;
        }
        new (_slots[tail & _mask].storage) T(std::move(v));
        _tail.value.store(tail + 1, std::memory_order_release);
        return true;
    }

    // Consumer side. Returns nullopt when the queue is empty.
    [[nodiscard]] std::optional<T> try_pop() noexcept(std::is_nothrow_move_constructible_v<T>) {
        const std::size_t head = _head.value.load(std::memory_order_relaxed);
        if (head == _tail_cache) {
            _tail_cache = _tail.value.load(std::memory_order_acquire);
            if (head == _tail_cache) return std::nullopt;
        }
        T* p = std::launder(reinterpret_cast<T*>(_slots[head & _mask].storage));
        std::optional<T> out(std::move(*p));
        p->~T();
        _head.value.store(head + 1, std::memory_order_release);
        return out;
    }

    // Consumer side: true if nothing is queued (a fresh read of the producer's index).
    [[nodiscard]] bool empty() const noexcept {
        return _head.value.load(std::memory_order_relaxed) ==
               _tail.value.load(std::memory_order_acquire);
    }

    [[nodiscard]] std::size_t capacity() const noexcept { return _mask + 1; }

private:
    struct slot {
        alignas(T) unsigned char storage[sizeof(T)];
    };
    template <class V>
    struct alignas(cache_line) padded {
        V value{};
    };

    const std::size_t _mask;
    std::unique_ptr<slot[]> _slots;
    padded<std::atomic<std::size_t>> _head;  // written by the consumer
    alignas(cache_line) std::size_t _tail_cache = 0;  // consumer-private
    padded<std::atomic<std::size_t>> _tail;  // written by the producer
    alignas(cache_line) std::size_t _head_cache = 0;  // producer-private
};

// The consumer's "I am about to block" flag. Protocol (Dekker-style, hence seq_cst):
//   consumer: set_sleeping(); if (!queue.empty()) { clear(); continue; } block on eventfd;
//   producer: push(); if (should_wake()) write eventfd;
// Either the consumer sees the pushed element, or the producer sees the flag.
class wake_flag {
public:
    void set_sleeping() noexcept {
        _sleeping.store(true, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    void clear() noexcept { _sleeping.store(false, std::memory_order_relaxed); }
    // Producer: true exactly once per sleep, so one wakeup is sent per sleep, not per push.
    [[nodiscard]] bool should_wake() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return _sleeping.load(std::memory_order_relaxed) &&
               _sleeping.exchange(false, std::memory_order_acq_rel);
    }

private:
    alignas(cache_line) std::atomic<bool> _sleeping{false};
};

}  // namespace jugglite

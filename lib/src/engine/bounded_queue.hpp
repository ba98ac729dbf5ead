#pragma once
// A blocking FIFO with a bound in items and in bytes, whose waits also wake on close.
// Thread: any.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

namespace sluice {

template <typename T>
class BoundedQueue {
 public:
  /// `max_bytes` counts what the producer says each item weighs; 0 = no byte bound.
  /// An item heavier than max_bytes is still accepted when the queue is empty.
  explicit BoundedQueue(std::size_t max_items, std::size_t max_bytes = 0)
      : max_items_(max_items == 0 ? 1 : max_items), max_bytes_(max_bytes) {}

  /// Waits for room; returns false (and drops nothing: `item` is left as is) once closed.
  bool push(T&& item, std::size_t bytes = 0) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return closed_ || has_room(bytes); });
    if (closed_) return false;
    items_.emplace_back(std::move(item), bytes);
    bytes_ += bytes;
    not_empty_.notify_one();
    return true;
  }

  /// Adds without waiting if there is room; returns false when full or closed.
  bool try_push(T&& item, std::size_t bytes = 0) {
    std::lock_guard lock(mu_);
    if (closed_ || !has_room(bytes)) return false;
    items_.emplace_back(std::move(item), bytes);
    bytes_ += bytes;
    not_empty_.notify_one();
    return true;
  }

  /// Waits for an item; returns nullopt once closed and empty.
  std::optional<T> pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
    return take_locked();
  }

  /// Waits up to `timeout` for an item; nullopt on timeout or when closed and empty.
  template <typename Duration>
  std::optional<T> pop_for(Duration timeout) {
    std::unique_lock lock(mu_);
    not_empty_.wait_for(lock, timeout, [&] { return closed_ || !items_.empty(); });
    return take_locked();
  }

  std::optional<T> try_pop() {
    std::lock_guard lock(mu_);
    return take_locked();
  }

  /// No more pushes; pending items can still be popped. Wakes every waiter.
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  /// Drops every pending item and closes.
  void close_and_clear() {
    std::lock_guard lock(mu_);
    closed_ = true;
    items_.clear();
    bytes_ = 0;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }
  bool closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }

 private:
  bool has_room(std::size_t bytes) const {
    if (items_.empty()) return true;
    if (items_.size() >= max_items_) return false;
    return max_bytes_ == 0 || bytes_ + bytes <= max_bytes_;
  }
  std::optional<T> take_locked() {
    if (items_.empty()) return std::nullopt;
    auto [item, bytes] = std::move(items_.front());
    items_.pop_front();
    bytes_ -= bytes;
    not_full_.notify_one();
    return std::optional<T>(std::move(item));
  }

  const std::size_t max_items_;
  const std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<std::pair<T, std::size_t>> items_;
  std::size_t bytes_ = 0;
  bool closed_ = false;
};

}  // namespace sluice

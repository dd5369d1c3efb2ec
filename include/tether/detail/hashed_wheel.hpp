// The hashed timing wheel behind tether::timer_wheel, kept free of Asio and of any clock so that tests can
// drive it with explicit time points.
//
// Time is cut into ticks of fixed length starting at `start`; tick k ends at the boundary start + k * tick.
// A deadline belongs to the first boundary at or after it, and that boundary's tick index modulo the slot
// count picks its slot. advance(now) visits the slots of every boundary up to `now` and fires the nodes whose
// deadline has passed, so a deadline fires at its boundary: never before the deadline, less than one tick
// after it. Deadlines more than one rotation away share a slot with nearer ones and are passed over until due.
#pragma once

#include <tether/detail/config.hpp>

#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace tether {

namespace detail {
class hashed_wheel;

// One link of a slot's circular list. A slot's head is a bare link (the sentinel), so an empty slot costs
// two pointers and unlinking a node never needs to know which slot holds it.
struct wheel_link {
  wheel_link* prev_in_slot = nullptr;
  wheel_link* next_in_slot = nullptr;
};
} // namespace detail

// The per-timer state, embedded in its owner: scheduling and cancelling move pointers, never allocate.
// Derive the owner from wheel_node and static_cast the node back to the owner in the expiry handler.
// A node belongs to at most one wheel at a time, and must not be destroyed while scheduled.
class wheel_node : private detail::wheel_link {
public:
  // Runs once the node has left the wheel (scheduled() is false), so it may schedule the node again.
  using expiry_handler = void (*)(wheel_node&) noexcept;

  explicit wheel_node(expiry_handler on_expiry) noexcept : on_expiry_(on_expiry) {}
  wheel_node(const wheel_node&) = delete;
  wheel_node& operator=(const wheel_node&) = delete;
  ~wheel_node() { assert(!scheduled() && "cancel a wheel_node before destroying it"); }

  bool scheduled() const noexcept { return next_in_slot != nullptr; }

  // The deadline of the current schedule, or of the last one once the node has fired or been cancelled.
  std::chrono::steady_clock::time_point deadline() const noexcept { return deadline_; }

private:
  friend class detail::hashed_wheel;

  std::chrono::steady_clock::time_point deadline_{};
  expiry_handler on_expiry_;
};

namespace detail {

// Not thread-safe, and expiry handlers must not call advance(): everything else (schedule, cancel, destroying
// a cancelled node's owner) is allowed from inside a handler.
class hashed_wheel {
public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  // Expects a positive tick and at least one slot (timer_wheel_options::validate).
  hashed_wheel(duration tick, std::size_t slot_count, time_point start)
      : tick_(tick), slot_count_(slot_count), start_(start) {
    assert(tick > duration::zero() && slot_count > 0);
    slots_ = std::make_unique<wheel_link[]>(slot_count);
    for (std::size_t i = 0; i < slot_count; ++i)
      make_empty(slots_[i]);
  }

  hashed_wheel(const hashed_wheel&) = delete;
  hashed_wheel& operator=(const hashed_wheel&) = delete;

  // Nodes still scheduled are released, so their owners may outlive the wheel.
  ~hashed_wheel() {
    for (std::size_t i = 0; i < slot_count_; ++i) {
      wheel_link& slot = slots_[i];
      while (!is_empty(slot))
        unlink(*slot.next_in_slot);
    }
  }

  // A deadline already passed fires at the next boundary advance() reaches.
  void schedule(wheel_node& node, time_point deadline) noexcept {
    if (node.scheduled())
      unlink(node);
    else
      ++size_;
    node.deadline_ = deadline;
    link_back(slot_of_tick(first_tick_at_or_after(deadline)), node);
  }

  void cancel(wheel_node& node) noexcept {
    if (!node.scheduled())
      return;
    unlink(node);
    --size_;
  }

  std::size_t advance(time_point now) noexcept {
    if (now < next_tick())
      return 0;
    const auto last_due_tick = static_cast<std::uint64_t>((now - start_) / tick_);
    // After a stall of more than a rotation, one visit per slot is enough: the deadline check fires whatever
    // is due from any rotation, so the work stays bounded by the slot count however long the stall was.
    if (last_due_tick - next_tick_index_ >= slot_count_)
      next_tick_index_ = last_due_tick + 1 - slot_count_;

    std::size_t fired = 0;
    while (size_ != 0 && next_tick_index_ <= last_due_tick) {
      // Moved past the slot before its handlers run, so a handler scheduling a passed deadline files it under
      // the next boundary rather than into the slot being walked.
      wheel_link& slot = slot_of_tick(next_tick_index_++);
      fired += expire_slot(slot, now);
    }
    next_tick_index_ = last_due_tick + 1;
    return fired;
  }

  std::size_t size() const noexcept { return size_; }

  time_point next_tick() const noexcept { return boundary(next_tick_index_); }

private:
  static bool is_empty(const wheel_link& sentinel) noexcept { return sentinel.next_in_slot == &sentinel; }

  static void make_empty(wheel_link& sentinel) noexcept {
    sentinel.prev_in_slot = &sentinel;
    sentinel.next_in_slot = &sentinel;
  }

  static void link_back(wheel_link& sentinel, wheel_link& link) noexcept {
    link.prev_in_slot = sentinel.prev_in_slot;
    link.next_in_slot = &sentinel;
    sentinel.prev_in_slot->next_in_slot = &link;
    sentinel.prev_in_slot = &link;
  }

  static void unlink(wheel_link& link) noexcept {
    link.prev_in_slot->next_in_slot = link.next_in_slot;
    link.next_in_slot->prev_in_slot = link.prev_in_slot;
    link.prev_in_slot = nullptr;
    link.next_in_slot = nullptr;
  }

  static void move_all(wheel_link& from, wheel_link& to) noexcept {
    if (is_empty(from)) {
      make_empty(to);
      return;
    }
    to.next_in_slot = from.next_in_slot;
    to.prev_in_slot = from.prev_in_slot;
    to.next_in_slot->prev_in_slot = &to;
    to.prev_in_slot->next_in_slot = &to;
    make_empty(from);
  }

  time_point boundary(std::uint64_t tick_index) const noexcept {
    return start_ + tick_ * static_cast<duration::rep>(tick_index);
  }

  std::uint64_t first_tick_at_or_after(time_point deadline) const noexcept {
    if (deadline <= next_tick())
      return next_tick_index_;
    const duration since_start = deadline - start_;
    const auto whole_ticks = static_cast<std::uint64_t>(since_start / tick_);
    return since_start % tick_ == duration::zero() ? whole_ticks : whole_ticks + 1;
  }

  wheel_link& slot_of_tick(std::uint64_t tick_index) noexcept {
    return slots_[static_cast<std::size_t>(tick_index % slot_count_)];
  }

  std::size_t expire_slot(wheel_link& slot, time_point now) noexcept {
    // Handlers may schedule or cancel any node, this slot's included. Walking a detached list means the walk
    // sees only nodes that were here when it began and are still waiting, whatever the handlers do.
    wheel_link waiting;
    move_all(slot, waiting);
    std::size_t fired = 0;
    while (!is_empty(waiting)) {
      auto& node = static_cast<wheel_node&>(*waiting.next_in_slot);
      unlink(node);
      if (now < node.deadline_) {
        link_back(slot, node);
        continue;
      }
      --size_;
      ++fired;
      node.on_expiry_(node);
    }
    return fired;
  }

  duration tick_;
  std::size_t slot_count_;
  time_point start_;
  std::uint64_t next_tick_index_ = 0;  // the first boundary advance() has not reached yet
  std::size_t size_ = 0;
  std::unique_ptr<wheel_link[]> slots_;
};

} // namespace detail
} // namespace tether

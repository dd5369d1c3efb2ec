// Deadlines for many connections on one Asio timer.
//
// A timer_wheel serves every connection of one io_context: each connection embeds a wheel_node (32 bytes, no
// allocation to schedule or cancel, both O(1)) and the wheel drives them all from a single asio::steady_timer
// that ticks at fixed boundaries while anything is scheduled and sleeps otherwise. A deadline fires at the
// first tick boundary at or after it: never early, at most one tick (plus the io_context's own latency) late.
//
//   struct session : tether::wheel_node {
//     session() : wheel_node(&on_deadline) {}
//     static void on_deadline(tether::wheel_node& node) noexcept { static_cast<session&>(node).check_idle(); }
//     ...
//   };
//   wheel.schedule_after(my_session, 30s);
//
// Busy connections should not move their node on every read. Store wheel.now() (read once per tick, so free)
// as the last activity, and when the node fires compute the true deadline from it: schedule again for the
// remainder if it lies ahead, act if it has passed.
//
// Not thread-safe: use one wheel per io_context thread and call it only from that thread. Cancel a node (or
// destroy the wheel, which releases every node it holds) before destroying the node's owner, and destroy the
// wheel before its io_context.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/detail/hashed_wheel.hpp>
#include <tether/error.hpp>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <system_error>

namespace tether {

struct timer_wheel_options {
  // Deadlines are rounded up to whole ticks; each tick costs one wake-up while anything is scheduled.
  std::chrono::milliseconds tick{100};
  // One rotation (tick * slots) should cover the common timeouts so nodes rarely wait out extra rotations.
  std::size_t slots = 512;

  std::error_code validate() const noexcept {
    if (tick.count() <= 0)
      return error::wheel_tick_not_positive;
    if (slots == 0)
      return error::wheel_slots_zero;
    return {};
  }
};

class timer_wheel {
public:
  // Expects options that validate() accepts (listener::start and connector::start check them first).
  explicit timer_wheel(asio::io_context& io, timer_wheel_options options = {})
      : state_(std::make_shared<state>(io, options)) {}

  timer_wheel(const timer_wheel&) = delete;
  timer_wheel& operator=(const timer_wheel&) = delete;

  // Releases the shared state, which cancels the steady_timer. A tick whose completion is already queued
  // finds the state gone and does nothing, so the io_context may keep running.
  ~timer_wheel() = default;

  // Moves the node if it is already scheduled. A deadline already passed fires at the next tick.
  // Can throw only when it has to arm the steady_timer of an idle wheel (then the node is left as it was), so
  // it never throws while anything is scheduled, nor from an expiry handler.
  void schedule(wheel_node& node, std::chrono::steady_clock::time_point deadline) {
    if (!state_->ticking)
      start_ticking();
    state_->wheel.schedule(node, deadline);
  }

  void schedule_after(wheel_node& node, std::chrono::steady_clock::duration delay) { schedule(node, now() + delay); }

  // Once the last node is cancelled the armed tick is left to lapse: cancelling the wait would wake the
  // thread just the same (for the aborted completion), and a schedule() before the tick can reuse it.
  void cancel(wheel_node& node) noexcept { state_->wheel.cancel(node); }

  std::chrono::steady_clock::time_point now() const noexcept {
    return state_->ticking ? state_->cached_now : std::chrono::steady_clock::now();
  }

  std::size_t size() const noexcept { return state_->wheel.size(); }

  std::chrono::milliseconds tick() const noexcept { return state_->tick; }

private:
  // Owned by the wheel alone; pending waits hold a weak_ptr, so a completion that outlives the wheel finds
  // nothing to touch.
  struct state {
    state(asio::io_context& io, const timer_wheel_options& options)
        : tick(options.tick), wheel(options.tick, options.slots, std::chrono::steady_clock::now()), timer(io) {}

    const std::chrono::milliseconds tick;
    detail::hashed_wheel wheel;
    asio::steady_timer timer;
    std::chrono::steady_clock::time_point cached_now{};
    bool ticking = false;  // a wait is pending or a tick is running
  };

  void start_ticking() {
    state& self = *state_;
    // An idle wheel is empty (it stops ticking only once nothing is left), so catching it up to the present
    // fires nothing; it keeps the next tick from lying far in the past.
    self.cached_now = std::chrono::steady_clock::now();
    self.wheel.advance(self.cached_now);
    arm(state_);
    self.ticking = true;
  }

  // Waits for the wheel's next boundary rather than one tick from now, so late wake-ups do not drift.
  static void arm(const std::shared_ptr<state>& shared) {
    shared->timer.expires_at(shared->wheel.next_tick());
    shared->timer.async_wait([weak = std::weak_ptr<state>(shared)](const std::error_code&) {
      if (auto alive = weak.lock())
        on_tick(alive);
    });
  }

  static void on_tick(const std::shared_ptr<state>& shared) {
    state& self = *shared;
    self.cached_now = std::chrono::steady_clock::now();
    self.wheel.advance(self.cached_now);
    self.ticking = false;
    if (self.wheel.size() == 0)
      return;
    arm(shared);
    self.ticking = true;
  }

  std::shared_ptr<state> state_;
};

} // namespace tether

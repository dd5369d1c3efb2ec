// What a liveness strategy is. A strategy is the configuration aggregate a user writes (durations, counts)
// plus a small per-connection `state`. It may hook into three moments:
//   apply(native_socket)               socket options set when the connection opens (kernel strategies);
//   next_deadline(state, activity)     when it next needs to look at the connection (timed strategies);
//   on_deadline(state, activity, now)  what to do then: nothing, send a ping, or close with a reason.
// Activity is recorded by the connection as plain timestamps; strategies never arm timers themselves.
#pragma once

#include <tether/close_reason.hpp>
#include <tether/socket_options.hpp>

#include <chrono>
#include <concepts>
#include <system_error>

namespace tether {

using liveness_clock = std::chrono::steady_clock;

// Timestamps of the last activity on a connection, read from the timer wheel's per-tick clock.
struct activity {
  liveness_clock::time_point received{};       // any byte, data or control: proof the peer is alive
  liveness_clock::time_point data_received{};  // application data only: what the idle reaper watches
  liveness_clock::time_point data_sent{};
};

// A strategy's answer when its deadline comes up.
struct verdict {
  enum class action : std::uint8_t { none, send_ping, close };
  action what = action::none;
  close_reason reason = close_reason::local_close;
  const char* detail = "";

  static constexpr verdict none() noexcept { return {}; }
  static constexpr verdict ping() noexcept { return {action::send_ping}; }
  static constexpr verdict close(close_reason reason, const char* detail) noexcept {
    return {action::close, reason, detail};
  }
};

template <class S>
concept liveness_strategy = std::copy_constructible<S> && std::default_initializable<typename S::state> && requires {
  { S::needs_control_frames } -> std::convertible_to<bool>;
};

template <class S>
concept socket_option_strategy = liveness_strategy<S> && requires(const S& strategy, native_socket socket) {
  { strategy.apply(socket) } -> std::same_as<std::error_code>;
};

template <class S>
concept timed_strategy = liveness_strategy<S> && requires(const S& strategy, typename S::state& state,
                                                           const activity& seen, liveness_clock::time_point now) {
  { strategy.next_deadline(state, seen) } -> std::same_as<liveness_clock::time_point>;
  { strategy.on_deadline(state, seen, now) } -> std::same_as<verdict>;
};

// Strategies whose kernel mechanism ends a connection with ETIMEDOUT name the reason it should carry.
template <class S>
concept kernel_timeout_strategy = socket_option_strategy<S> && requires {
  { S::kernel_timeout_reason } -> std::convertible_to<close_reason>;
};

} // namespace tether

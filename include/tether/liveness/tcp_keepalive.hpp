// Kernel keepalive: after `idle` without traffic the kernel probes the peer `count` times, `interval`
// apart, and drops the connection (ETIMEDOUT, reason keepalive_timeout) when none is answered. Costs no
// user-space work at all. Detects dead hosts and keeps NAT/firewall flows warm when idle is below the
// middlebox's idle timeout. It cannot see a hung process (its kernel still answers probes), and on Linux it
// sends no probes while data is unacknowledged: pair it with user_timeout.
#pragma once

#include <tether/liveness/strategy.hpp>
#include <tether/socket_options.hpp>

#include <chrono>

namespace tether {

struct tcp_keepalive {
  std::chrono::milliseconds idle{std::chrono::seconds{60}};
  std::chrono::milliseconds interval{std::chrono::seconds{10}};
  int count = 3;

  struct state {};
  static constexpr bool needs_control_frames = false;
  static constexpr close_reason kernel_timeout_reason = close_reason::keepalive_timeout;

  // The platform's own ranges (error::keepalive_*_out_of_range names the field and the range).
  std::error_code validate() const noexcept { return detail::check_range(option()); }

  std::error_code apply(native_socket socket) const noexcept { return detail::set_socket_option(socket, option()); }

  constexpr sockopt::keepalive option() const noexcept {
    return sockopt::keepalive{.idle = idle, .interval = interval, .count = count};
  }

  // The longest an idle dead peer can go unnoticed.
  constexpr std::chrono::milliseconds detection_bound() const noexcept { return idle + interval * count; }
};

} // namespace tether

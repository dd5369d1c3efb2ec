// User timeout: the kernel drops a connection whose sent data stays unacknowledged for `timeout`
// (Linux TCP_USER_TIMEOUT and its equivalents), reason user_timeout. This is the one bound on a dead peer
// while data is in flight, where keepalive is silent and retransmissions would otherwise run ~15 minutes.
#pragma once

#include <tether/liveness/strategy.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/socket_options.hpp>

#include <chrono>

namespace tether {

struct user_timeout {
  std::chrono::milliseconds timeout{std::chrono::seconds{30}};

  struct state {};
  static constexpr bool needs_control_frames = false;
  static constexpr close_reason kernel_timeout_reason = close_reason::user_timeout;

  std::error_code validate() const noexcept { return detail::check_range(sockopt::user_timeout{timeout}); }

  std::error_code apply(native_socket socket) const noexcept {
    return detail::set_socket_option(socket, sockopt::user_timeout{timeout});
  }
};

// The rule of thumb for pairing both kernel mechanisms: let unacknowledged data wait as long as keepalive
// would take to declare an idle peer dead, so both failures are detected within the same bound. (On Linux
// a user timeout also overrides keepalive's probe count once probing has started.)
constexpr user_timeout user_timeout_for(const tcp_keepalive& keepalive) noexcept {
  return user_timeout{keepalive.detection_bound()};
}

} // namespace tether

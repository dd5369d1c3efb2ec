// The kernel's counters of what this side sent and the peer acknowledged, read before a deadline check for
// policies that count acknowledged progress as proof of life (tether::ack_progress). Linux has them in
// TCP_INFO since 4.6; elsewhere there is no reading, and such policies refuse to start.
#pragma once

#include <tether/detail/native_socket.hpp>
#include <tether/detail/platform.hpp>
#include <tether/liveness/strategy.hpp>
#include <tether/socket_options.hpp>

#include <chrono>
#include <optional>

namespace tether::detail {

#if defined(TETHER_PLATFORM_LINUX)
inline constexpr bool kernel_send_progress_available = true;
#else
// macOS (TCP_CONNECTION_INFO) and Windows (SIO_TCP_INFO) have counters of their own, not read yet.
inline constexpr bool kernel_send_progress_available = false;
#endif

// `queued_by_us`: the connection still holds bytes it has not handed to the kernel.
inline std::optional<send_progress> read_kernel_send_progress(native_socket socket, bool queued_by_us) noexcept {
  sockopt::tcp_info info{};
  if (get_socket_option(socket, info) || !info.progress_counted)
    return std::nullopt;
  return send_progress{.bytes_acked = info.bytes_acked,
                       .in_flight = queued_by_us || info.unacked > 0 || info.notsent_bytes > 0,
                       .last_ack = liveness_clock::now() - info.last_ack_recv};
}

} // namespace tether::detail

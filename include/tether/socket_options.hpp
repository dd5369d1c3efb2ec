// Typed, portable TCP socket options.
//
// Each option is a small value type; set_option() validates it against the running platform's real
// limits and units before touching the socket, and get_option() reads back the value the kernel holds
// (its effective value, which may differ from the request: Linux doubles buffer sizes, durations are
// rounded up to the platform's unit). Both return a std::error_code: tether::error codes for values out
// of range (the message names the accepted range) or options the platform lacks (not_supported), and
// system codes for what the kernel refuses. A request tether rejects (out of range, not supported) leaves the
// socket unchanged; a multi-field option the kernel refuses midway (keepalive's idle, interval, count) keeps the
// fields it had already accepted.
//
// They accept any Asio socket or acceptor (anything with native_handle()) or a native handle:
//
//   tether::set_option(socket, tether::sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 3});
//   tether::sockopt::keepalive effective;
//   if (auto ec = tether::get_option(socket, effective)) fmt::print("{}\n", ec.message());
#pragma once

#include <tether/detail/config.hpp>
#include <tether/detail/native_socket.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <system_error>

namespace tether {

using native_socket = detail::native_socket;

namespace sockopt {

// SO_KEEPALIVE plus the kernel's probe timing: after `idle` without traffic the kernel sends up to
// `count` probes `interval` apart and then drops the connection (ETIMEDOUT). Durations are rounded up to
// whole seconds. With enabled = false only SO_KEEPALIVE is cleared and the timings are left alone.
struct keepalive {
  bool enabled = true;
  std::chrono::milliseconds idle{std::chrono::hours{2}};
  std::chrono::milliseconds interval{std::chrono::seconds{75}};
  int count = 9;
  bool operator==(const keepalive&) const = default;
};

// How long transmitted data may stay unacknowledged before the kernel drops the connection (Linux
// TCP_USER_TIMEOUT, macOS TCP_RXT_CONNDROPTIME, FreeBSD TCP_MAXUNACKTIME, Windows TCP_MAXRT). Zero restores
// the system default where the platform allows it. Rounded up to the platform's unit (ms on Linux, s elsewhere).
struct user_timeout {
  std::chrono::milliseconds timeout{0};
  bool operator==(const user_timeout&) const = default;
};

// What close() does with unsent data. graceful: return at once, the kernel sends what is queued and FINs
// (the closer keeps TIME_WAIT). abortive: discard and send RST, no TIME_WAIT. timed: on Linux close()
// blocks up to `timeout` even on a non-blocking socket, so use it only where blocking is acceptable.
struct linger {
  enum class mode : std::uint8_t { graceful, abortive, timed };
  mode how = mode::graceful;
  std::chrono::seconds timeout{0};

  static constexpr linger graceful() noexcept { return {}; }
  static constexpr linger abortive() noexcept { return {mode::abortive, std::chrono::seconds{0}}; }
  static constexpr linger timed(std::chrono::seconds timeout) noexcept { return {mode::timed, timeout}; }
  bool operator==(const linger&) const = default;
};

// Rebind a listening port at once while old connections sit in TIME_WAIT (a fast restart; on Linux the old
// socket must have had it too). On Windows this is SO_EXCLUSIVEADDRUSE, which forbids port hijacking; Windows
// rebinds over TIME_WAIT without help.
struct reuse_address {
  bool enabled = true;
  bool operator==(const reuse_address&) const = default;
};

// Several listeners share one port and the kernel spreads connections across them (Linux SO_REUSEPORT,
// FreeBSD SO_REUSEPORT_LB). Must be set before bind() on every socket of the group.
struct reuse_port {
  bool enabled = true;
  bool operator==(const reuse_port&) const = default;
};

// TCP_NODELAY: send small writes at once instead of waiting for Nagle's coalescing.
struct no_delay {
  bool enabled = true;
  bool operator==(const no_delay&) const = default;
};

struct send_buffer_size {
  int bytes = 0;
  bool operator==(const send_buffer_size&) const = default;
};

struct receive_buffer_size {
  int bytes = 0;
  bool operator==(const receive_buffer_size&) const = default;
};

// TCP states, numbered as Linux numbers them.
enum class tcp_state : std::uint8_t {
  unknown = 0,
  established,
  syn_sent,
  syn_recv,
  fin_wait1,
  fin_wait2,
  time_wait,
  close,
  close_wait,
  last_ack,
  listen,
  closing,
};

// A read-only snapshot of the kernel's view of a connection (Linux TCP_INFO).
struct tcp_info {
  tcp_state state = tcp_state::unknown;
  std::chrono::microseconds rtt{0};
  std::chrono::microseconds rttvar{0};
  std::uint32_t retransmits = 0;  // in the current retransmission episode
  std::uint32_t probes = 0;       // keepalive or zero-window probes sent without answer
  std::uint32_t unacked = 0;      // segments in flight (on a listener: the accept queue length)
  std::chrono::milliseconds last_data_recv{0};  // time since data was last received
  std::chrono::milliseconds last_ack_recv{0};   // time since an ACK was last received
  // The send counters (Linux 4.6 and later; otherwise progress_counted is false and they are 0). On the side
  // that connected, Linux counts its SYN as one acknowledged byte.
  std::uint64_t bytes_acked = 0;    // bytes the peer acknowledged since the connection opened
  std::uint32_t notsent_bytes = 0;  // bytes written to the socket and not yet sent
  bool progress_counted = false;
};

} // namespace sockopt
} // namespace tether

#include <tether/impl/socket_options.hpp>

namespace tether {

// Anything whose native handle tether can reach: Asio sockets and acceptors, or the handle itself.
template <class Socket>
concept native_socket_source =
    std::convertible_to<Socket, native_socket> || requires(Socket& socket) {
      { socket.native_handle() } -> std::convertible_to<native_socket>;
    };

namespace detail {
template <native_socket_source Socket>
native_socket native_handle_of(Socket& socket) noexcept {
  if constexpr (std::convertible_to<Socket, native_socket>)
    return socket;
  else
    return socket.native_handle();
}
} // namespace detail

template <native_socket_source Socket, class Value>
  requires requires(native_socket handle, const Value& value) { detail::set_socket_option(handle, value); }
std::error_code set_option(Socket& socket, const Value& value) noexcept {
  return detail::set_socket_option(detail::native_handle_of(socket), value);
}

template <native_socket_source Socket, class Value>
  requires requires(native_socket handle, Value& value) { detail::get_socket_option(handle, value); }
std::error_code get_option(Socket& socket, Value& value) noexcept {
  return detail::get_socket_option(detail::native_handle_of(socket), value);
}

} // namespace tether

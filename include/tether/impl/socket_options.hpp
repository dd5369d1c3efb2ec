// Implementation of set_option/get_option for every sockopt value. The platform facts (names, units,
// ranges) come from detail::platform; each conversion between a std::chrono value and a kernel integer
// happens in to_kernel_units() / from_kernel_units() below and nowhere else.
#pragma once

#include <tether/socket_options.hpp>
#include <tether/error.hpp>
#include <tether/detail/native_socket.hpp>
#include <tether/detail/platform.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

#if defined(TETHER_PLATFORM_WINDOWS)
#include <tether/detail/keepalive_windows.hpp>
#endif

namespace tether::detail {

// Rounds up so a requested bound is never shortened, and saturates so huge durations fail the range check
// instead of wrapping.
template <class Unit>
long long to_kernel_units(std::chrono::milliseconds value) noexcept {
  return std::chrono::ceil<Unit>(value).count();
}

template <class Unit>
std::chrono::milliseconds from_kernel_units(long long value) noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Unit{value});
}

// A kernel older than the option (Linux before 2.6.37 for TCP_USER_TIMEOUT, Windows before 1709, Wine)
// answers ENOPROTOOPT: that is the platform lacking the option, reported as tether's not_supported code.
inline std::error_code refused_as_unsupported(std::error_code ec, error unsupported) noexcept {
#if defined(TETHER_PLATFORM_WINDOWS)
  const bool lacks_option = ec.value() == WSAENOPROTOOPT;
#else
  const bool lacks_option = ec == std::errc::no_protocol_option;
#endif
  return lacks_option ? make_error_code(unsupported) : ec;
}

// Whether the platform can take the value at all, without a socket: what set_socket_option checks first.
inline std::error_code check_range(const sockopt::keepalive& value) noexcept {
  if (!value.enabled)
    return {};
  if constexpr (!platform::keepalive_tunable) {
    return error::keepalive_tuning_not_supported;
  } else {
    using unit = platform::keepalive_unit;
    if (!platform::keepalive_idle_range.contains(to_kernel_units<unit>(value.idle)))
      return error::keepalive_idle_out_of_range;
    if (!platform::keepalive_interval_range.contains(to_kernel_units<unit>(value.interval)))
      return error::keepalive_interval_out_of_range;
    if (!platform::keepalive_count_range.contains(value.count))
      return error::keepalive_count_out_of_range;
    return {};
  }
}

inline std::error_code check_range(const sockopt::user_timeout& value) noexcept {
  if constexpr (!platform::user_timeout_supported) {
    (void)value;
    return error::user_timeout_not_supported;
  } else {
    if (!platform::user_timeout_range.contains(to_kernel_units<platform::user_timeout_unit>(value.timeout)))
      return error::user_timeout_out_of_range;
    return {};
  }
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::keepalive& value) noexcept {
  if (!value.enabled)
    return set_int_option(socket, SOL_SOCKET, SO_KEEPALIVE, 0);
  if (auto ec = check_range(value))
    return ec;
  if constexpr (platform::keepalive_tunable) {
    using unit = platform::keepalive_unit;
    const long long idle = to_kernel_units<unit>(value.idle);
    const long long interval = to_kernel_units<unit>(value.interval);
#if defined(TETHER_PLATFORM_WINDOWS)
    return set_windows_keepalive(socket, idle, interval, value.count);
#else
    if (auto ec = set_int_option(socket, IPPROTO_TCP, platform::keepalive_idle_option, static_cast<int>(idle)))
      return ec;
    if (auto ec = set_int_option(socket, IPPROTO_TCP, platform::keepalive_interval_option, static_cast<int>(interval)))
      return ec;
    if (auto ec = set_int_option(socket, IPPROTO_TCP, platform::keepalive_count_option, value.count))
      return ec;
    return set_int_option(socket, SOL_SOCKET, SO_KEEPALIVE, 1);
#endif
  } else {
    return error::keepalive_tuning_not_supported;
  }
}

inline std::error_code get_socket_option(native_socket socket, sockopt::keepalive& value) noexcept {
  int enabled = 0;
  if (auto ec = get_int_option(socket, SOL_SOCKET, SO_KEEPALIVE, enabled))
    return ec;
  value.enabled = enabled != 0;
  if constexpr (!platform::keepalive_tunable) {
    return error::keepalive_tuning_not_supported;
  } else {
    int idle = 0;
    int interval = 0;
    int count = 0;
    for (auto [name, out] : {std::pair{platform::keepalive_idle_option, &idle},
                             std::pair{platform::keepalive_interval_option, &interval},
                             std::pair{platform::keepalive_count_option, &count}}) {
      if (auto ec = get_int_option(socket, IPPROTO_TCP, name, *out)) {
#if defined(TETHER_PLATFORM_WINDOWS)
        // Before Windows 10 1709 the timings are write-only (SIO_KEEPALIVE_VALS).
        if (ec.value() == WSAENOPROTOOPT || ec.value() == WSAEINVAL)
          return error::keepalive_tuning_not_supported;
#endif
        return ec;
      }
    }
    value.idle = from_kernel_units<platform::keepalive_unit>(idle);
    value.interval = from_kernel_units<platform::keepalive_unit>(interval);
    value.count = count;
    return {};
  }
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::user_timeout& value) noexcept {
  if constexpr (!platform::user_timeout_supported) {
    (void)socket;
    (void)value;
    return error::user_timeout_not_supported;
  } else {
    if (auto ec = check_range(value))
      return ec;
    const long long timeout = to_kernel_units<platform::user_timeout_unit>(value.timeout);
    auto ec = set_int_option(socket, IPPROTO_TCP, platform::user_timeout_option, static_cast<int>(timeout));
    return refused_as_unsupported(ec, error::user_timeout_not_supported);
  }
}

inline std::error_code get_socket_option(native_socket socket, sockopt::user_timeout& value) noexcept {
  if constexpr (!platform::user_timeout_supported) {
    (void)socket;
    (void)value;
    return error::user_timeout_not_supported;
  } else {
    int timeout = 0;
    if (auto ec = get_int_option(socket, IPPROTO_TCP, platform::user_timeout_option, timeout))
      return refused_as_unsupported(ec, error::user_timeout_not_supported);
    value.timeout = from_kernel_units<platform::user_timeout_unit>(timeout);
    return {};
  }
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::linger& value) noexcept {
  ::linger native{};
  switch (value.how) {
  case sockopt::linger::mode::graceful:
    break;
  case sockopt::linger::mode::abortive:
    native.l_onoff = 1;
    break;
  case sockopt::linger::mode::timed:
    if (!platform::linger_range.contains(value.timeout.count()))
      return error::linger_out_of_range;
    native.l_onoff = 1;
    native.l_linger = static_cast<decltype(native.l_linger)>(value.timeout.count());
    break;
  }
  return set_raw_option(socket, SOL_SOCKET, platform::linger_option, native);
}

inline std::error_code get_socket_option(native_socket socket, sockopt::linger& value) noexcept {
  ::linger native{};
  option_length length = 0;
  if (auto ec = get_raw_option(socket, SOL_SOCKET, platform::linger_option, native, length))
    return ec;
  if (native.l_onoff == 0)
    value = sockopt::linger::graceful();
  else if (native.l_linger == 0)
    value = sockopt::linger::abortive();
  else
    value = sockopt::linger::timed(std::chrono::seconds{native.l_linger});
  return {};
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::reuse_address& value) noexcept {
  return set_int_option(socket, SOL_SOCKET, platform::reuse_address_option, value.enabled ? 1 : 0);
}

inline std::error_code get_socket_option(native_socket socket, sockopt::reuse_address& value) noexcept {
  int enabled = 0;
  auto ec = get_int_option(socket, SOL_SOCKET, platform::reuse_address_option, enabled);
  value.enabled = enabled != 0;
  return ec;
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::reuse_port& value) noexcept {
  if constexpr (!platform::reuse_port_supported) {
    (void)socket;
    (void)value;
    return error::reuse_port_not_supported;
  } else {
    return set_int_option(socket, SOL_SOCKET, platform::reuse_port_option, value.enabled ? 1 : 0);
  }
}

inline std::error_code get_socket_option(native_socket socket, sockopt::reuse_port& value) noexcept {
  if constexpr (!platform::reuse_port_supported) {
    (void)socket;
    (void)value;
    return error::reuse_port_not_supported;
  } else {
    int enabled = 0;
    auto ec = get_int_option(socket, SOL_SOCKET, platform::reuse_port_option, enabled);
    value.enabled = enabled != 0;
    return ec;
  }
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::no_delay& value) noexcept {
  return set_int_option(socket, IPPROTO_TCP, TCP_NODELAY, value.enabled ? 1 : 0);
}

inline std::error_code get_socket_option(native_socket socket, sockopt::no_delay& value) noexcept {
  int enabled = 0;
  auto ec = get_int_option(socket, IPPROTO_TCP, TCP_NODELAY, enabled);
  value.enabled = enabled != 0;
  return ec;
}

inline std::error_code set_buffer_size(native_socket socket, int name, int bytes) noexcept {
  if (!platform::buffer_size_range.contains(bytes))
    return error::buffer_size_out_of_range;
  return set_int_option(socket, SOL_SOCKET, name, bytes);
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::send_buffer_size& value) noexcept {
  return set_buffer_size(socket, SO_SNDBUF, value.bytes);
}

inline std::error_code get_socket_option(native_socket socket, sockopt::send_buffer_size& value) noexcept {
  return get_int_option(socket, SOL_SOCKET, SO_SNDBUF, value.bytes);
}

inline std::error_code set_socket_option(native_socket socket, const sockopt::receive_buffer_size& value) noexcept {
  return set_buffer_size(socket, SO_RCVBUF, value.bytes);
}

inline std::error_code get_socket_option(native_socket socket, sockopt::receive_buffer_size& value) noexcept {
  return get_int_option(socket, SOL_SOCKET, SO_RCVBUF, value.bytes);
}

#if defined(TETHER_PLATFORM_LINUX)
// glibc's struct tcp_info stops before the send counters Linux 4.1 and 4.6 appended; the kernel's layout only
// ever grows, so they follow glibc's fields exactly where the kernel puts them.
struct linux_tcp_info {
  ::tcp_info classic;
  std::uint64_t pacing_rate;
  std::uint64_t max_pacing_rate;
  std::uint64_t bytes_acked;
  std::uint64_t bytes_received;
  std::uint32_t segs_out;
  std::uint32_t segs_in;
  std::uint32_t notsent_bytes;
};
#endif

inline std::error_code get_socket_option(native_socket socket, sockopt::tcp_info& value) noexcept {
#if defined(TETHER_PLATFORM_LINUX)
  linux_tcp_info extended{};
  option_length length = 0;
  if (auto ec = get_raw_option(socket, IPPROTO_TCP, TCP_INFO, extended, length))
    return ec;
  // The struct grows across kernel versions and the kernel copies only what it has.
  const auto& native = extended.classic;
  constexpr std::size_t needed = offsetof(::tcp_info, tcpi_rttvar) + sizeof native.tcpi_rttvar;
  if (static_cast<std::size_t>(length) < needed)
    return error::tcp_info_truncated;
  value.progress_counted = static_cast<std::size_t>(length) >=
                           offsetof(linux_tcp_info, notsent_bytes) + sizeof extended.notsent_bytes;
  if (value.progress_counted) {
    value.bytes_acked = extended.bytes_acked;
    value.notsent_bytes = extended.notsent_bytes;
  }
  value.state = static_cast<sockopt::tcp_state>(native.tcpi_state);
  value.rtt = std::chrono::microseconds{native.tcpi_rtt};
  value.rttvar = std::chrono::microseconds{native.tcpi_rttvar};
  value.retransmits = native.tcpi_retransmits;
  value.probes = native.tcpi_probes;
  value.unacked = native.tcpi_unacked;
  value.last_data_recv = std::chrono::milliseconds{native.tcpi_last_data_recv};
  value.last_ack_recv = std::chrono::milliseconds{native.tcpi_last_ack_recv};
  return {};
#else
  (void)socket;
  (void)value;
  return error::tcp_info_not_supported;
#endif
}

} // namespace tether::detail

// Windows keepalive: the TCP_KEEPIDLE family (Windows 10 1709+) when the kernel knows it, otherwise
// SIO_KEEPALIVE_VALS, which takes milliseconds, cannot be read back, and fixes the probe count at 10.
#pragma once

#include <tether/detail/native_socket.hpp>
#include <tether/error.hpp>

namespace tether::detail {

inline std::error_code set_windows_keepalive(native_socket socket, long long idle_s, long long interval_s,
                                             int count) noexcept {
  auto ec = set_int_option(socket, IPPROTO_TCP, platform::keepalive_idle_option, static_cast<int>(idle_s));
  if (!ec) {
    if ((ec = set_int_option(socket, IPPROTO_TCP, platform::keepalive_interval_option, static_cast<int>(interval_s))))
      return ec;
    if ((ec = set_int_option(socket, IPPROTO_TCP, platform::keepalive_count_option, count)))
      return ec;
    return set_int_option(socket, SOL_SOCKET, SO_KEEPALIVE, 1);
  }
  if (ec.value() != WSAENOPROTOOPT && ec.value() != WSAEINVAL)
    return ec;
  if (count != platform::legacy_keepalive_count)
    return error::keepalive_tuning_not_supported;
  ::tcp_keepalive settings{};
  settings.onoff = 1;
  settings.keepalivetime = static_cast<ULONG>(idle_s * 1000);
  settings.keepaliveinterval = static_cast<ULONG>(interval_s * 1000);
  DWORD returned = 0;
  if (::WSAIoctl(socket, SIO_KEEPALIVE_VALS, &settings, sizeof settings, nullptr, 0, &returned, nullptr, nullptr) != 0)
    return last_socket_error();
  return {};
}

} // namespace tether::detail

// Windows: TCP_KEEPIDLE/TCP_KEEPINTVL (seconds) from Windows 10 1709, TCP_KEEPCNT (<= 255) from 1703; older
// systems fall back to SIO_KEEPALIVE_VALS (milliseconds, probe count fixed at 10). TCP_MAXRT (seconds) bounds
// retransmission. reuse_address maps to SO_EXCLUSIVEADDRUSE: Windows already rebinds over TIME_WAIT without
// SO_REUSEADDR, whose Windows meaning would let another socket hijack the port; exclusive use forbids that
// (libuv #1360 reports it can delay a rebind while old connections linger: untested here). There is no
// load-balancing SO_REUSEPORT.
#pragma once

#include <tether/detail/platform.hpp>

#include <chrono>
#include <climits>
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mstcpip.h>

// Older SDKs and mingw-w64 headers lack these; the values are the documented ws2ipdef.h constants.
#ifndef TCP_KEEPIDLE
#define TCP_KEEPIDLE 3
#endif
#ifndef TCP_KEEPCNT
#define TCP_KEEPCNT 16
#endif
#ifndef TCP_KEEPINTVL
#define TCP_KEEPINTVL 17
#endif
#ifndef TCP_MAXRT
#define TCP_MAXRT 5
#endif
#ifndef SO_EXCLUSIVEADDRUSE
#define SO_EXCLUSIVEADDRUSE ((int)(~SO_REUSEADDR))
#endif

namespace tether::detail {

struct platform {
  static constexpr const char* name = "Windows";

  // The legacy SIO_KEEPALIVE_VALS path takes u_long milliseconds, hence the 4294967 s ceiling.
  static constexpr bool keepalive_tunable = true;
  static constexpr int keepalive_idle_option = TCP_KEEPIDLE;
  static constexpr int keepalive_interval_option = TCP_KEEPINTVL;
  static constexpr int keepalive_count_option = TCP_KEEPCNT;
  using keepalive_unit = std::chrono::seconds;
  static constexpr value_range keepalive_idle_range{1, 4294967};
  static constexpr value_range keepalive_interval_range{1, 4294967};
  static constexpr value_range keepalive_count_range{1, 255};
  static constexpr int legacy_keepalive_count = 10;

  // TCP_MAXRT 0 would not mean "system default"; tether requires an explicit number of seconds.
  static constexpr bool user_timeout_supported = true;
  static constexpr int user_timeout_option = TCP_MAXRT;
  using user_timeout_unit = std::chrono::seconds;
  static constexpr const char* user_timeout_unit_suffix = "s";
  static constexpr value_range user_timeout_range{1, INT_MAX};

  static constexpr int linger_option = SO_LINGER;
  static constexpr value_range linger_range{1, 65535};

  static constexpr int reuse_address_option = SO_EXCLUSIVEADDRUSE;
  static constexpr bool reuse_port_supported = false;
  static constexpr int reuse_port_option = 0;

  static constexpr value_range buffer_size_range{1, INT_MAX};

  // Only Linux can bind a source address without reserving a port (IP_BIND_ADDRESS_NO_PORT).
  static constexpr int bind_address_no_port_option = 0;
};

} // namespace tether::detail

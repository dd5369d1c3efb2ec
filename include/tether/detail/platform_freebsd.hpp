// FreeBSD: seconds for the keepalive knobs (bounded by UINT_MAX / kern.hz, hz = 1000), TCP_MAXUNACKTIME
// (FreeBSD 14+) as the user timeout, SO_REUSEPORT_LB (FreeBSD 12+) for load-balanced listeners.
#pragma once

#include <tether/detail/platform.hpp>

#include <chrono>
#include <climits>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace tether::detail {

struct platform {
  static constexpr const char* name = "FreeBSD";

  static constexpr bool keepalive_tunable = true;
  static constexpr int keepalive_idle_option = TCP_KEEPIDLE;
  static constexpr int keepalive_interval_option = TCP_KEEPINTVL;
  static constexpr int keepalive_count_option = TCP_KEEPCNT;
  using keepalive_unit = std::chrono::seconds;
  static constexpr value_range keepalive_idle_range{1, 4294967};
  static constexpr value_range keepalive_interval_range{1, 4294967};
  static constexpr value_range keepalive_count_range{1, INT_MAX};

#ifdef TCP_MAXUNACKTIME
  static constexpr bool user_timeout_supported = true;
  static constexpr int user_timeout_option = TCP_MAXUNACKTIME;
#else
  static constexpr bool user_timeout_supported = false;
  static constexpr int user_timeout_option = 0;
#endif
  using user_timeout_unit = std::chrono::seconds;
  static constexpr const char* user_timeout_unit_suffix = "s";
  static constexpr value_range user_timeout_range{0, INT_MAX};

  static constexpr int linger_option = SO_LINGER;
  static constexpr value_range linger_range{1, INT_MAX};

  static constexpr int reuse_address_option = SO_REUSEADDR;
#ifdef SO_REUSEPORT_LB
  static constexpr bool reuse_port_supported = true;
  static constexpr int reuse_port_option = SO_REUSEPORT_LB;
#else
  static constexpr bool reuse_port_supported = false;
  static constexpr int reuse_port_option = 0;
#endif

  static constexpr value_range buffer_size_range{1, INT_MAX};

  // Only Linux can bind a source address without reserving a port (IP_BIND_ADDRESS_NO_PORT).
  static constexpr int bind_address_no_port_option = 0;
};

} // namespace tether::detail

// Other POSIX systems (OpenBSD, NetBSD, illumos, AIX, ...): SO_KEEPALIVE is universal; per-socket tuning is
// used only where the TCP_KEEPIDLE family exists (OpenBSD has none), everything else reports not_supported.
#pragma once

#include <tether/detail/platform.hpp>

#include <chrono>
#include <climits>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace tether::detail {

struct platform {
  static constexpr const char* name = "this POSIX platform";

#if defined(TCP_KEEPIDLE) && defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
  static constexpr bool keepalive_tunable = true;
  static constexpr int keepalive_idle_option = TCP_KEEPIDLE;
  static constexpr int keepalive_interval_option = TCP_KEEPINTVL;
  static constexpr int keepalive_count_option = TCP_KEEPCNT;
#else
  static constexpr bool keepalive_tunable = false;
  static constexpr int keepalive_idle_option = 0;
  static constexpr int keepalive_interval_option = 0;
  static constexpr int keepalive_count_option = 0;
#endif
  using keepalive_unit = std::chrono::seconds;
  static constexpr value_range keepalive_idle_range{1, 32767};
  static constexpr value_range keepalive_interval_range{1, 32767};
  static constexpr value_range keepalive_count_range{1, 127};

  static constexpr bool user_timeout_supported = false;
  static constexpr int user_timeout_option = 0;
  using user_timeout_unit = std::chrono::seconds;
  static constexpr const char* user_timeout_unit_suffix = "s";
  static constexpr value_range user_timeout_range{0, 0};

  static constexpr int linger_option = SO_LINGER;
  static constexpr value_range linger_range{1, SHRT_MAX};

  static constexpr int reuse_address_option = SO_REUSEADDR;
  static constexpr bool reuse_port_supported = false;
  static constexpr int reuse_port_option = 0;

  static constexpr value_range buffer_size_range{1, INT_MAX};

  // Only Linux can bind a source address without reserving a port (IP_BIND_ADDRESS_NO_PORT).
  static constexpr int bind_address_no_port_option = 0;
};

} // namespace tether::detail

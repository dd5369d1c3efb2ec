// Linux: tcp(7), socket(7). Ranges verified against the kernel (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPCNT).
#pragma once

#include <tether/detail/platform.hpp>

#include <chrono>
#include <climits>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace tether::detail {

struct platform {
  static constexpr const char* name = "Linux";

  static constexpr bool keepalive_tunable = true;
  static constexpr int keepalive_idle_option = TCP_KEEPIDLE;
  static constexpr int keepalive_interval_option = TCP_KEEPINTVL;
  static constexpr int keepalive_count_option = TCP_KEEPCNT;
  using keepalive_unit = std::chrono::seconds;
  static constexpr value_range keepalive_idle_range{1, 32767};
  static constexpr value_range keepalive_interval_range{1, 32767};
  static constexpr value_range keepalive_count_range{1, 127};

  // TCP_USER_TIMEOUT is read by the kernel as an int: values above INT_MAX are EINVAL.
  static constexpr bool user_timeout_supported = true;
  static constexpr int user_timeout_option = TCP_USER_TIMEOUT;
  using user_timeout_unit = std::chrono::milliseconds;
  static constexpr const char* user_timeout_unit_suffix = "ms";
  static constexpr value_range user_timeout_range{0, INT_MAX};

  static constexpr int linger_option = SO_LINGER;
  static constexpr value_range linger_range{1, INT_MAX};

  static constexpr int reuse_address_option = SO_REUSEADDR;
  static constexpr bool reuse_port_supported = true;
  static constexpr int reuse_port_option = SO_REUSEPORT;

  // The kernel doubles the requested size for bookkeeping, so half of INT_MAX is the usable top.
  static constexpr value_range buffer_size_range{1, INT_MAX / 2};

  // IP_BIND_ADDRESS_NO_PORT (Linux 4.2): bind a source address, leave the port to connect(). Spelled out
  // because older C libraries do not name it; 0 on platforms without it.
  static constexpr int bind_address_no_port_option = 24;
};

} // namespace tether::detail

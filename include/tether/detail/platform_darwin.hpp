// macOS / iOS (XNU): keepalive idle is TCP_KEEPALIVE (there is no TCP_KEEPIDLE); the user timeout
// equivalent is TCP_RXT_CONNDROPTIME in seconds; SO_LINGER counts 10 ms ticks, so SO_LINGER_SEC is used,
// whose short storage overflows above 327 s. SO_REUSEPORT does not load-balance here.
#pragma once

#include <tether/detail/platform.hpp>

#include <chrono>
#include <climits>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#ifndef TCP_KEEPINTVL
#define TCP_KEEPINTVL 0x101
#endif
#ifndef TCP_KEEPCNT
#define TCP_KEEPCNT 0x102
#endif
#ifndef TCP_RXT_CONNDROPTIME
#define TCP_RXT_CONNDROPTIME 0x80
#endif
#ifndef SO_LINGER_SEC
#define SO_LINGER_SEC 0x1080
#endif

namespace tether::detail {

struct platform {
  static constexpr const char* name = "macOS";

  // 0 is accepted by XNU but means "system default"; tether asks for explicit values.
  static constexpr bool keepalive_tunable = true;
  static constexpr int keepalive_idle_option = TCP_KEEPALIVE;
  static constexpr int keepalive_interval_option = TCP_KEEPINTVL;
  static constexpr int keepalive_count_option = TCP_KEEPCNT;
  using keepalive_unit = std::chrono::seconds;
  static constexpr value_range keepalive_idle_range{1, 4294967};
  static constexpr value_range keepalive_interval_range{1, 4294967};
  static constexpr value_range keepalive_count_range{1, INT_MAX};

  static constexpr bool user_timeout_supported = true;
  static constexpr int user_timeout_option = TCP_RXT_CONNDROPTIME;
  using user_timeout_unit = std::chrono::seconds;
  static constexpr const char* user_timeout_unit_suffix = "s";
  static constexpr value_range user_timeout_range{0, INT_MAX};

  static constexpr int linger_option = SO_LINGER_SEC;
  static constexpr value_range linger_range{1, 327};

  static constexpr int reuse_address_option = SO_REUSEADDR;
  static constexpr bool reuse_port_supported = false;
  static constexpr int reuse_port_option = 0;

  static constexpr value_range buffer_size_range{1, INT_MAX};

  // Only Linux can bind a source address without reserving a port (IP_BIND_ADDRESS_NO_PORT).
  static constexpr int bind_address_no_port_option = 0;
};

} // namespace tether::detail

// The effective socket options the examples print at start: read back from the kernel with tether::get_option,
// so they show what the platform made of a request (keepalive rounded to whole seconds, for instance), not what was
// asked for. Durations print in the form the flags take (60s, 1500ms), keepalive as its flag does (60s,10s,3).
#pragma once

#include "events.hpp"

#include <tether/socket_options.hpp>

#include <asio/ip/tcp.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>


namespace examples {

// The inverse of parse_duration: the largest unit that divides the value exactly.
inline std::string flag_duration(std::chrono::milliseconds value) {
  struct unit {
    std::int64_t milliseconds;
    const char* suffix;
  };
  for (const auto& [size, suffix] : {unit{3'600'000, "h"}, unit{60'000, "min"}, unit{1'000, "s"}}) {
    if (value.count() != 0 && value.count() % size == 0)
      return std::to_string(value.count() / size) + suffix;
  }
  return std::to_string(value.count()) + "ms";
}

// "127.0.0.1:7000", "[::1]:7000".
inline std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address().to_string();
  return endpoint.address().is_v6() ? fmt::format("[{}]:{}", address, endpoint.port())
                                    : fmt::format("{}:{}", address, endpoint.port());
}

namespace detail {

namespace sockopt = tether::sockopt;

inline std::string on_off(bool enabled) { return enabled ? "on" : "off"; }

inline std::string describe(const sockopt::keepalive& v) {
  return v.enabled ? fmt::format("{},{},{}", flag_duration(v.idle), flag_duration(v.interval), v.count) : "off";
}
inline std::string describe(const sockopt::user_timeout& v) {
  return v.timeout.count() == 0 ? "system default" : flag_duration(v.timeout);
}
inline std::string describe(const sockopt::no_delay& v) { return on_off(v.enabled); }
inline std::string describe(const sockopt::reuse_address& v) { return on_off(v.enabled); }
inline std::string describe(const sockopt::reuse_port& v) { return on_off(v.enabled); }
inline std::string describe(const sockopt::linger& v) {
  switch (v.how) {
  case sockopt::linger::mode::abortive: return "abortive";
  case sockopt::linger::mode::timed: return "timed " + flag_duration(v.timeout);
  case sockopt::linger::mode::graceful: break;
  }
  return "graceful";
}

template <class Option>
field read_back(std::string_view name, tether::native_socket socket) {
  Option effective{};
  if (const std::error_code ec = tether::get_option(socket, effective))
    return {name, "unavailable: " + ec.message()};
  return {name, describe(effective)};
}

} // namespace detail

// keepalive, user_timeout, no_delay and linger: the options that decide how a dead or idle peer is noticed.
inline std::vector<field> connection_option_fields(tether::native_socket socket) {
  namespace sockopt = tether::sockopt;
  return {detail::read_back<sockopt::keepalive>("keepalive", socket),
          detail::read_back<sockopt::user_timeout>("user_timeout", socket),
          detail::read_back<sockopt::no_delay>("no_delay", socket),
          detail::read_back<sockopt::linger>("linger", socket)};
}

// A listening socket's options: those its connections start from, and whether the port is shared.
inline std::vector<field> listener_option_fields(tether::native_socket socket) {
  auto fields = connection_option_fields(socket);
  fields.push_back(detail::read_back<tether::sockopt::reuse_address>("reuse_address", socket));
  fields.push_back(detail::read_back<tether::sockopt::reuse_port>("reuse_port", socket));
  return fields;
}

} // namespace examples

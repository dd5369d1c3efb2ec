// tether's error codes. Each code names the field and, through its message, the range the running
// platform accepts, so a rejected setting explains itself. Codes compare equal to the portable
// std::errc conditions (invalid_argument, not_supported) for generic handling.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/detail/platform.hpp>

#include <string>
#include <system_error>

namespace tether {

enum class error {
  keepalive_idle_out_of_range = 1,
  keepalive_interval_out_of_range,
  keepalive_count_out_of_range,
  keepalive_tuning_not_supported,
  user_timeout_out_of_range,
  user_timeout_not_supported,
  linger_out_of_range,
  buffer_size_out_of_range,
  reuse_port_not_supported,
  tcp_info_not_supported,
  tcp_info_truncated,
  connection_not_open,
  frame_not_encodable,
  write_queue_full,
};

namespace detail {

class error_category_impl final : public std::error_category {
public:
  const char* name() const noexcept override { return "tether"; }

  std::string message(int value) const override {
    using p = platform;
    switch (static_cast<error>(value)) {
    case error::keepalive_idle_out_of_range:
      return range_message("keepalive idle", p::keepalive_idle_range, "s");
    case error::keepalive_interval_out_of_range:
      return range_message("keepalive interval", p::keepalive_interval_range, "s");
    case error::keepalive_count_out_of_range:
      return range_message("keepalive count", p::keepalive_count_range, "");
    case error::keepalive_tuning_not_supported:
      return std::string{"per-socket keepalive idle/interval/count are not supported on "} + p::name;
    case error::user_timeout_out_of_range:
      return range_message("user timeout", p::user_timeout_range, p::user_timeout_unit_suffix);
    case error::user_timeout_not_supported:
      return std::string{"a per-socket user timeout is not supported on "} + p::name;
    case error::linger_out_of_range:
      return range_message("timed linger", p::linger_range, "s");
    case error::buffer_size_out_of_range:
      return range_message("socket buffer size", p::buffer_size_range, " bytes");
    case error::reuse_port_not_supported:
      return std::string{"load-balancing port reuse is not supported on "} + p::name;
    case error::tcp_info_not_supported:
      return std::string{"a TCP_INFO snapshot is not supported on "} + p::name;
    case error::tcp_info_truncated:
      return "the kernel returned a TCP_INFO shorter than the fields tether reads";
    case error::connection_not_open:
      return "the connection is not open (closing or closed)";
    case error::frame_not_encodable:
      return "the codec cannot carry this payload (too large, or a newline in a line_codec payload)";
    case error::write_queue_full:
      return "the connection's write queue is above its high-water mark";
    }
    return "unknown tether error";
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<error>(value)) {
    case error::keepalive_tuning_not_supported:
    case error::user_timeout_not_supported:
    case error::reuse_port_not_supported:
    case error::tcp_info_not_supported:
    case error::tcp_info_truncated:
      return std::errc::not_supported;
    case error::connection_not_open:
      return std::errc::not_connected;
    case error::write_queue_full:
      return std::errc::no_buffer_space;
    default:
      return std::errc::invalid_argument;
    }
  }

private:
  static std::string range_message(const char* what, value_range range, const char* unit) {
    return std::string{what} + " must be within " + std::to_string(range.min) + unit + ".." +
           std::to_string(range.max) + unit + " on " + platform::name;
  }
};

} // namespace detail

inline const std::error_category& error_category() noexcept {
  static const detail::error_category_impl category;
  return category;
}

inline std::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

} // namespace tether

template <>
struct std::is_error_code_enum<tether::error> : std::true_type {};

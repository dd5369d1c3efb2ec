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
  receive_pending,
  buffer_budget_exhausted,
  // A configuration that cannot work, reported by its validate() (and by listener::start, connector::start).
  wheel_tick_not_positive,
  wheel_slots_zero,
  backoff_initial_not_positive,
  backoff_maximum_below_initial,
  backoff_multiplier_below_one,
  connect_timeout_not_positive,
  shards_zero,
  accept_retry_initial_not_positive,
  accept_retry_max_below_initial,
  write_high_water_zero,
  graceful_close_timeout_negative,
  heartbeat_interval_not_positive,
  heartbeat_timeout_not_positive,
  heartbeat_peer_ping_interval_negative,
  heartbeat_ping_strikes_not_positive,
  idle_reaper_bound_negative,
  resume_reading_above_pause,
  write_stall_timeout_not_positive,
  peer_paced_interval_negative,
  peer_paced_multiplier_below_one,
  network_not_cidr,
  proxy_header_timeout_not_positive,
  proxy_max_header_size_too_small,
  max_age_negative,
  max_age_grace_negative,
  max_age_jitter_out_of_range,
  handover_not_supported,
  handover_path_too_long,
  handover_timeout_not_positive,
  handover_drain_negative,
  handover_malformed,
  handover_mismatch,
  descriptor_reserve_not_supported,
  busy_window_negative,
  resume_check_negative,
  ack_progress_stall_timeout_negative,
  ack_progress_not_supported,
  adaptive_heartbeat_bounds_invalid,
  adaptive_heartbeat_fraction_out_of_range,
  adaptive_heartbeat_reverify_negative,
  adaptive_heartbeat_probe_budget_not_positive,
  adaptive_heartbeat_needs_heartbeat,
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
    case error::peer_paced_interval_negative:
      return "peer_paced.interval must be at least 0ms (0 waits for the peer to declare one)";
    case error::peer_paced_multiplier_below_one:
      return "peer_paced.multiplier must be at least 1.0";
    case error::receive_pending:
      return "another async_receive is already waiting on this connection";
    case error::buffer_budget_exhausted:
      return "the buffer budget shared with other connections has no room for this message";
    case error::resume_reading_above_pause:
      return "connection_options.resume_reading_below must be at most pause_reading_above";
    case error::write_stall_timeout_not_positive:
      return "connection_options.write_stall_timeout must be at least 1ms";
    case error::wheel_tick_not_positive:
      return "timer_wheel_options.tick must be at least 1ms";
    case error::wheel_slots_zero:
      return "timer_wheel_options.slots must be at least 1";
    case error::backoff_initial_not_positive:
      return "backoff.initial must be at least 1ms";
    case error::backoff_maximum_below_initial:
      return "backoff.maximum must be at least backoff.initial";
    case error::backoff_multiplier_below_one:
      return "backoff.multiplier must be at least 1.0";
    case error::connect_timeout_not_positive:
      return "connector_options.connect_timeout must be at least 1ms";
    case error::shards_zero:
      return "listener_options.shards must be at least 1";
    case error::accept_retry_initial_not_positive:
      return "listener_options.accept_retry_initial must be at least 1ms";
    case error::accept_retry_max_below_initial:
      return "listener_options.accept_retry_max must be at least accept_retry_initial";
    case error::write_high_water_zero:
      return "connection_options.write_high_water must be at least 1 byte";
    case error::graceful_close_timeout_negative:
      return "connection_options.graceful_close_timeout must be at least 0ms";
    case error::busy_window_negative:
      return "connection_options.busy_window must be at least 0ms";
    case error::resume_check_negative:
      return "connector_options.resume_check must be at least 0ms";
    case error::ack_progress_stall_timeout_negative:
      return "ack_progress.stall_timeout must be at least 0ms (0 is off)";
    case error::ack_progress_not_supported:
      return std::string{"ack_progress reads the kernel's send counters, which tether does not read on "} + p::name;
    case error::adaptive_heartbeat_bounds_invalid:
      return "adaptive_heartbeat.min must be at least 1ms and max at least min";
    case error::adaptive_heartbeat_fraction_out_of_range:
      return "adaptive_heartbeat.margin must be within [0, 1) and precision within (0, 1]";
    case error::adaptive_heartbeat_reverify_negative:
      return "adaptive_heartbeat.reverify_every must be at least 0ms";
    case error::adaptive_heartbeat_probe_budget_not_positive:
      return "adaptive_heartbeat.max_probes_per_hour must be at least 1";
    case error::adaptive_heartbeat_needs_heartbeat:
      return "connector_options.adaptive sets the heartbeat's interval: the liveness policy must include heartbeat";
    case error::heartbeat_interval_not_positive:
      return "heartbeat.interval must be at least 1ms";
    case error::heartbeat_timeout_not_positive:
      return "heartbeat.timeout must be at least 1ms";
    case error::heartbeat_peer_ping_interval_negative:
      return "heartbeat.min_peer_ping_interval must be at least 0ms (0 accepts any rate)";
    case error::heartbeat_ping_strikes_not_positive:
      return "heartbeat.max_ping_strikes must be at least 1";
    case error::idle_reaper_bound_negative:
      return "idle_reaper.read_idle, write_idle and all_idle must be at least 0ms (0 is off)";
    case error::network_not_cidr:
      return "a network is an IPv4 or IPv6 address with an optional /prefix length: 10.0.0.0/8, fd00::/8, 127.0.0.1";
    case error::proxy_header_timeout_not_positive:
      return "proxy_protocol_options.header_timeout must be at least 1ms";
    case error::proxy_max_header_size_too_small:
      return "proxy_protocol_options.max_header_size must be at least 232 bytes (the PROXY protocol's minimum)";
    case error::max_age_negative:
      return "max_age.age must not be negative (0 turns it off)";
    case error::max_age_grace_negative:
      return "max_age.grace must not be negative";
    case error::max_age_jitter_out_of_range:
      return "max_age.jitter must be between 0 and 0.5";
    case error::handover_not_supported:
      return std::string{"handing listening sockets to another process is not supported on "} + p::name;
    case error::handover_path_too_long:
      return "handover_options.path is longer than a Unix socket address holds";
    case error::handover_timeout_not_positive:
      return "handover_options.timeout must be at least 1ms";
    case error::handover_drain_negative:
      return "handover_options.drain must not be negative";
    case error::handover_malformed:
      return "the process at handover_options.path did not hand over listening TCP sockets";
    case error::descriptor_reserve_not_supported:
      return std::string{"refusing connections with a reserve descriptor is not supported on "} + p::name;
    case error::handover_mismatch:
      return "the listening sockets handed over do not fit this listener (another address or port, or a socket "
             "count other than 1 or one per shard with balance by_kernel)";
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
    case error::handover_not_supported:
    case error::descriptor_reserve_not_supported:
    case error::ack_progress_not_supported:
      return std::errc::not_supported;
    case error::handover_malformed:
      return std::errc::protocol_error;
    case error::connection_not_open:
      return std::errc::not_connected;
    case error::write_queue_full:
      return std::errc::no_buffer_space;
    case error::receive_pending:
      return std::errc::operation_in_progress;
    case error::buffer_budget_exhausted:
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

// Why a connection closed. Every close carries exactly one reason; the names are stable snake_case strings
// (they appear in logs and in the examples' JSON), and a reason converts to a std::error_code.
#pragma once

#include <tether/detail/config.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace tether {

enum class close_reason : std::uint8_t {
  peer_closed,        // the peer sent FIN
  peer_reset,         // the peer (or a middlebox that forgot the flow) sent RST
  keepalive_timeout,  // kernel keepalive probes went unanswered
  user_timeout,       // sent data stayed unacknowledged past the user timeout
  heartbeat_timeout,  // no pong and no data within the heartbeat timeout
  idle_timeout,       // the idle reaper closed a connection without activity
  protocol_error,     // malformed or oversized frame
  ping_flood,         // the peer pinged faster than allowed, too often
  backpressure,       // the write queue passed its high-water mark
  limit_exceeded,     // over a listener's connection limit
  local_close,        // this side asked to close
  shutdown,           // the listener or connector is stopping
  handshake_failed,   // the codec's handshake (WebSocket upgrade) was refused or did not finish in time
  peer_silent,        // the peer stayed silent past the interval it declared (peer-paced liveness)
  over_budget,        // closed to keep the buffers of many connections within their buffer_budget
  max_age,            // the connection reached its maximum age: it was asked to leave, or reset after the grace
  send_stalled,       // bytes stayed in flight with no acknowledgement past ack_progress's stall timeout
  io_error,           // any other socket error (see the connection's close_error())
};

// io_error stays the last enumerator: the count, and every table sized by it, follow from it.
inline constexpr std::size_t close_reason_count = static_cast<std::size_t>(close_reason::io_error) + 1;

namespace detail {
inline constexpr std::array<std::string_view, close_reason_count> close_reason_names{
    "peer_closed",  "peer_reset",     "keepalive_timeout", "user_timeout", "heartbeat_timeout",
    "idle_timeout", "protocol_error", "ping_flood",        "backpressure", "limit_exceeded",
    "local_close",  "shutdown",       "handshake_failed",  "peer_silent",  "over_budget",
    "max_age",      "send_stalled",   "io_error"};
static_assert(close_reason_names.back() == "io_error", "a close_reason without a name");
} // namespace detail

// The reason's stable snake_case name, as logs and the examples' JSON show it.
constexpr std::string_view close_reason_name(close_reason reason) noexcept {
  const auto index = static_cast<std::size_t>(reason);
  return index < close_reason_count ? detail::close_reason_names[index] : std::string_view{"unknown"};
}

namespace detail {
class close_reason_category_impl final : public std::error_category {
public:
  const char* name() const noexcept override { return "tether.close_reason"; }
  std::string message(int value) const override {
    return std::string{close_reason_name(static_cast<close_reason>(value - 1))};
  }
};
} // namespace detail

inline const std::error_category& close_reason_category() noexcept {
  static const detail::close_reason_category_impl category;
  return category;
}

// Every reason is an error, peer_closed (the enumerator 0) included: the code's value is the enumerator plus one,
// so that no close ever reads as success.
inline std::error_code make_error_code(close_reason reason) noexcept {
  return {static_cast<int>(reason) + 1, close_reason_category()};
}

} // namespace tether

template <>
struct std::is_error_code_enum<tether::close_reason> : std::true_type {};

// Acknowledged progress: a slow transfer is alive, a stalled one is dead.
//
// A ping can wait behind megabytes of our own queued data on a slow path; the peer is alive and reading but
// cannot answer within the heartbeat timeout. With ack_progress in the policy, the connection reads the
// kernel's send counters before every deadline check, and when the peer acknowledged more of a transfer that
// is still in flight, that moment counts as bytes received and sent: the heartbeat's timeout and the idle
// reaper's write_idle and all_idle run from it. An idle peer's acknowledgement of our ping alone proves
// nothing (nothing is left in flight after it), so a hung process is still found by the heartbeat.
//
// With a stall_timeout, bytes in flight with no acknowledgement for that long close the connection with
// send_stalled: an application-level user timeout. It is seen within stall_timeout after the last
// acknowledgement, or within 1.25 x stall_timeout after the write when the bytes were never acknowledged (the
// first reading after a write comes a quarter of the timeout after it, and the stall is counted from there).
//
// Linux only (TCP_INFO, 4.6 and later); validate() refuses it elsewhere.
#pragma once

#include <tether/detail/kernel_send_progress.hpp>
#include <tether/error.hpp>
#include <tether/liveness/strategy.hpp>

#include <chrono>
#include <cstdint>

namespace tether {

struct ack_progress {
  std::chrono::milliseconds stall_timeout{0};  // 0: progress only proves life; no stall close

  class state {
  public:
    bool in_flight() const noexcept { return in_flight_; }
    std::uint64_t bytes_acked() const noexcept { return bytes_acked_; }

  private:
    friend struct ack_progress;
    liveness_clock::time_point stalled_since_{};  // the last acknowledgement, or when bytes were first seen waiting
    liveness_clock::time_point read_at_{};        // the last reading of the counters
    std::uint64_t bytes_acked_ = 0;
    bool in_flight_ = false;
  };
  static constexpr bool needs_control_frames = false;

  std::error_code validate() const noexcept {
    if (stall_timeout.count() < 0)
      return error::ack_progress_stall_timeout_negative;
    if (!detail::kernel_send_progress_available)
      return error::ack_progress_not_supported;
    return {};
  }

  liveness_clock::time_point on_progress(state& s, const send_progress& seen,
                                         liveness_clock::time_point now) const noexcept {
    const bool acknowledged_more = seen.bytes_acked != s.bytes_acked_;
    const bool newly_in_flight = seen.in_flight && !s.in_flight_;
    s.bytes_acked_ = seen.bytes_acked;
    s.in_flight_ = seen.in_flight;
    s.read_at_ = now;
    if (acknowledged_more)
      s.stalled_since_ = std::min(seen.last_ack, now);
    else if (newly_in_flight)
      s.stalled_since_ = now;
    return acknowledged_more && seen.in_flight ? s.stalled_since_ : liveness_clock::time_point{};
  }

  liveness_clock::time_point next_deadline(const state& s, const activity& seen) const noexcept {
    if (stall_timeout.count() <= 0)
      return liveness_clock::time_point::max();
    if (s.in_flight_)
      return s.stalled_since_ + stall_timeout;
    if (seen.data_sent <= s.read_at_)
      return liveness_clock::time_point::max();  // nothing sent since the counters showed nothing waiting
    return seen.data_sent + stall_timeout / 4;
  }

  verdict on_deadline(state& s, const activity&, liveness_clock::time_point now) const noexcept {
    if (stall_timeout.count() > 0 && s.in_flight_ && now >= s.stalled_since_ + stall_timeout)
      return verdict::close(close_reason::send_stalled,
                            "bytes in flight got no acknowledgement within ack_progress's stall timeout");
    return verdict::none();
  }
};

} // namespace tether

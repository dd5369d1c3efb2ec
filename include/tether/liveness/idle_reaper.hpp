// Idle reaper: closes connections that carried no application data for a while, reason idle_timeout, with
// the direction in the close detail. Control frames (ping/pong) are not activity here: a client that only
// answers heartbeats is alive but idle. Each bound of zero is off.
#pragma once

#include <tether/error.hpp>
#include <tether/liveness/strategy.hpp>

#include <algorithm>
#include <chrono>

namespace tether {

struct idle_reaper {
  std::chrono::milliseconds read_idle{0};   // nothing received for this long
  std::chrono::milliseconds write_idle{0};  // nothing sent for this long
  std::chrono::milliseconds all_idle{0};    // nothing in either direction for this long

  struct state {};
  static constexpr bool needs_control_frames = false;

  std::error_code validate() const noexcept {
    if (read_idle.count() < 0 || write_idle.count() < 0 || all_idle.count() < 0)
      return error::idle_reaper_bound_negative;
    return {};
  }

  liveness_clock::time_point next_deadline(const state&, const activity& seen) const noexcept {
    auto deadline = liveness_clock::time_point::max();
    if (read_idle.count() > 0)
      deadline = std::min(deadline, seen.data_received + read_idle);
    if (write_idle.count() > 0)
      deadline = std::min(deadline, seen.data_sent + write_idle);
    if (all_idle.count() > 0)
      deadline = std::min(deadline, std::max(seen.data_received, seen.data_sent) + all_idle);
    return deadline;
  }

  verdict on_deadline(state&, const activity& seen, liveness_clock::time_point now) const noexcept {
    if (all_idle.count() > 0 && now >= std::max(seen.data_received, seen.data_sent) + all_idle)
      return verdict::close(close_reason::idle_timeout, "idle in both directions");
    if (read_idle.count() > 0 && now >= seen.data_received + read_idle)
      return verdict::close(close_reason::idle_timeout, "read idle");
    if (write_idle.count() > 0 && now >= seen.data_sent + write_idle)
      return verdict::close(close_reason::idle_timeout, "write idle");
    return verdict::none();
  }
};

} // namespace tether

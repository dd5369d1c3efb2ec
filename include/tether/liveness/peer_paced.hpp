// Peer-paced liveness, for protocols where the client sets the pace and the server only enforces it: MQTT's
// keep-alive (the client declares an interval in CONNECT; the server closes a client silent for one and a half of
// them), browsers and mobile SDKs that ping on their own schedule. Any byte from the peer counts; nothing is sent.
// A connection silent for `multiplier` x its interval closes with peer_silent. The interval is the strategy's
// until the peer declares its own, through connection::update_liveness<peer_paced>(...declare(...)).
#pragma once

#include <tether/error.hpp>
#include <tether/liveness/strategy.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace tether {

struct peer_paced {
  std::chrono::milliseconds interval{std::chrono::seconds{60}};  // until the peer declares one; 0 waits for it
  double multiplier = 1.5;

  class state {
  public:
    // The interval the peer declared (MQTT: the keep-alive of its CONNECT); zero turns the enforcement off, as
    // MQTT's keep-alive of 0 does.
    void declare(std::chrono::milliseconds declared) noexcept {
      declared_ms_ = static_cast<std::int32_t>(std::clamp<std::chrono::milliseconds::rep>(declared.count(), 0, INT32_MAX));
      declared_ = true;
    }
    bool declared() const noexcept { return declared_; }

  private:
    friend struct peer_paced;
    std::int32_t declared_ms_ = 0;
    bool declared_ = false;
  };
  static constexpr bool needs_control_frames = false;

  std::error_code validate() const noexcept {
    if (interval.count() < 0)
      return error::peer_paced_interval_negative;
    if (!(multiplier >= 1.0))
      return error::peer_paced_multiplier_below_one;
    return {};
  }

  // How long the peer may stay silent: zero for no bound.
  std::chrono::milliseconds allowed_silence(const state& s) const noexcept {
    const auto pace = s.declared_ ? std::chrono::milliseconds{s.declared_ms_} : interval;
    return std::chrono::milliseconds{static_cast<std::chrono::milliseconds::rep>(static_cast<double>(pace.count()) * multiplier)};
  }

  liveness_clock::time_point next_deadline(const state& s, const activity& seen) const noexcept {
    const auto allowed = allowed_silence(s);
    return allowed.count() > 0 ? seen.received + allowed : liveness_clock::time_point::max();
  }

  verdict on_deadline(state& s, const activity& seen, liveness_clock::time_point now) const noexcept {
    const auto allowed = allowed_silence(s);
    if (allowed.count() > 0 && now >= seen.received + allowed)
      return verdict::close(close_reason::peer_silent, "the peer was silent past the interval it declared, times the multiplier");
    return verdict::none();
  }
};

} // namespace tether

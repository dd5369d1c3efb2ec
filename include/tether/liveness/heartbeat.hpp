// Application heartbeat: ping/pong control frames carried in band by the codec. Any byte received proves
// the peer alive; a ping goes out only after `interval` without received bytes, and if neither a pong nor
// any other byte arrives within `timeout` the connection closes with heartbeat_timeout. Unlike kernel
// keepalive this notices a hung peer process, whose kernel would still acknowledge. A dead peer is detected
// within interval + timeout of its last pong, plus up to two wheel ticks (the ping and the timeout each fire at
// the first tick at or after their deadline); when its last sign of life was other data arriving while a ping
// was outstanding, within max(interval, timeout) + timeout plus two ticks. Round trips are measured
// (last, min, smoothed). A peer pinging more often than `min_peer_ping_interval` earns a strike; after
// `max_ping_strikes` strikes in a row it is closed with ping_flood.
#pragma once

#include <tether/liveness/strategy.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace tether {

struct heartbeat {
  std::chrono::milliseconds interval{std::chrono::seconds{15}};
  std::chrono::milliseconds timeout{std::chrono::seconds{5}};
  std::chrono::milliseconds min_peer_ping_interval{std::chrono::seconds{1}};
  int max_ping_strikes = 3;

  using rtt_duration = std::chrono::duration<std::int32_t, std::micro>;

  struct state {
    // Liveness compares the ping with activity stamps, which come from the wheel's per-tick clock; the round
    // trip needs the precise clock. A ping and data stamped in the same tick count as data after the ping.
    liveness_clock::time_point ping_sent{};
    liveness_clock::time_point ping_sent_precise{};
    liveness_clock::time_point last_peer_ping{};
    rtt_duration last_rtt{0};
    rtt_duration min_rtt{0};
    rtt_duration smoothed_rtt{0};
    std::uint32_t sequence = 0;
    std::uint16_t strikes = 0;
    bool awaiting_answer = false;
  };
  static constexpr bool needs_control_frames = true;

  liveness_clock::time_point next_deadline(const state& s, const activity& seen) const noexcept {
    if (s.awaiting_answer && seen.received < s.ping_sent)
      return s.ping_sent + timeout;
    return seen.received + interval;
  }

  verdict on_deadline(state& s, const activity& seen, liveness_clock::time_point now) const noexcept {
    if (s.awaiting_answer) {
      if (seen.received >= s.ping_sent)
        s.awaiting_answer = false;
      else if (now >= s.ping_sent + timeout)
        return verdict::close(close_reason::heartbeat_timeout, "no pong and no data within the heartbeat timeout");
      else
        return verdict::none();
    }
    return now >= seen.received + interval ? verdict::ping() : verdict::none();
  }

  // Called when the connection sends a ping; returns the payload the pong must echo.
  std::uint32_t begin_ping(state& s, liveness_clock::time_point tick_now, liveness_clock::time_point precise_now) const noexcept {
    s.ping_sent = tick_now;
    s.ping_sent_precise = precise_now;
    s.awaiting_answer = true;
    return ++s.sequence;
  }

  // Returns the measured round trip, or zero for a pong that answers no outstanding ping.
  rtt_duration on_pong(state& s, std::string_view payload, liveness_clock::time_point precise_now) const noexcept {
    std::uint32_t answered = 0;
    const auto parsed = std::from_chars(payload.data(), payload.data() + payload.size(), answered);
    if (!s.awaiting_answer || parsed.ec != std::errc{} || answered != s.sequence)
      return rtt_duration{0};
    s.awaiting_answer = false;
    const auto rtt = std::max(rtt_duration{1}, std::chrono::duration_cast<rtt_duration>(precise_now - s.ping_sent_precise));
    s.last_rtt = rtt;
    s.min_rtt = s.min_rtt.count() == 0 ? rtt : std::min(s.min_rtt, rtt);
    // RFC 6298's smoothing: srtt = 7/8 srtt + 1/8 sample.
    s.smoothed_rtt = s.smoothed_rtt.count() == 0 ? rtt : rtt_duration{(7 * s.smoothed_rtt.count() + rtt.count()) / 8};
    return rtt;
  }

  verdict on_peer_ping(state& s, liveness_clock::time_point now) const noexcept {
    const bool too_soon = s.last_peer_ping != liveness_clock::time_point{} && now - s.last_peer_ping < min_peer_ping_interval;
    s.last_peer_ping = now;
    s.strikes = too_soon ? static_cast<std::uint16_t>(s.strikes + 1) : std::uint16_t{0};
    if (s.strikes >= max_ping_strikes)
      return verdict::close(close_reason::ping_flood, "peer pinged faster than min_peer_ping_interval too often");
    return verdict::none();
  }
};

} // namespace tether

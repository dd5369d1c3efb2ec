// Application heartbeat: ping/pong control frames carried in band by the codec, written against the strategy
// contract alone (tether/liveness/strategy.hpp).
//
// Any byte received proves the peer alive; a ping goes out only after `interval` without received bytes, and if
// neither a pong nor any other byte arrives within `timeout` the connection closes with heartbeat_timeout. Unlike
// kernel keepalive this notices a hung peer process, whose kernel would still acknowledge. A dead peer is
// detected within interval + timeout of its last sign of life plus up to one wheel tick: the timeout runs from
// the moment the ping was due, not from the later tick that sent it, so the two deadlines do not add up their
// ticks. The peer therefore has at least timeout minus one tick to answer.
//
// A ping counts as sent only once the connection queued it. One the connection could not queue (the codec
// cannot carry it, or the write queue is over even the control frames' allowance) starts no timeout of its
// own: the connection still closes with heartbeat_timeout if nothing at all arrives within interval + timeout,
// and the close detail then says that our ping could not be queued.
//
// Round trips are measured (last, min, smoothed) and read through the connection's liveness_state<heartbeat>().
// A pong is matched by the ping's sequence number in its payload, or, when it carries no payload (protocols
// whose pongs do not echo), as the answer to the one outstanding ping.
//
// The peer's pings are answered by the connection itself. Their rate is limited: on average one per
// `min_peer_ping_interval`, with bursts of up to `max_ping_strikes` pings (a token bucket, so bursts spaced out
// cannot sustain more than the rate); a ping beyond that closes the connection with ping_flood. Zero
// min_peer_ping_interval accepts any rate.
#pragma once

#include <tether/error.hpp>
#include <tether/liveness/strategy.hpp>

#include <algorithm>
#include <array>
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

  class state {
  public:
    rtt_duration last_rtt() const noexcept { return last_rtt_; }
    rtt_duration min_rtt() const noexcept { return min_rtt_; }
    rtt_duration smoothed_rtt() const noexcept { return smoothed_rtt_; }
    // A ping is queued and neither its pong nor any other byte has arrived since.
    bool awaiting_answer() const noexcept { return awaiting_answer_; }
    std::uint32_t pings_sent() const noexcept { return sequence_; }

    // This connection's own interval and timeout, in place of the strategy's (zero: the strategy's). Change them
    // through connection::update_liveness<heartbeat>, which applies them at once.
    void set_interval(std::chrono::milliseconds value) noexcept { interval_ms_ = clamp_ms(value); }
    void set_timeout(std::chrono::milliseconds value) noexcept { timeout_ms_ = clamp_ms(value); }
    // Whether this connection sends pings (on by default). A peer that does not speak the codec's control frames
    // (nc, a plain client on a line protocol) would read them as data: turn them off for it and let keepalive
    // and the reaper keep it. Turned off while a ping is outstanding, its answer is no longer awaited. The
    // peer's own pings are answered either way.
    void set_pinging(bool on) noexcept {
      pinging_off_ = !on;
      if (pinging_off_) {
        awaiting_answer_ = false;
        ping_refused_ = false;
        probe_requested_ = false;
      }
    }
    bool pinging() const noexcept { return !pinging_off_; }
    // Ping at the next tick instead of waiting out the interval: the path may have died while nobody watched
    // (the machine slept; see connector_options::resume_check). A ping still unanswered keeps its own timeout,
    // and its pong ends the probe; with pinging off it does nothing.
    void probe() noexcept {
      if (!pinging_off_)
        probe_requested_ = true;
    }

  private:
    friend struct heartbeat;
    static std::int32_t clamp_ms(std::chrono::milliseconds value) noexcept {
      return static_cast<std::int32_t>(std::clamp<std::chrono::milliseconds::rep>(value.count(), 0, INT32_MAX));
    }
    liveness_clock::time_point ping_sent_{};       // when the last ping was queued, or refused
    liveness_clock::time_point peer_ping_budget_{};  // the token bucket, as the time its tokens run out
    rtt_duration last_rtt_{0};
    rtt_duration min_rtt_{0};
    rtt_duration smoothed_rtt_{0};
    std::uint32_t sequence_ = 0;
    std::int32_t interval_ms_ = 0;
    std::int32_t timeout_ms_ = 0;
    bool awaiting_answer_ = false;
    bool ping_refused_ = false;
    bool pinging_off_ = false;
    bool probe_requested_ = false;
  };
  static constexpr bool needs_control_frames = true;

  std::error_code validate() const noexcept {
    if (interval.count() <= 0)
      return error::heartbeat_interval_not_positive;
    if (timeout.count() <= 0)
      return error::heartbeat_timeout_not_positive;
    if (min_peer_ping_interval.count() < 0)
      return error::heartbeat_peer_ping_interval_negative;
    if (max_ping_strikes < 1)
      return error::heartbeat_ping_strikes_not_positive;
    return {};
  }

  // The interval and timeout a connection runs with: its own where set, the strategy's otherwise.
  std::chrono::milliseconds interval_of(const state& s) const noexcept {
    return s.interval_ms_ > 0 ? std::chrono::milliseconds{s.interval_ms_} : interval;
  }
  std::chrono::milliseconds timeout_of(const state& s) const noexcept {
    return s.timeout_ms_ > 0 ? std::chrono::milliseconds{s.timeout_ms_} : timeout;
  }

  liveness_clock::time_point next_deadline(const state& s, const activity& seen) const noexcept {
    if (s.pinging_off_)
      return liveness_clock::time_point::max();
    if ((s.awaiting_answer_ || s.ping_refused_) && seen.received < s.ping_sent_)
      return answer_due(s, seen);
    if (s.probe_requested_)
      return seen.received;  // already past: the next tick
    return seen.received + interval_of(s);
  }

  verdict on_deadline(state& s, const activity& seen, liveness_clock::time_point now) const noexcept {
    if (s.pinging_off_)
      return verdict::none();
    if (s.awaiting_answer_ || s.ping_refused_) {
      if (seen.received < s.ping_sent_) {
        if (now < answer_due(s, seen))
          return verdict::none();
        return verdict::close(close_reason::heartbeat_timeout,
                              s.ping_refused_ ? "nothing arrived within the heartbeat timeout and our ping could "
                                                "not be queued"
                                              : "no pong and no data within the heartbeat timeout");
      }
      s.awaiting_answer_ = false;
      s.ping_refused_ = false;
    }
    if (!s.probe_requested_ && now < seen.received + interval_of(s))
      return verdict::none();
    std::array<char, 10> text{};
    const auto end = std::to_chars(text.data(), text.data() + text.size(), s.sequence_ + 1).ptr;
    return verdict::send(frame_kind::ping, {text.data(), static_cast<std::size_t>(end - text.data())});
  }

  void on_sent(state& s, const control_frame& sent, std::error_code outcome, liveness_clock::time_point now) const noexcept {
    if (sent.kind != frame_kind::ping)
      return;
    s.ping_sent_ = now;
    s.probe_requested_ = false;
    s.ping_refused_ = static_cast<bool>(outcome);
    if (outcome)
      return;
    ++s.sequence_;
    s.awaiting_answer_ = true;
  }

  verdict on_control(state& s, const control_frame& frame, liveness_clock::time_point now) const noexcept {
    switch (frame.kind) {
    case frame_kind::ping:
      return admit_peer_ping(s, now);
    case frame_kind::pong:
      return match_pong(s, frame.payload, now);
    case frame_kind::data:
    case frame_kind::binary:
    case frame_kind::goaway:
      break;
    }
    return verdict::none();
  }

private:
  // Nothing has arrived since the ping (seen.received is older than it), so the moment the ping was due is still
  // seen.received + interval; an interval lengthened since then cannot push the deadline past the ping's own.
  liveness_clock::time_point answer_due(const state& s, const activity& seen) const noexcept {
    return std::min(s.ping_sent_, seen.received + interval_of(s)) + timeout_of(s);
  }

  verdict admit_peer_ping(state& s, liveness_clock::time_point now) const noexcept {
    if (min_peer_ping_interval.count() <= 0)
      return verdict::none();
    // The bucket holds max_ping_strikes pings and refills one per min_peer_ping_interval; its level is kept as
    // the moment it would be full again, so it needs one time point and no refill timer.
    const auto burst = min_peer_ping_interval * std::max(max_ping_strikes, 1);
    const auto refilled_at = std::max(s.peer_ping_budget_, now);
    if (refilled_at + min_peer_ping_interval - now > burst)
      return verdict::close(close_reason::ping_flood, "the peer pinged faster than min_peer_ping_interval allows");
    s.peer_ping_budget_ = refilled_at + min_peer_ping_interval;
    return verdict::none();
  }

  verdict match_pong(state& s, std::string_view payload, liveness_clock::time_point now) const noexcept {
    if (!s.awaiting_answer_)
      return verdict::none();
    if (!payload.empty()) {
      std::uint32_t answered = 0;
      const auto parsed = std::from_chars(payload.data(), payload.data() + payload.size(), answered);
      if (parsed.ec != std::errc{} || parsed.ptr != payload.data() + payload.size() || answered != s.sequence_)
        return verdict::none();
    }
    s.awaiting_answer_ = false;
    s.probe_requested_ = false;  // the answer is the proof a probe would have asked for
    const auto rtt = std::max(rtt_duration{1}, std::chrono::duration_cast<rtt_duration>(now - s.ping_sent_));
    s.last_rtt_ = rtt;
    s.min_rtt_ = s.min_rtt_.count() == 0 ? rtt : std::min(s.min_rtt_, rtt);
    // RFC 6298's smoothing: srtt = 7/8 srtt + 1/8 sample.
    s.smoothed_rtt_ = s.smoothed_rtt_.count() == 0 ? rtt : rtt_duration{(7 * s.smoothed_rtt_.count() + rtt.count()) / 8};
    return verdict::round_trip(rtt);
  }
};

} // namespace tether

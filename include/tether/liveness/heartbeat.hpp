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
// cannot sustain more than the rate). The first ping beyond that is answered, and the peer is told to slow down:
// an unsolicited pong "too_many_pings min-ping=MS" (WebSocket allows unsolicited pongs, and peers that do not
// know it ignore it), and the bucket starts again. A tether peer hearing it stretches its interval to twice its
// own or to MS, whichever is longer, instead of reconnecting into the same refusal. A peer that overruns the
// bucket again before ever letting it refill ignored it, and is closed with ping_flood. Zero
// min_peer_ping_interval accepts any rate.
//
// Negotiation (`negotiate`, off by default): at the first tick after the connection opens, this side announces
// its wishes in an unsolicited pong, "heartbeat interval=MS timeout=MS min-ping=MS". When the peer's
// announcement arrives, the connection runs with the agreed values, which both sides compute alike from the two
// announcements:
//   interval = max(min(interval_A, interval_B), min_ping_A, min_ping_B)   the more eager wish, as fast as both accept
//   timeout  = max(timeout_A, timeout_B)                                the more patient wish
// The rule gives the same result whether a side announced its own values or already agreed ones, so the order
// in which the two announcements cross does not matter. A peer that announces nothing leaves this side on its
// own values.
#pragma once

#include <tether/error.hpp>
#include <tether/liveness/strategy.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace tether {

struct heartbeat {
  std::chrono::milliseconds interval{std::chrono::seconds{15}};
  std::chrono::milliseconds timeout{std::chrono::seconds{5}};
  std::chrono::milliseconds min_peer_ping_interval{std::chrono::seconds{1}};
  int max_ping_strikes = 3;
  bool negotiate = false;  // announce these values to the peer and adopt the agreed ones (above)

  // The tokens of the unsolicited pongs that carry an announcement or a request to slow down.
  static constexpr std::string_view announcement_key = "heartbeat";
  static constexpr std::string_view slow_down_key = "too_many_pings";

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
    // The peer announced its wishes and this connection runs with the agreed values (negotiate on).
    bool agreed() const noexcept { return agreed_; }
    // How many times (up to 255) the peer asked this side to ping less often (too_many_pings), each stretching
    // the interval.
    unsigned times_slowed_down() const noexcept { return times_slowed_down_; }
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
    bool announced_ = false;
    bool agreed_ = false;
    bool peer_told_ = false;  // sent too_many_pings, and the bucket has not refilled since
    std::uint8_t times_slowed_down_ = 0;
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
    if (negotiate && !s.announced_)
      return seen.received;  // already past: the first tick
    if ((s.awaiting_answer_ || s.ping_refused_) && seen.received < s.ping_sent_)
      return answer_due(s, seen);
    if (s.probe_requested_)
      return seen.received;  // already past: the next tick
    return seen.received + interval_of(s);
  }

  verdict on_deadline(state& s, const activity& seen, liveness_clock::time_point now) const noexcept {
    if (s.pinging_off_)
      return verdict::none();
    if (negotiate && !s.announced_) {
      s.announced_ = true;
      return announcement(s);
    }
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
      if (frame.payload.starts_with(announcement_key) || frame.payload.starts_with(slow_down_key))
        return hear_peer_wishes(s, frame.payload);
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
    if (s.peer_ping_budget_ <= now)
      s.peer_told_ = false;  // the peer let the bucket refill: it slowed down
    const auto refilled_at = std::max(s.peer_ping_budget_, now);
    if (refilled_at + min_peer_ping_interval - now <= burst) {
      s.peer_ping_budget_ = refilled_at + min_peer_ping_interval;
      return verdict::none();
    }
    if (s.peer_told_)
      return verdict::close(close_reason::ping_flood,
                            "the peer kept pinging faster than min_peer_ping_interval allows after too_many_pings");
    s.peer_told_ = true;
    s.peer_ping_budget_ = now + min_peer_ping_interval;
    std::array<char, 48> text{};
    const auto end = fill_tokens(text, {{slow_down_key, -1}, {"min-ping=", min_peer_ping_interval.count()}});
    return verdict::send(frame_kind::pong, {text.data(), static_cast<std::size_t>(end - text.data())});
  }

  verdict announcement(const state& s) const noexcept {
    std::array<char, 96> text{};
    const auto end = fill_tokens(text, {{announcement_key, -1},
                                        {"interval=", interval_of(s).count()},
                                        {"timeout=", timeout_of(s).count()},
                                        {"min-ping=", min_peer_ping_interval.count()}});
    return verdict::send(frame_kind::pong, {text.data(), static_cast<std::size_t>(end - text.data())});
  }

  struct token {
    std::string_view key;
    std::chrono::milliseconds::rep value;  // negative: the key stands alone
  };
  // "key value key value ...", space-separated; the buffer holds the longest the callers write.
  template <std::size_t N>
  static char* fill_tokens(std::array<char, N>& text, std::initializer_list<token> tokens) noexcept {
    char* out = text.data();
    char* const last = text.data() + text.size();
    for (const token& t : tokens) {
      if (out != text.data())
        *out++ = ' ';
      out = std::copy(t.key.begin(), t.key.end(), out);
      if (t.value >= 0)
        out = std::to_chars(out, last, t.value).ptr;
    }
    return out;
  }

  // The value of "key=MS" among the payload's tokens; -1 when absent or malformed.
  static std::chrono::milliseconds::rep token_value(std::string_view payload, std::string_view key) noexcept {
    while (!payload.empty()) {
      const auto space = payload.find(' ');
      const std::string_view word = payload.substr(0, space);
      payload = space == std::string_view::npos ? std::string_view{} : payload.substr(space + 1);
      if (!word.starts_with(key))
        continue;
      std::int32_t value = -1;
      const auto parsed = std::from_chars(word.data() + key.size(), word.data() + word.size(), value);
      return parsed.ec == std::errc{} && parsed.ptr == word.data() + word.size() && value >= 0 ? value : -1;
    }
    return -1;
  }

  verdict hear_peer_wishes(state& s, std::string_view payload) const noexcept {
    using std::chrono::milliseconds;
    const auto min_ping = token_value(payload, "min-ping=");
    if (payload.starts_with(slow_down_key)) {
      // Twice as long, and at least what the peer accepts, so that one request is enough for a tether peer.
      const auto doubled = std::min<milliseconds::rep>(2 * interval_of(s).count(), INT32_MAX);
      s.interval_ms_ = state::clamp_ms(milliseconds{std::max<milliseconds::rep>(doubled, min_ping)});
      if (s.times_slowed_down_ < UINT8_MAX)
        ++s.times_slowed_down_;
      return verdict::none();
    }
    const auto interval = token_value(payload, "interval=");
    const auto timeout = token_value(payload, "timeout=");
    if (!negotiate || interval <= 0 || timeout <= 0 || min_ping < 0)
      return verdict::none();
    const auto agreed_interval =
        std::max({std::min(interval_of(s).count(), interval), min_peer_ping_interval.count(), min_ping});
    s.interval_ms_ = state::clamp_ms(milliseconds{agreed_interval});
    s.timeout_ms_ = state::clamp_ms(milliseconds{std::max(timeout_of(s).count(), timeout)});
    s.agreed_ = true;
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

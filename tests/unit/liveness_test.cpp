#include "catch.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/codec/raw_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/ack_progress.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/peer_paced.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using tether::verdict;
using action = tether::verdict::action;
using time_point = tether::liveness_clock::time_point;

namespace {
const time_point t0 = time_point{} + 1000h;
}

namespace {
using tether::control_frame;
using tether::frame_kind;

// What the connection does with a send verdict: queue it (or fail) and tell the strategy.
std::string sent_by(const tether::heartbeat& hb, tether::heartbeat::state& s, const verdict& v, time_point at,
                    std::error_code outcome = {}) {
  REQUIRE(v.what() == action::send);
  hb.on_sent(s, v.frame(), outcome, at);
  return std::string{v.payload()};
}
} // namespace

TEST_CASE("heartbeat pings only after interval without received bytes and closes after timeout") {
  const tether::heartbeat hb{.interval = 10s, .timeout = 3s};
  tether::heartbeat::state s;
  tether::activity seen{t0, t0, t0};

  CHECK(hb.next_deadline(s, seen) == t0 + 10s);
  CHECK(hb.on_deadline(s, seen, t0 + 9s).what() == action::none);

  SECTION("bytes received push the ping out: any data is proof of life") {
    seen.received = t0 + 8s;
    CHECK(hb.on_deadline(s, seen, t0 + 10s).what() == action::none);
    CHECK(hb.next_deadline(s, seen) == t0 + 18s);
  }
  SECTION("silence: ping, then close after the timeout") {
    const verdict ping = hb.on_deadline(s, seen, t0 + 10s);
    CHECK(ping.kind() == frame_kind::ping);
    CHECK(sent_by(hb, s, ping, t0 + 10s) == "1");
    CHECK(s.awaiting_answer());
    CHECK(hb.next_deadline(s, seen) == t0 + 13s);
    CHECK(hb.on_deadline(s, seen, t0 + 12s).what() == action::none);
    const verdict v = hb.on_deadline(s, seen, t0 + 13s);
    CHECK(v.what() == action::close);
    CHECK(v.reason() == tether::close_reason::heartbeat_timeout);
    CHECK(std::string_view{v.detail()} == "no pong and no data within the heartbeat timeout");
  }
  SECTION("a ping sent a tick late keeps the close at interval + timeout after the last byte") {
    // The wheel ran the ping's deadline 90 ms late; the round trip still counts from the send.
    sent_by(hb, s, hb.on_deadline(s, seen, t0 + 10s + 90ms), t0 + 10s + 95ms);
    CHECK(hb.next_deadline(s, seen) == t0 + 13s);
    CHECK(hb.on_deadline(s, seen, t0 + 13s - 1ms).what() == action::none);
    CHECK(hb.on_deadline(s, seen, t0 + 13s).reason() == tether::close_reason::heartbeat_timeout);
    CHECK(hb.on_control(s, {frame_kind::pong, "1"}, t0 + 10s + 100ms).measured_round_trip() == 5ms);
  }
  SECTION("probe: a ping at the next tick instead of after the interval, its timeout from the probe") {
    s.probe();
    CHECK(hb.next_deadline(s, seen) <= t0 + 2s);
    const verdict ping = hb.on_deadline(s, seen, t0 + 2s);
    REQUIRE(ping.what() == action::send);
    CHECK(sent_by(hb, s, ping, t0 + 2s) == "1");
    CHECK(hb.next_deadline(s, seen) == t0 + 5s);
    CHECK(hb.on_deadline(s, seen, t0 + 5s).reason() == tether::close_reason::heartbeat_timeout);
  }
  SECTION("probe: answered, the next ping waits out the interval again") {
    s.probe();
    sent_by(hb, s, hb.on_deadline(s, seen, t0 + 2s), t0 + 2s);
    CHECK(hb.on_control(s, {frame_kind::pong, "1"}, t0 + 2s + 1ms).what() == action::round_trip);
    seen.received = t0 + 2s + 1ms;
    CHECK(hb.next_deadline(s, seen) == t0 + 12s + 1ms);
    CHECK(hb.on_deadline(s, seen, t0 + 3s).what() == action::none);
  }
  SECTION("probe: an outstanding ping keeps its timeout and its pong ends the probe; off, nothing") {
    sent_by(hb, s, hb.on_deadline(s, seen, t0 + 10s), t0 + 10s);
    s.probe();
    CHECK(hb.next_deadline(s, seen) == t0 + 13s);
    CHECK(hb.on_control(s, {frame_kind::pong, "1"}, t0 + 10s + 1ms).what() == action::round_trip);
    seen.received = t0 + 10s + 1ms;
    CHECK(hb.next_deadline(s, seen) == t0 + 20s + 1ms);
    tether::heartbeat::state off;
    off.set_pinging(false);
    off.probe();
    CHECK(hb.next_deadline(off, seen) == tether::liveness_clock::time_point::max());
  }
  SECTION("probe: data that answered the last ping does not swallow a probe") {
    sent_by(hb, s, hb.on_deadline(s, seen, t0 + 10s), t0 + 10s);
    seen.received = t0 + 11s;  // data, not a pong: the ping still counts as awaiting until the next deadline
    REQUIRE(s.awaiting_answer());
    s.probe();
    CHECK(hb.next_deadline(s, seen) <= t0 + 12s);
    const verdict ping = hb.on_deadline(s, seen, t0 + 12s);
    REQUIRE(ping.what() == action::send);
    CHECK(sent_by(hb, s, ping, t0 + 12s) == "2");
  }
  SECTION("a ping sent early (its interval lengthened since) is answered within timeout of the send") {
    sent_by(hb, s, hb.on_deadline(s, seen, t0 + 10s), t0 + 10s);
    s.set_interval(20s);
    CHECK(hb.next_deadline(s, seen) == t0 + 13s);
  }
  SECTION("a pong answers the ping and measures the round trip") {
    const auto sequence = sent_by(hb, s, hb.on_deadline(s, seen, t0 + 10s), t0 + 10s);
    CHECK(hb.on_control(s, {frame_kind::pong, "999"}, t0 + 10s + 2ms).what() == action::none);  // not ours
    const verdict answered = hb.on_control(s, {frame_kind::pong, sequence}, t0 + 10s + 2ms);
    CHECK(answered.what() == action::round_trip);
    CHECK(answered.measured_round_trip() == 2ms);
    CHECK_FALSE(s.awaiting_answer());
    CHECK(s.min_rtt() == 2ms);
    seen.received = t0 + 10s + 2ms;
    CHECK(sent_by(hb, s, hb.on_deadline(s, seen, t0 + 20s + 2ms), t0 + 20s) == "2");
    CHECK(hb.on_control(s, {frame_kind::pong, "2"}, t0 + 20s + 10ms).measured_round_trip() == 10ms);
    CHECK(s.min_rtt() == 2ms);
    CHECK(s.last_rtt() == 10ms);
    CHECK(s.smoothed_rtt().count() == (7 * 2000 + 10000) / 8);
  }
  SECTION("a pong without payload answers the one outstanding ping") {
    sent_by(hb, s, hb.on_deadline(s, seen, t0 + 10s), t0 + 10s);
    CHECK(hb.on_control(s, {frame_kind::pong, ""}, t0 + 10s + 5ms).measured_round_trip() == 5ms);
    CHECK(hb.on_control(s, {frame_kind::pong, ""}, t0 + 10s + 6ms).what() == action::none);  // nothing outstanding
  }
  SECTION("data after the ping counts like a pong") {
    sent_by(hb, s, hb.on_deadline(s, seen, t0 + 10s), t0 + 10s);
    seen.received = t0 + 10s;
    CHECK(hb.on_deadline(s, seen, t0 + 13s).what() == action::none);
    CHECK_FALSE(s.awaiting_answer());
  }
  SECTION("a ping the connection could not queue is not waited for, and the close says so") {
    const verdict ping = hb.on_deadline(s, seen, t0 + 10s);
    sent_by(hb, s, ping, t0 + 10s, tether::error::write_queue_full);
    CHECK_FALSE(s.awaiting_answer());
    CHECK(s.pings_sent() == 0);
    SECTION("bytes arriving keep it open") {
      seen.received = t0 + 11s;
      CHECK(hb.on_deadline(s, seen, t0 + 13s).what() == action::none);
      CHECK(hb.next_deadline(s, seen) == t0 + 21s);
    }
    SECTION("silence still ends in heartbeat_timeout, naming the refused ping") {
      const verdict v = hb.on_deadline(s, seen, t0 + 13s);
      CHECK(v.what() == action::close);
      CHECK(v.reason() == tether::close_reason::heartbeat_timeout);
      CHECK(std::string_view{v.detail()}.find("could not be queued") != std::string_view::npos);
    }
  }
}

TEST_CASE("heartbeat limits the peer's ping rate with a token bucket that bursts cannot dodge") {
  const tether::heartbeat hb{.min_peer_ping_interval = 1s, .max_ping_strikes = 3};
  tether::heartbeat::state s;
  const auto ping_at = [&](time_point at) { return hb.on_control(s, {frame_kind::ping, ""}, at).what(); };
  SECTION("a burst of max_ping_strikes passes; one more is told too_many_pings; overrunning again closes") {
    CHECK(ping_at(t0) == action::none);
    CHECK(ping_at(t0 + 100ms) == action::none);
    CHECK(ping_at(t0 + 200ms) == action::none);
    const verdict told = hb.on_control(s, {frame_kind::ping, ""}, t0 + 300ms);
    CHECK(told.what() == action::send);
    CHECK(told.kind() == frame_kind::pong);
    CHECK(told.payload() == "too_many_pings min-ping=1000");
    // The bucket starts again with this ping in it: two more fit, the third one after is the flood.
    CHECK(ping_at(t0 + 400ms) == action::none);
    CHECK(ping_at(t0 + 500ms) == action::none);
    const verdict v = hb.on_control(s, {frame_kind::ping, ""}, t0 + 600ms);
    CHECK(v.what() == action::close);
    CHECK(v.reason() == tether::close_reason::ping_flood);
    CHECK(std::string_view{v.detail()}.find("after too_many_pings") != std::string_view::npos);
  }
  SECTION("a peer that slowed down after being told, and later bursts again, is told again, not closed") {
    for (int i = 0; i < 3; ++i)
      REQUIRE(ping_at(t0 + i * 10ms) == action::none);
    REQUIRE(ping_at(t0 + 30ms) == action::send);
    for (int i = 1; i <= 5; ++i)
      REQUIRE(ping_at(t0 + 30ms + i * 1s) == action::none);
    const auto later = t0 + 10s;
    for (int i = 0; i < 3; ++i)
      REQUIRE(ping_at(later + i * 10ms) == action::none);
    CHECK(ping_at(later + 30ms) == action::send);
  }
  SECTION("pings at the allowed rate never close") {
    for (int i = 0; i < 100; ++i)
      REQUIRE(ping_at(t0 + i * 1s) == action::none);
  }
  SECTION("bursts of three every 0.7 s (4.3 pings/s) are closed within seconds") {
    int pings = 0;
    action last = action::none;
    for (int burst = 0; burst < 20 && last != action::close; ++burst) {
      for (int i = 0; i < 3 && last != action::close; ++i, ++pings)
        last = ping_at(t0 + burst * 700ms + i * 10ms);
    }
    CHECK(last == action::close);
    CHECK(pings <= 12);
  }
  SECTION("zero min_peer_ping_interval accepts any rate") {
    const tether::heartbeat unlimited{.min_peer_ping_interval = 0ms};
    for (int i = 0; i < 1000; ++i)
      REQUIRE(unlimited.on_control(s, {frame_kind::ping, ""}, t0).what() == action::none);
  }
}

TEST_CASE("heartbeat told too_many_pings stretches its interval: twice its own, at least what the peer accepts") {
  const tether::heartbeat eager{.interval = 200ms, .timeout = 1s};
  tether::heartbeat::state s;
  const tether::activity seen{t0, t0, t0};
  CHECK(eager.on_control(s, {frame_kind::pong, "too_many_pings min-ping=1000"}, t0).what() == action::none);
  CHECK(eager.interval_of(s) == 1s);
  CHECK(s.times_slowed_down() == 1);
  CHECK(eager.next_deadline(s, seen) == t0 + 1s);
  // Without the peer's minimum (or past it) the interval doubles.
  CHECK(eager.on_control(s, {frame_kind::pong, "too_many_pings"}, t0).what() == action::none);
  CHECK(eager.interval_of(s) == 2s);
  CHECK(eager.on_control(s, {frame_kind::pong, "too_many_pings min-ping=x"}, t0).what() == action::none);
  CHECK(eager.interval_of(s) == 4s);
  CHECK(s.times_slowed_down() == 3);
}

TEST_CASE("heartbeat negotiation announces at the first tick and both sides agree on the same values") {
  using tether::heartbeat;
  // The announcement verdict a side sends at its first tick.
  const auto announce = [](const heartbeat& side, heartbeat::state& s) {
    const tether::activity seen{t0, t0, t0};
    REQUIRE(side.next_deadline(s, seen) <= t0);
    const verdict v = side.on_deadline(s, seen, t0);
    REQUIRE(v.what() == action::send);
    REQUIRE(v.kind() == frame_kind::pong);
    side.on_sent(s, v.frame(), {}, t0);
    return std::string{v.payload()};
  };
  const heartbeat server{.interval = 30s, .timeout = 5s, .min_peer_ping_interval = 10s, .negotiate = true};
  const heartbeat client{.interval = 2s, .timeout = 8s, .min_peer_ping_interval = 1s, .negotiate = true};
  heartbeat::state on_server;
  heartbeat::state on_client;
  const std::string from_server = announce(server, on_server);
  CHECK(from_server == "heartbeat interval=30000 timeout=5000 min-ping=10000");
  CHECK(server.next_deadline(on_server, {t0, t0, t0}) == t0 + 30s);  // announced once; then the interval runs

  SECTION("announcements crossing: each side adopts the rule's values") {
    const std::string from_client = announce(client, on_client);
    CHECK(client.on_control(on_client, {frame_kind::pong, from_server}, t0).what() == action::none);
    CHECK(server.on_control(on_server, {frame_kind::pong, from_client}, t0).what() == action::none);
    // interval: the more eager 2 s, raised to the server's accepted 10 s; timeout: the more patient 8 s.
    for (auto [side, s] : {std::pair{&server, &on_server}, std::pair{&client, &on_client}}) {
      CHECK(s->agreed());
      CHECK(side->interval_of(*s) == 10s);
      CHECK(side->timeout_of(*s) == 8s);
    }
  }
  SECTION("the client hears the server before its own tick: it announces agreed values, with the same outcome") {
    CHECK(client.on_control(on_client, {frame_kind::pong, from_server}, t0).what() == action::none);
    const std::string from_client = announce(client, on_client);
    CHECK(from_client == "heartbeat interval=10000 timeout=8000 min-ping=1000");
    CHECK(server.on_control(on_server, {frame_kind::pong, from_client}, t0).what() == action::none);
    CHECK(server.interval_of(on_server) == client.interval_of(on_client));
    CHECK(server.timeout_of(on_server) == client.timeout_of(on_client));
  }
  SECTION("a side without negotiate announces nothing and keeps its own values") {
    const heartbeat plain{.interval = 2s, .timeout = 8s};
    heartbeat::state s;
    CHECK(plain.next_deadline(s, {t0, t0, t0}) == t0 + 2s);
    CHECK(plain.on_control(s, {frame_kind::pong, from_server}, t0).what() == action::none);
    CHECK_FALSE(s.agreed());
    CHECK(plain.interval_of(s) == 2s);
  }
  SECTION("a malformed announcement is ignored, as is a pong of an old peer that echoes a ping") {
    heartbeat::state s;
    for (const char* bad : {"heartbeat", "heartbeat interval=0 timeout=5000 min-ping=0",
                            "heartbeat interval=-5 timeout=5000 min-ping=0", "heartbeat interval=1000 timeout=x min-ping=0"})
      CHECK(client.on_control(s, {frame_kind::pong, bad}, t0).what() == action::none);
    CHECK_FALSE(s.agreed());
    CHECK(client.interval_of(s) == 2s);
  }
}

TEST_CASE("idle reaper watches each direction and names it") {
  const tether::idle_reaper reaper{.read_idle = 5s, .write_idle = 7s, .all_idle = 0s};
  tether::idle_reaper::state s;
  tether::activity seen{t0, t0, t0};
  CHECK(reaper.next_deadline(s, seen) == t0 + 5s);
  CHECK(reaper.on_deadline(s, seen, t0 + 4s).what() == action::none);
  auto v = reaper.on_deadline(s, seen, t0 + 5s);
  CHECK(v.reason() == tether::close_reason::idle_timeout);
  CHECK(std::string_view{v.detail()} == "read idle");

  seen.data_received = t0 + 6s;
  v = reaper.on_deadline(s, seen, t0 + 7s);
  CHECK(std::string_view{v.detail()} == "write idle");

  const tether::idle_reaper both{.all_idle = 3s};
  seen = {t0, t0 + 1s, t0 + 2s};
  CHECK(both.next_deadline(s, seen) == t0 + 5s);
  CHECK(std::string_view{both.on_deadline(s, seen, t0 + 5s).detail()} == "idle in both directions");
  CHECK(tether::idle_reaper{}.next_deadline(s, seen) == time_point::max());
}

TEST_CASE("ack_progress: acknowledged bytes of a transfer in flight prove life, the acknowledgement of a ping alone "
          "does not, and unacknowledged bytes stall after stall_timeout") {
  using tether::send_progress;
  const tether::ack_progress progress{.stall_timeout = 4s};
  tether::ack_progress::state s;
  tether::activity seen{t0, t0, t0};
  CHECK(progress.validate() == std::error_code{});
  CHECK(tether::ack_progress{.stall_timeout = -1ms}.validate() == tether::error::ack_progress_stall_timeout_negative);
  // Data was sent: the first reading comes a quarter of the stall timeout later.
  CHECK(progress.next_deadline(s, seen) == t0 + 1s);
  // A transfer in flight whose acknowledged count grew: proof of life at the last acknowledgement.
  CHECK(progress.on_progress(s, send_progress{.bytes_acked = 1000, .in_flight = true, .last_ack = t0 + 800ms},
                             t0 + 1s) == t0 + 800ms);
  CHECK(progress.next_deadline(s, seen) == t0 + 4800ms);
  // No further acknowledgement: stalled four seconds after the last one.
  CHECK(progress.on_progress(s, send_progress{.bytes_acked = 1000, .in_flight = true, .last_ack = t0 + 800ms},
                             t0 + 4s) == time_point{});
  CHECK(progress.on_deadline(s, seen, t0 + 4799ms).what() == action::none);
  const auto stalled = progress.on_deadline(s, seen, t0 + 4800ms);
  CHECK(stalled.what() == action::close);
  CHECK(stalled.reason() == tether::close_reason::send_stalled);

  SECTION("an idle peer acknowledging our ping proves nothing: nothing is left in flight after it") {
    tether::ack_progress::state idle;
    CHECK(progress.on_progress(idle, send_progress{.bytes_acked = 10, .in_flight = false, .last_ack = t0 + 5ms},
                               t0 + 1s) == time_point{});
    CHECK_FALSE(idle.in_flight());
    CHECK(progress.on_deadline(idle, seen, t0 + 1h).what() == action::none);
    // Nothing sent since that reading: no deadline of its own until data goes out again.
    CHECK(progress.next_deadline(idle, seen) == time_point::max());
  }
  SECTION("bytes first seen waiting without any acknowledgement stall from that reading") {
    tether::ack_progress::state fresh;
    CHECK(progress.on_progress(fresh, send_progress{.bytes_acked = 0, .in_flight = true, .last_ack = t0},
                               t0 + 1s) == time_point{});
    CHECK(progress.next_deadline(fresh, seen) == t0 + 5s);
  }
  SECTION("without a stall timeout it files no deadline and never closes") {
    const tether::ack_progress proof_only{};
    tether::ack_progress::state quiet;
    CHECK(proof_only.next_deadline(quiet, seen) == time_point::max());
    CHECK(proof_only.on_progress(quiet, send_progress{.bytes_acked = 5, .in_flight = true, .last_ack = t0}, t0 + 1s) ==
          t0);
    CHECK(proof_only.on_deadline(quiet, seen, t0 + 1h).what() == action::none);
  }
  SECTION("in a policy, the latest proof of any strategy is the answer, and only such policies read counters") {
    const auto policy = tether::liveness{tether::heartbeat{.interval = 10s, .timeout = 3s}, progress};
    decltype(policy)::state states;
    STATIC_REQUIRE(decltype(policy)::watches_progress);
    STATIC_REQUIRE(sizeof(tether::ack_progress::state) <= 32);  // the figure docs/guide.md and tuning.md give
    STATIC_REQUIRE_FALSE(tether::liveness<tether::heartbeat, tether::idle_reaper>::watches_progress);
    CHECK(policy.on_progress(states, send_progress{.bytes_acked = 7, .in_flight = true, .last_ack = t0 + 2s},
                             t0 + 3s) == t0 + 2s);
  }
}

TEST_CASE("a composition folds deadlines and verdicts: earliest deadline, a close beats a ping") {
  const auto policy = tether::liveness{tether::heartbeat{.interval = 10s, .timeout = 3s},
                                       tether::idle_reaper{.read_idle = 4s}};
  decltype(policy)::state states;
  const tether::activity seen{t0, t0, t0};
  CHECK(policy.next_deadline(states, seen) == t0 + 4s);
  std::vector<verdict> carried_out;
  policy.on_deadline(states, seen, t0 + 10s, [&](const verdict& v) {
    carried_out.push_back(v);
    return std::error_code{};
  });
  REQUIRE(carried_out.size() == 1);
  CHECK(carried_out.front().what() == action::close);
  CHECK(carried_out.front().reason() == tether::close_reason::idle_timeout);
  CHECK_FALSE(decltype(policy)::state_of<tether::heartbeat>(states).awaiting_answer());
}

TEST_CASE("a send's outcome goes back to the strategy that asked, and only to it") {
  const auto policy = tether::liveness{tether::heartbeat{.interval = 10s, .timeout = 3s},
                                       tether::idle_reaper{.read_idle = 1h}};
  decltype(policy)::state states;
  const tether::activity seen{t0, t0, t0};
  SECTION("queued: the ping is outstanding") {
    policy.on_deadline(states, seen, t0 + 10s, [](const verdict& v) {
      CHECK(v.what() == action::send);
      return std::error_code{};
    });
    CHECK(decltype(policy)::state_of<tether::heartbeat>(states).awaiting_answer());
  }
  SECTION("refused: nothing is outstanding") {
    policy.on_deadline(states, seen, t0 + 10s, [](const verdict&) { return make_error_code(tether::error::write_queue_full); });
    CHECK_FALSE(decltype(policy)::state_of<tether::heartbeat>(states).awaiting_answer());
  }
}

TEST_CASE("validate names the field a strategy cannot work with") {
  CHECK(tether::heartbeat{.interval = 0ms}.validate() == tether::error::heartbeat_interval_not_positive);
  CHECK(tether::heartbeat{.timeout = -1ms}.validate() == tether::error::heartbeat_timeout_not_positive);
  CHECK(tether::heartbeat{.max_ping_strikes = 0}.validate() == tether::error::heartbeat_ping_strikes_not_positive);
  CHECK(tether::idle_reaper{.read_idle = -1ms}.validate() == tether::error::idle_reaper_bound_negative);
  CHECK(tether::tcp_keepalive{.count = 0}.validate() == tether::error::keepalive_count_out_of_range);
  CHECK(tether::user_timeout{-1ms}.validate() == tether::error::user_timeout_out_of_range);
  const auto policy = tether::liveness{tether::tcp_keepalive{}, tether::heartbeat{.timeout = 0ms}};
  CHECK(policy.validate() == tether::error::heartbeat_timeout_not_positive);
  CHECK(policy.validate().message() == "heartbeat.timeout must be at least 1ms");
  CHECK_FALSE(tether::liveness{tether::tcp_keepalive{}, tether::heartbeat{}, tether::idle_reaper{}}.validate());
}

TEST_CASE("user timeout follows the keepalive rule of thumb") {
  const tether::tcp_keepalive keepalive{.idle = 60s, .interval = 10s, .count = 3};
  CHECK(keepalive.detection_bound() == 90s);
  CHECK(tether::user_timeout_for(keepalive).timeout == 90s);
}

namespace {
using line = tether::line_codec;
template <class... S>
using conn = tether::connection<line, tether::liveness<S...>>;
}

TEST_CASE("unused strategies cost nothing: sizes and compile-time properties") {
  using tether::heartbeat;
  using tether::idle_reaper;
  using tether::tcp_keepalive;
  using tether::user_timeout;
  // Kernel strategies keep no per-connection state and need no timer node.
  STATIC_REQUIRE(sizeof(conn<>) == sizeof(conn<tcp_keepalive, user_timeout>));
  STATIC_REQUIRE(std::is_empty_v<tether::liveness<tcp_keepalive, user_timeout>::state>);
  // One wheel node whatever the number of timed strategies.
  STATIC_REQUIRE(sizeof(conn<heartbeat, idle_reaper>) - sizeof(conn<heartbeat>) == 0);
  // A timed strategy brings the node and the activity stamps; without one, a read or a send has no stamp to
  // write and reads no clock (the stamps do not exist).
  STATIC_REQUIRE(sizeof(conn<idle_reaper>) == sizeof(conn<>) + sizeof(tether::wheel_node) + sizeof(tether::activity));
  STATIC_REQUIRE_FALSE(tether::liveness<tcp_keepalive, user_timeout>::timed);
  STATIC_REQUIRE(tether::liveness<tcp_keepalive, idle_reaper>::timed);
  STATIC_REQUIRE(tether::liveness<heartbeat>::needs_control_frames);
  STATIC_REQUIRE_FALSE(tether::liveness<idle_reaper, tcp_keepalive>::needs_control_frames);
  // A raw-bytes connection compiles as long as nothing needs control frames.
  STATIC_REQUIRE(sizeof(tether::connection<tether::raw_codec, tether::liveness<idle_reaper>>) > 0);
  INFO("sizeof(connection) bare: " << sizeof(conn<>)
                                   << ", all four strategies: " << sizeof(conn<tcp_keepalive, user_timeout, heartbeat, idle_reaper>));
  CHECK(sizeof(conn<tcp_keepalive, user_timeout, heartbeat, idle_reaper>) <= 320);
}

TEST_CASE("peer_paced enforces the interval the peer declared, times the multiplier") {
  const tether::peer_paced paced{.interval = 10s, .multiplier = 1.5};
  tether::peer_paced::state s;
  tether::activity seen{t0, t0, t0};
  CHECK(paced.next_deadline(s, seen) == t0 + 15s);  // the strategy's interval until the peer declares one
  s.declare(4s);
  CHECK(paced.next_deadline(s, seen) == t0 + 6s);
  CHECK(paced.on_deadline(s, seen, t0 + 5999ms).what() == action::none);
  const verdict v = paced.on_deadline(s, seen, t0 + 6s);
  CHECK(v.what() == action::close);
  CHECK(v.reason() == tether::close_reason::peer_silent);
  s.declare(0s);  // MQTT's keep-alive of zero: no bound
  CHECK(paced.next_deadline(s, seen) == time_point::max());
  CHECK(tether::peer_paced{.multiplier = 0.5}.validate() == tether::error::peer_paced_multiplier_below_one);
  const tether::peer_paced waits_for_declaration{.interval = 0s};
  CHECK(waits_for_declaration.next_deadline(tether::peer_paced::state{}, seen) == time_point::max());
}

#include "catch.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/codec/raw_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>

using namespace std::chrono_literals;
using tether::verdict;
using time_point = tether::liveness_clock::time_point;

namespace {
const time_point t0 = time_point{} + 1000h;
}

TEST_CASE("heartbeat pings only after interval without received bytes and closes after timeout") {
  const tether::heartbeat hb{.interval = 10s, .timeout = 3s};
  tether::heartbeat::state s;
  tether::activity seen{t0, t0, t0};

  CHECK(hb.next_deadline(s, seen) == t0 + 10s);
  CHECK(hb.on_deadline(s, seen, t0 + 9s).what == verdict::action::none);

  SECTION("bytes received push the ping out: any data is proof of life") {
    seen.received = t0 + 8s;
    CHECK(hb.on_deadline(s, seen, t0 + 10s).what == verdict::action::none);
    CHECK(hb.next_deadline(s, seen) == t0 + 18s);
  }
  SECTION("silence: ping, then close after the timeout") {
    REQUIRE(hb.on_deadline(s, seen, t0 + 10s).what == verdict::action::send_ping);
    const auto sequence = hb.begin_ping(s, t0 + 10s, t0 + 10s);
    CHECK(hb.next_deadline(s, seen) == t0 + 13s);
    CHECK(hb.on_deadline(s, seen, t0 + 12s).what == verdict::action::none);
    const verdict v = hb.on_deadline(s, seen, t0 + 13s);
    CHECK(v.what == verdict::action::close);
    CHECK(v.reason == tether::close_reason::heartbeat_timeout);
    CHECK(sequence == 1);
  }
  SECTION("a pong answers the ping and measures the round trip") {
    const auto sequence = hb.begin_ping(s, t0 + 10s, t0 + 10s);
    CHECK(hb.on_pong(s, "999", t0 + 10s + 2ms).count() == 0);  // not ours
    CHECK(hb.on_pong(s, std::to_string(sequence), t0 + 10s + 2ms) == 2ms);
    CHECK_FALSE(s.awaiting_answer);
    CHECK(s.min_rtt == 2ms);
    hb.begin_ping(s, t0 + 20s, t0 + 20s);
    CHECK(hb.on_pong(s, "2", t0 + 20s + 10ms) == 10ms);
    CHECK(s.min_rtt == 2ms);
    CHECK(s.last_rtt == 10ms);
    CHECK(s.smoothed_rtt.count() == (7 * 2000 + 10000) / 8);
  }
  SECTION("data after the ping counts like a pong") {
    hb.begin_ping(s, t0 + 10s, t0 + 10s);
    seen.received = t0 + 10s;  // same tick as the ping
    CHECK(hb.on_deadline(s, seen, t0 + 13s).what == verdict::action::none);
    CHECK_FALSE(s.awaiting_answer);
  }
}

TEST_CASE("heartbeat strikes a peer that pings too often and forgives a well-spaced ping") {
  const tether::heartbeat hb{.min_peer_ping_interval = 1s, .max_ping_strikes = 3};
  tether::heartbeat::state s;
  CHECK(hb.on_peer_ping(s, t0).what == verdict::action::none);
  CHECK(hb.on_peer_ping(s, t0 + 100ms).what == verdict::action::none);
  CHECK(hb.on_peer_ping(s, t0 + 200ms).what == verdict::action::none);
  CHECK(hb.on_peer_ping(s, t0 + 2s).what == verdict::action::none);  // forgiven
  CHECK(s.strikes == 0);
  CHECK(hb.on_peer_ping(s, t0 + 2100ms).what == verdict::action::none);
  CHECK(hb.on_peer_ping(s, t0 + 2200ms).what == verdict::action::none);
  const verdict v = hb.on_peer_ping(s, t0 + 2300ms);
  CHECK(v.what == verdict::action::close);
  CHECK(v.reason == tether::close_reason::ping_flood);
}

TEST_CASE("idle reaper watches each direction and names it") {
  const tether::idle_reaper reaper{.read_idle = 5s, .write_idle = 7s, .all_idle = 0s};
  tether::idle_reaper::state s;
  tether::activity seen{t0, t0, t0};
  CHECK(reaper.next_deadline(s, seen) == t0 + 5s);
  CHECK(reaper.on_deadline(s, seen, t0 + 4s).what == verdict::action::none);
  auto v = reaper.on_deadline(s, seen, t0 + 5s);
  CHECK(v.reason == tether::close_reason::idle_timeout);
  CHECK(std::string_view{v.detail} == "read idle");

  seen.data_received = t0 + 6s;
  v = reaper.on_deadline(s, seen, t0 + 7s);
  CHECK(std::string_view{v.detail} == "write idle");

  const tether::idle_reaper both{.all_idle = 3s};
  seen = {t0, t0 + 1s, t0 + 2s};
  CHECK(both.next_deadline(s, seen) == t0 + 5s);
  CHECK(std::string_view{both.on_deadline(s, seen, t0 + 5s).detail} == "idle in both directions");
  CHECK(tether::idle_reaper{}.next_deadline(s, seen) == time_point::max());
}

TEST_CASE("a composition folds deadlines and verdicts: earliest deadline, a close beats a ping") {
  const auto policy = tether::liveness{tether::heartbeat{.interval = 10s, .timeout = 3s},
                                       tether::idle_reaper{.read_idle = 4s}};
  decltype(policy)::state states;
  const tether::activity seen{t0, t0, t0};
  CHECK(policy.next_deadline(states, seen) == t0 + 4s);
  const verdict v = policy.on_deadline(states, seen, t0 + 10s);
  CHECK(v.what == verdict::action::close);
  CHECK(v.reason == tether::close_reason::idle_timeout);
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
  STATIC_REQUIRE(sizeof(conn<idle_reaper>) == sizeof(conn<>) + sizeof(tether::wheel_node));
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

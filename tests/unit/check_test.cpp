#include "catch.hpp"

#include <tether/check.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tether::finding;
using tether::severity;

namespace {

const tether::diagnostic* find(const std::vector<tether::diagnostic>& found, finding what) {
  const auto it = std::find_if(found.begin(), found.end(), [what](const tether::diagnostic& d) { return d.what == what; });
  return it == found.end() ? nullptr : &*it;
}

bool mentions(const tether::diagnostic* d, const std::string& text) {
  return d != nullptr && d->message.find(text) != std::string::npos;
}

const tether::middlebox firewall{"the firewall", 60s, false};
const tether::middlebox proxy{"the proxy", 60s, true};

} // namespace

TEST_CASE("check: a sound configuration, or one without hints, has no findings") {
  const tether::liveness sound{tether::tcp_keepalive{.idle = 45s, .interval = 5s, .count = 3},
                               tether::user_timeout{60s}, tether::heartbeat{.interval = 15s, .timeout = 5s},
                               tether::idle_reaper{.all_idle = 5min}};
  CHECK(tether::check(sound).empty());
  CHECK(tether::check(sound, {.middlebox = firewall}).empty());
  CHECK(tether::check(sound, {.middlebox = tether::middleboxes::aws_alb}).empty());
  CHECK(tether::check(tether::liveness<>{}).empty());
  // docs/guide.md, "Putting it together".
  const tether::liveness guide{tether::user_timeout{90s}, tether::heartbeat{.interval = 60s, .timeout = 20s},
                               tether::idle_reaper{.read_idle = 15min}};
  CHECK(tether::check(guide, {.middlebox = tether::middleboxes::aws_nlb}).empty());
  // docs/tuning.md, "Worked example".
  const tether::tcp_keepalive keepalive{.idle = 300s, .interval = 15s, .count = 4};
  CHECK(tether::check(tether::liveness{keepalive, tether::user_timeout_for(keepalive)},
                      {.middlebox = tether::middleboxes::aws_nlb}).empty());
  CHECK(tether::check(tether::liveness{tether::user_timeout{90s}, tether::heartbeat{.interval = 60s, .timeout = 20s}},
                      {.middlebox = tether::middleboxes::aws_nlb}).empty());
  CHECK(tether::path_hints{}.tick == tether::timer_wheel_options{}.tick);
}

TEST_CASE("check: keepalive idle or heartbeat interval at or above the middlebox's idle timeout") {
  SECTION("keepalive idle equal to the timeout is an error that names both numbers") {
    const auto found = tether::check(tether::liveness{tether::tcp_keepalive{.idle = 60s, .interval = 10s, .count = 3}},
                                     {.middlebox = firewall});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::keepalive_idle_too_long);
    CHECK(found[0].level == severity::error);
    CHECK(mentions(&found[0], "keepalive idle 60s"));
    CHECK(mentions(&found[0], "the firewall's idle timeout of 60s"));
  }
  SECTION("keepalive idle is compared as the kernel rounds it: 59500ms runs as 60s") {
    const auto found = tether::check(tether::liveness{tether::tcp_keepalive{.idle = 59500ms, .interval = 1s, .count = 3}},
                                     {.middlebox = firewall});
    CHECK(find(found, finding::keepalive_idle_too_long) != nullptr);
  }
  SECTION("keepalive just below the timeout, with one lost probe fatal, is a warning") {
    const auto found = tether::check(tether::liveness{tether::tcp_keepalive{.idle = 55s, .interval = 10s, .count = 3}},
                                     {.middlebox = firewall});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::keepalive_lost_probe_fatal);
    CHECK(found[0].level == severity::warning);
    const auto margin = tether::check(tether::liveness{tether::tcp_keepalive{.idle = 45s, .interval = 10s, .count = 3}},
                                      {.middlebox = firewall});
    CHECK(margin.empty());
  }
  SECTION("keepalive does not keep a proxy open, whatever its idle") {
    const auto found = tether::check(tether::liveness{tether::tcp_keepalive{.idle = 10s, .interval = 5s, .count = 3}},
                                     {.middlebox = proxy});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::keepalive_ends_at_proxy);
    CHECK(found[0].level == severity::error);
    CHECK(mentions(&found[0], "use heartbeat with an interval below 60s"));
  }
  SECTION("a heartbeat interval plus one tick must be below the timeout") {
    const auto at = tether::check(tether::liveness{tether::heartbeat{.interval = 60s, .timeout = 5s}},
                                  {.middlebox = firewall});
    REQUIRE(find(at, finding::heartbeat_interval_too_long) != nullptr);
    CHECK(find(at, finding::heartbeat_interval_too_long)->level == severity::error);
    const auto within_a_tick = tether::check(tether::liveness{tether::heartbeat{.interval = 59950ms, .timeout = 5s}},
                                             {.middlebox = firewall, .tick = 100ms});
    CHECK(find(within_a_tick, finding::heartbeat_interval_too_long) != nullptr);
    const auto below = tether::check(tether::liveness{tether::heartbeat{.interval = 59s, .timeout = 5s}},
                                     {.middlebox = proxy});
    CHECK(below.empty());
  }
  SECTION("one mechanism that keeps the flow is enough: a late keepalive beside a heartbeat is not reported") {
    const auto found = tether::check(tether::liveness{tether::tcp_keepalive{.idle = 120s, .interval = 10s, .count = 3},
                                                      tether::heartbeat{.interval = 20s, .timeout = 5s}},
                                     {.middlebox = firewall});
    CHECK(found.empty());
  }
  SECTION("when neither keeps it, each says why") {
    const auto found = tether::check(tether::liveness{tether::tcp_keepalive{.idle = 120s, .interval = 10s, .count = 3},
                                                      tether::heartbeat{.interval = 90s, .timeout = 5s}},
                                     {.middlebox = firewall});
    CHECK(find(found, finding::keepalive_idle_too_long) != nullptr);
    CHECK(find(found, finding::heartbeat_interval_too_long) != nullptr);
    CHECK(find(found, finding::nothing_keeps_path_open) == nullptr);
  }
  SECTION("with no strategy that sends, the path is kept by nothing, unless the reaper closes first") {
    const auto bare = tether::check(tether::liveness<>{}, {.middlebox = tether::middleboxes::aws_nlb});
    REQUIRE(bare.size() == 1);
    CHECK(bare[0].what == finding::nothing_keeps_path_open);
    CHECK(mentions(&bare[0], "AWS NLB's idle timeout of 350s"));
    const auto reaped_late = tether::check(tether::liveness{tether::idle_reaper{.read_idle = 10min}}, {.middlebox = firewall});
    CHECK(find(reaped_late, finding::nothing_keeps_path_open) != nullptr);
    const auto reaped_first = tether::check(tether::liveness{tether::idle_reaper{.read_idle = 30s}}, {.middlebox = firewall});
    CHECK(reaped_first.empty());
    // A reaper with every bound off (echo_server without --idle-timeout) closes nothing.
    const auto reaper_off = tether::check(tether::liveness{tether::idle_reaper{}}, {.middlebox = firewall});
    CHECK(find(reaper_off, finding::nothing_keeps_path_open) != nullptr);
    // A server that only enforces its clients' pace (MQTT): their pings keep the path.
    const tether::liveness enforcing{tether::peer_paced{.interval = 30s}};
    CHECK(tether::check(enforcing, {.middlebox = firewall, .peer_ping_interval = 30s}).empty());
    CHECK(find(tether::check(enforcing, {.middlebox = firewall, .peer_ping_interval = 90s}),
               finding::nothing_keeps_path_open) != nullptr);
  }
  SECTION("an unnamed middlebox is called the middlebox; a timeout of zero checks nothing") {
    const auto found = tether::check(tether::liveness<>{}, {.middlebox = {.idle_timeout = 30s}});
    REQUIRE(found.size() == 1);
    CHECK(mentions(&found[0], "the middlebox's idle timeout of 30s"));
    CHECK(tether::check(tether::liveness<>{}, {.middlebox = {.name = "unknown"}}).empty());
  }
}

TEST_CASE("check: a user timeout shorter than keepalive's bound cuts keepalive's count") {
  const tether::tcp_keepalive keepalive{.idle = 60s, .interval = 10s, .count = 3};
  SECTION("20s: dropped at the first keepalive run after it, one probe") {
    const auto found = tether::check(tether::liveness{keepalive, tether::user_timeout{20s}});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::user_timeout_cuts_keepalive);
    CHECK(found[0].level == severity::warning);
    CHECK(mentions(&found[0], "after 1 unanswered probe instead of 3"));
    CHECK(mentions(&found[0], "90s"));
  }
  SECTION("75s: two probes") {
    const auto found = tether::check(tether::liveness{keepalive, tether::user_timeout{75s}});
    CHECK(mentions(find(found, finding::user_timeout_cuts_keepalive), "after 2 unanswered probes instead of 3"));
  }
  SECTION("a keepalive interval of zero, which validate() refuses, is not divided by") {
    CHECK(tether::check(tether::liveness{tether::tcp_keepalive{.idle = 10s, .interval = 0s, .count = 3},
                                         tether::user_timeout{20s}}).empty());
  }
  SECTION("just under the bound still waits out every probe, so it is not reported") {
    CHECK(tether::check(tether::liveness{keepalive, tether::user_timeout{85s}}).empty());
    CHECK(tether::check(tether::liveness{keepalive, tether::user_timeout_for(keepalive)}).empty());
  }
  SECTION("a user timeout alone says nothing about keepalive") {
    CHECK(tether::check(tether::liveness{tether::user_timeout{1s}}).empty());
  }
}

TEST_CASE("check: a heartbeat timeout under two ticks") {
  SECTION("one and a half ticks leave the peer half a tick: a warning") {
    const auto found = tether::check(tether::liveness{tether::heartbeat{.interval = 1s, .timeout = 150ms}}, {.tick = 100ms});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::heartbeat_timeout_within_ticks);
    CHECK(found[0].level == severity::warning);
    CHECK(mentions(&found[0], "only 50ms to answer"));
  }
  SECTION("one tick or less may leave it nothing: an error") {
    const auto found = tether::check(tether::liveness{tether::heartbeat{.interval = 1s, .timeout = 100ms}}, {.tick = 100ms});
    REQUIRE(found.size() == 1);
    CHECK(found[0].level == severity::error);
    CHECK(mentions(&found[0], "may have no time at all to answer"));
  }
  SECTION("two ticks are enough; the tick is the one the hints give") {
    CHECK(tether::check(tether::liveness{tether::heartbeat{.interval = 1s, .timeout = 200ms}}, {.tick = 100ms}).empty());
    CHECK(tether::check(tether::liveness{tether::heartbeat{.interval = 1s, .timeout = 150ms}}, {.tick = 10ms}).empty());
  }
}

TEST_CASE("check: an idle reaper that fires before the heartbeat can") {
  const tether::heartbeat beat{.interval = 15s, .timeout = 5s};
  SECTION("below interval + timeout: dead peers close as idle_timeout") {
    const auto found = tether::check(tether::liveness{beat, tether::idle_reaper{.read_idle = 18s}});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::idle_reaper_before_heartbeat);
    CHECK(found[0].level == severity::warning);
    CHECK(mentions(&found[0], "after 18s"));
    CHECK_FALSE(mentions(&found[0], "never pinged"));
  }
  SECTION("at or below the interval: an idle connection is never pinged at all") {
    const auto found = tether::check(tether::liveness{beat, tether::idle_reaper{.write_idle = 1min, .all_idle = 10s}});
    CHECK(mentions(find(found, finding::idle_reaper_before_heartbeat), "never pinged"));
  }
  SECTION("a reaper at interval + timeout or later, or with every bound off, is fine") {
    CHECK(tether::check(tether::liveness{beat, tether::idle_reaper{.read_idle = 20s}}).empty());
    CHECK(tether::check(tether::liveness{beat, tether::idle_reaper{}}).empty());
  }
}

TEST_CASE("check: peer pace against peer_paced and min_peer_ping_interval") {
  SECTION("peer_paced shorter than the peers' declared pace closes healthy peers") {
    const tether::liveness paced{tether::peer_paced{.interval = 30s, .multiplier = 1.5}};
    const auto found = tether::check(paced, {.peer_ping_interval = 60s});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::peer_paced_too_short);
    CHECK(found[0].level == severity::error);
    CHECK(mentions(&found[0], "allows 45s of silence (30s x 1.5)"));
    CHECK(tether::check(paced, {.peer_ping_interval = 30s}).empty());
  }
  SECTION("a multiplier of 1 leaves no room for delay or the tick") {
    const auto found = tether::check(tether::liveness{tether::peer_paced{.interval = 30s, .multiplier = 1.0}});
    REQUIRE(found.size() == 1);
    CHECK(found[0].level == severity::warning);
    CHECK(tether::check(tether::liveness{tether::peer_paced{.interval = 0s}}).empty());
  }
  SECTION("peers pinging faster than min_peer_ping_interval end in ping_flood") {
    const tether::liveness beat{tether::heartbeat{.interval = 15s, .timeout = 5s, .min_peer_ping_interval = 2s}};
    const auto found = tether::check(beat, {.peer_ping_interval = 1s});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::peers_ping_too_often);
    CHECK(found[0].level == severity::error);
    CHECK(tether::check(beat, {.peer_ping_interval = 2s}).empty());
  }
  SECTION("without a declared pace: our own interval below what we accept would flood a peer like us") {
    const auto found = tether::check(tether::liveness{tether::heartbeat{.interval = 500ms, .timeout = 1s}});
    REQUIRE(found.size() == 1);
    CHECK(found[0].what == finding::heartbeat_faster_than_accepted);
    CHECK(tether::check(tether::liveness{tether::heartbeat{.interval = 500ms, .timeout = 1s,
                                                            .min_peer_ping_interval = 0ms}}).empty());
  }
}

TEST_CASE("check: every finding has a name") {
  for (int i = 0; i <= static_cast<int>(finding::heartbeat_faster_than_accepted); ++i)
    CHECK(tether::finding_name(static_cast<finding>(i)) != "unknown");
  CHECK(tether::severity_name(severity::error) == "error");
  CHECK(tether::severity_name(severity::warning) == "warning");
}

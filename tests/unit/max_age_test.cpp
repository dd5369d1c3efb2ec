// max_age without sockets: ages drawn within their jitter, the goaway at the age, the reset after the grace.
#include "catch.hpp"

#include <tether/error.hpp>
#include <tether/liveness/max_age.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tether::max_age;
using action = tether::verdict::action;
using time_point = tether::liveness_clock::time_point;

namespace {
const time_point t0 = time_point{} + 1000h;
const tether::activity seen{t0, t0, t0};
} // namespace

TEST_CASE("max_age draws each connection's age within its jitter, spread over the whole range") {
  const max_age limit{.age = 10s, .grace = 5s, .jitter = 0.1};
  std::vector<time_point> leaves;
  for (int i = 0; i < 2000; ++i) {
    max_age::state s;
    limit.on_open(s, t0);
    leaves.push_back(s.leave_at);
    REQUIRE(s.leave_at >= t0 + 9s);
    REQUIRE(s.leave_at <= t0 + 11s);
  }
  const auto [earliest, latest] = std::minmax_element(leaves.begin(), leaves.end());
  CHECK(*earliest < t0 + 9100ms);
  CHECK(*latest > t0 + 10900ms);
  // Uniform: about half of them leave in the first half of the range.
  const auto early = std::count_if(leaves.begin(), leaves.end(), [](time_point at) { return at < t0 + 10s; });
  CHECK(early > 800);
  CHECK(early < 1200);
}

TEST_CASE("max_age asks a connection to leave at its age and resets it after the grace") {
  const max_age limit{.age = 10s, .grace = 5s, .jitter = 0.0};
  max_age::state s;
  limit.on_open(s, t0);
  CHECK(s.leave_at == t0 + 10s);
  CHECK(limit.next_deadline(s, seen) == t0 + 10s);
  CHECK(s.remaining_age(t0 + 4s) == 6s);
  CHECK_FALSE(s.draining());
  CHECK(limit.on_deadline(s, seen, t0 + 9s).what() == action::none);

  const auto leave = limit.on_deadline(s, seen, t0 + 10s + 20ms);
  CHECK(leave.what() == action::goaway);
  CHECK(leave.kind() == tether::frame_kind::goaway);
  CHECK(leave.reason() == tether::close_reason::max_age);
  CHECK(s.draining());
  CHECK(s.drain_deadline == t0 + 15s + 20ms);
  CHECK(s.remaining_age(t0 + 11s) == 0ms);
  CHECK(limit.next_deadline(s, seen) == s.drain_deadline);

  CHECK(limit.on_deadline(s, seen, t0 + 12s).what() == action::none);
  const auto reset = limit.on_deadline(s, seen, t0 + 15s + 20ms);
  CHECK(reset.what() == action::close);
  CHECK(reset.reason() == tether::close_reason::max_age);
}

TEST_CASE("max_age of zero is off, and numbers that cannot work are refused naming the field") {
  const max_age off{};
  max_age::state s;
  off.on_open(s, t0);
  CHECK(off.next_deadline(s, seen) == time_point::max());
  CHECK(s.remaining_age(t0) == std::chrono::milliseconds::max());
  CHECK_FALSE(off.validate());

  CHECK(max_age{.age = -1s}.validate() == tether::error::max_age_negative);
  CHECK(max_age{.age = 1s, .grace = -1s}.validate() == tether::error::max_age_grace_negative);
  CHECK(max_age{.age = 1s, .jitter = 0.6}.validate() == tether::error::max_age_jitter_out_of_range);
  CHECK(max_age{.age = 1s, .jitter = -0.1}.validate() == tether::error::max_age_jitter_out_of_range);
  CHECK(std::string{tether::make_error_code(tether::error::max_age_jitter_out_of_range).message()}.find("max_age.jitter") !=
        std::string::npos);
}

#include "catch.hpp"

#include <tether/backoff.hpp>
#include <tether/reconnect_hint.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <stdexcept>
#include <vector>

using namespace std::chrono_literals;
using tether::backoff;
using tether::backoff_schedule;

namespace {

using seeded_schedule = backoff_schedule<std::mt19937_64>;

constexpr std::uint64_t seed = 20240611;

std::vector<std::chrono::milliseconds> draw(seeded_schedule& schedule, std::size_t count) {
  std::vector<std::chrono::milliseconds> delays;
  for (std::size_t i = 0; i < count; ++i)
    delays.push_back(schedule.next_delay());
  return delays;
}


} // namespace

TEST_CASE("backoff ceilings grow by the multiplier and stop at the maximum") {
  const backoff policy{.initial = 100ms, .maximum = 1000ms, .multiplier = 2.0};
  CHECK(policy.ceiling(0) == 100ms);
  CHECK(policy.ceiling(1) == 200ms);
  CHECK(policy.ceiling(2) == 400ms);
  CHECK(policy.ceiling(3) == 800ms);
  CHECK(policy.ceiling(4) == 1000ms);
  CHECK(policy.ceiling(5) == 1000ms);

  SECTION("a growth far past the cap does not overflow") {
    CHECK(policy.ceiling(10'000) == 1000ms);
    const backoff defaults{};
    CHECK(defaults.ceiling(0) == 1000ms);
    CHECK(defaults.ceiling(1'000'000) == 30s);
  }
  SECTION("a fractional multiplier grows by its exact products") {
    const backoff gentle{.initial = 100ms, .maximum = 1000ms, .multiplier = 1.5};
    CHECK(gentle.ceiling(1) == 150ms);
    CHECK(gentle.ceiling(2) == 225ms);
    CHECK(gentle.ceiling(6) == 1000ms);
  }
  SECTION("a multiplier of one keeps the delay constant") {
    const backoff constant{.initial = 250ms, .maximum = 1000ms, .multiplier = 1.0};
    for (std::size_t retry = 0; retry < 20; ++retry)
      CHECK(constant.ceiling(retry) == 250ms);
  }
  SECTION("a schedule walks the same ceilings as it hands out delays") {
    seeded_schedule schedule{policy, std::mt19937_64{seed}};
    const std::vector<std::chrono::milliseconds> expected{100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms};
    for (std::size_t retry = 0; retry < expected.size(); ++retry) {
      CHECK(schedule.retries() == retry);
      CHECK(schedule.next_ceiling() == expected[retry]);
      schedule.next_delay();
    }
  }
}

TEST_CASE("every jittered delay lies between zero and its ceiling") {
  const backoff policy{.initial = 10ms, .maximum = 5000ms, .multiplier = 3.0};
  seeded_schedule schedule{policy, std::mt19937_64{seed}};
  for (int round = 0; round < 200; ++round) {
    for (std::size_t retry = 0; retry < 12; ++retry) {
      const auto ceiling = schedule.next_ceiling();
      REQUIRE(ceiling == policy.ceiling(retry));
      const auto delay = schedule.next_delay();
      REQUIRE(delay >= 0ms);
      REQUIRE(delay <= ceiling);
    }
    schedule.reset();
  }
}

TEST_CASE("jitter spreads delays across the whole interval") {
  const backoff constant{.initial = 1000ms, .maximum = 1000ms, .multiplier = 1.0};
  seeded_schedule schedule{constant, std::mt19937_64{seed}};
  const auto delays = draw(schedule, 4000);

  const auto [lowest, highest] = std::minmax_element(delays.begin(), delays.end());
  CHECK(*lowest != *highest);
  CHECK(*lowest < 50ms);
  CHECK(*highest > 950ms);

  std::chrono::milliseconds::rep total = 0;
  for (const auto delay : delays)
    total += delay.count();
  const double mean = static_cast<double>(total) / static_cast<double>(delays.size());
  // Uniform on [0, 1000]: mean 500, standard error about 4.6 for 4000 samples.
  CHECK(mean > 450.0);
  CHECK(mean < 550.0);

  const auto below_half = std::count_if(delays.begin(), delays.end(), [](auto delay) { return delay < 500ms; });
  CHECK(below_half > 1800);
  CHECK(below_half < 2200);
}

TEST_CASE("a seeded schedule repeats its delays and differently seeded ones differ") {
  const backoff policy{.initial = 100ms, .maximum = 10s, .multiplier = 2.0};
  seeded_schedule first{policy, std::mt19937_64{seed}};
  seeded_schedule again{policy, std::mt19937_64{seed}};
  seeded_schedule other{policy, std::mt19937_64{seed + 1}};
  const auto reference = draw(first, 32);
  CHECK(draw(again, 32) == reference);
  CHECK(draw(other, 32) != reference);
}

TEST_CASE("reset after a success starts again at the initial ceiling") {
  const backoff policy{.initial = 50ms, .maximum = 800ms, .multiplier = 2.0};
  seeded_schedule schedule{policy, std::mt19937_64{seed}};
  draw(schedule, 5);
  CHECK(schedule.retries() == 5);
  CHECK(schedule.next_ceiling() == 800ms);

  schedule.reset();
  CHECK(schedule.retries() == 0);
  CHECK(schedule.next_ceiling() == 50ms);
  CHECK(schedule.next_delay() <= 50ms);
  CHECK(schedule.next_ceiling() == 100ms);
}

TEST_CASE("a schedule seeded from the system draws within its ceiling") {
  backoff_schedule<> schedule{backoff{.initial = 20ms, .maximum = 40ms}};
  CHECK(schedule.next_delay() <= 20ms);
  CHECK(schedule.next_delay() <= 40ms);
  CHECK(schedule.next_delay() <= 40ms);
}

TEST_CASE("a policy that would never slow down is refused, naming the field") {
  CHECK_FALSE(backoff{}.validate());
  CHECK(backoff{.initial = 0ms}.validate() == tether::error::backoff_initial_not_positive);
  CHECK(backoff{.initial = -5ms}.validate() == tether::error::backoff_initial_not_positive);
  CHECK(backoff{.initial = 100ms, .maximum = 50ms}.validate() == tether::error::backoff_maximum_below_initial);
  CHECK(backoff{.multiplier = 0.5}.validate() == tether::error::backoff_multiplier_below_one);
  CHECK(backoff{.multiplier = std::numeric_limits<double>::quiet_NaN()}.validate() ==
        tether::error::backoff_multiplier_below_one);
  CHECK(backoff{.multiplier = 0.5}.validate().message() == "backoff.multiplier must be at least 1.0");
}

// Jitter drawn before the cap would leave every client that reached the cap waiting exactly `maximum`, in step.
TEST_CASE("delays at the cap stay spread over the whole capped interval, and so does the first retry") {
  const backoff policy{.initial = 100ms, .maximum = 400ms, .multiplier = 2.0};
  std::vector<std::chrono::milliseconds> first;
  std::vector<std::chrono::milliseconds> capped;
  for (std::uint64_t client = 0; client < 2000; ++client) {
    seeded_schedule schedule{policy, std::mt19937_64{seed + client}};
    first.push_back(schedule.next_delay());
    draw(schedule, 9);
    capped.push_back(schedule.next_delay());
  }
  const auto spread = [](const std::vector<std::chrono::milliseconds>& delays, std::chrono::milliseconds ceiling) {
    const auto [lowest, highest] = std::minmax_element(delays.begin(), delays.end());
    CHECK(*lowest < ceiling / 10);
    CHECK(*highest > ceiling * 9 / 10);
    CHECK(*highest <= ceiling);
    // Uniform over ceiling + 1 whole milliseconds: about 1 % land on the ceiling itself.
    const auto at_ceiling = std::count(delays.begin(), delays.end(), ceiling);
    CHECK(at_ceiling < static_cast<std::ptrdiff_t>(delays.size() / 20));
  };
  spread(first, 100ms);
  spread(capped, 400ms);
}

TEST_CASE("a window drawn from for a reconnect hint is uniform between its bounds") {
  seeded_schedule schedule{backoff{}, std::mt19937_64{seed}};
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < 2000; ++i)
    delays.push_back(schedule.draw_within(200ms, 300ms));
  const auto [lowest, highest] = std::minmax_element(delays.begin(), delays.end());
  CHECK(*lowest >= 200ms);
  CHECK(*lowest < 210ms);
  CHECK(*highest <= 300ms);
  CHECK(*highest > 290ms);
  CHECK(schedule.retries() == 0);
  CHECK(schedule.draw_within(5ms, 5ms) == 5ms);
}

TEST_CASE("a reconnect hint goes out as a goaway payload token and is read back from one") {
  using tether::goaway_payload;
  using tether::parse_reconnect_hint;
  using tether::reconnect_hint;
  CHECK(goaway_payload({.earliest = 0ms, .latest = 5s}) == "reconnect-after=0-5000");
  CHECK(goaway_payload({.earliest = -3ms, .latest = -9ms}) == "reconnect-after=0-0");
  CHECK(goaway_payload({.earliest = 700ms, .latest = 200ms}) == "reconnect-after=700-700");

  CHECK(parse_reconnect_hint("reconnect-after=0-5000") == reconnect_hint{0ms, 5000ms});
  CHECK(parse_reconnect_hint("deploy=v42 reconnect-after=250-1000 region=eu") == reconnect_hint{250ms, 1000ms});
  CHECK(parse_reconnect_hint(goaway_payload({.earliest = 1s, .latest = 2s})) == reconnect_hint{1s, 2s});
  for (const char* malformed : {"", "bye", "reconnect-after=", "reconnect-after=5", "reconnect-after=5-",
                                "reconnect-after=-5-10", "reconnect-after=9-3", "reconnect-after=1-2x",
                                "reconnect-after=99999999999-99999999999", "reconnect-after=1 -2"}) {
    INFO(malformed);
    CHECK_FALSE(parse_reconnect_hint(malformed).has_value());
  }
}

#include "catch.hpp"
#include "time_budget.hpp"

#include <tether/suspended_time.hpp>

#include <time.h>

#include <chrono>

using namespace std::chrono_literals;
using tether::test::scaled;

TEST_CASE("time_suspended is the boot clock's lead over the monotonic clock, never negative or falling") {
  timespec boot{};
  timespec monotonic{};
  REQUIRE(::clock_gettime(CLOCK_BOOTTIME, &boot) == 0);
  REQUIRE(::clock_gettime(CLOCK_MONOTONIC, &monotonic) == 0);
  const auto lead = (std::chrono::seconds{boot.tv_sec} + std::chrono::nanoseconds{boot.tv_nsec}) -
                    (std::chrono::seconds{monotonic.tv_sec} + std::chrono::nanoseconds{monotonic.tv_nsec});
  // A read preempted between its two clocks is off by the preemption; the slack allows for a loaded machine.
  const auto slack = std::chrono::nanoseconds{scaled(50ms)};
  const auto first = tether::time_suspended();
  CHECK(first >= 0ns);
  CHECK(first - lead < slack);
  CHECK(lead - first < slack);
  // Between two reads nothing was suspended: the value holds, to the reads' own spacing.
  const auto second = tether::time_suspended();
  CHECK(second - first < slack);
  CHECK(first - second < slack);
}

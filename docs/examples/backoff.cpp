// tether::backoff and tether::backoff_schedule: reconnect delays that grow exponentially up to a cap, each drawn
// uniformly from [0, ceiling] ("full jitter") so clients that lost the same server do not return together.
#include <tether/backoff.hpp>

#include <fmt/core.h>

#include <random>
#include <string_view>

using namespace std::chrono_literals;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}
} // namespace

int main() {
  const tether::backoff policy{.initial = 100ms, .maximum = 2s, .multiplier = 2.0};
  check(!policy.validate(), "valid policy");
  check(policy.ceiling(0) == 100ms && policy.ceiling(3) == 800ms && policy.ceiling(10) == 2s, "ceilings");

  // A seeded engine repeats its draws (tests); the default constructor seeds from std::random_device.
  tether::backoff_schedule<std::mt19937> schedule{policy, std::mt19937{7}};
  for (int retry = 0; retry < 7; ++retry) {
    const auto ceiling = schedule.next_ceiling();
    const auto delay = schedule.next_delay();
    fmt::print("retry {}: wait {:>4} ms of at most {:>4} ms\n", retry, delay.count(), ceiling.count());
    check(delay >= 0ms && delay <= ceiling, "within the ceiling");
  }
  check(schedule.retries() == 7, "retries counted");
  schedule.reset();  // after a success
  check(schedule.next_ceiling() == 100ms, "back to the first ceiling");

  tether::backoff_schedule<> seeded_from_system{policy};
  check(seeded_from_system.next_delay() <= 100ms, "system-seeded schedule");

  // A policy that would never slow down is refused by validate(), which the connector asks before it starts.
  const std::error_code refused = tether::backoff{.initial = 0ms}.validate();
  fmt::print("refused: {}\n", refused.message());
  check(refused == tether::error::backoff_initial_not_positive, "a policy that never slows down is refused");
  return failures == 0 ? 0 : 1;
}

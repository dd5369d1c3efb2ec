// Delays between reconnect attempts: exponential growth with full jitter.
//
// Retry n (counting from 0 after the last success) waits a uniformly random time in [0, ceiling(n)], where
// ceiling(n) = min(maximum, initial * multiplier^n). Randomising the whole interval ("full jitter", from the
// AWS Architecture Blog's "Exponential Backoff And Jitter") spreads out clients that lost the same server at
// the same moment, so they do not return in synchronised waves; the growing ceiling keeps a client that keeps
// failing from hammering the server.
//
//   tether::backoff_schedule<> schedule{{.initial = 100ms, .maximum = 30s}};
//   auto wait = schedule.next_delay();  // somewhere in [0, 100ms], then [0, 200ms], [0, 400ms], ...
//   schedule.reset();                   // connected: the next failure starts again at [0, 100ms]
#pragma once

#include <tether/detail/config.hpp>
#include <tether/error.hpp>

#include <cassert>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <random>
#include <system_error>
#include <utility>

namespace tether {

struct backoff {
  // A first wave of N clients arrives spread over `initial`: at 1 s (gRPC's choice), 10,000 clients that lost
  // their server together come back at about 1,000 per 100 ms rather than all within one.
  std::chrono::milliseconds initial{1000};
  std::chrono::milliseconds maximum{30'000};
  double multiplier = 2.0;

  // The longest wait before retry `retry` (0 for the first after a success). Deterministic: the jitter is
  // drawn below this.
  std::chrono::milliseconds ceiling(std::size_t retry) const noexcept {
    // Growth overflows to infinity rather than wrapping, and the cap absorbs it.
    const double grown = static_cast<double>(initial.count()) * std::pow(multiplier, static_cast<double>(retry));
    const double cap = static_cast<double>(maximum.count());
    return std::chrono::milliseconds{std::llround(grown < cap ? grown : cap)};
  }

  // A zero initial delay or a shrinking multiplier would retry a failing server without ever slowing down.
  std::error_code validate() const noexcept {
    if (initial.count() <= 0)
      return error::backoff_initial_not_positive;
    if (maximum < initial)
      return error::backoff_maximum_below_initial;
    if (!(multiplier >= 1.0))
      return error::backoff_multiplier_below_one;
    return {};
  }

  bool operator==(const backoff&) const = default;
};

// Hands out the jittered delays of one client. Engine is any standard random engine; tests pass a seeded one
// to get a repeatable sequence, everyone else gets one seeded from std::random_device so that clients started
// together still draw different delays.
template <std::uniform_random_bit_generator Engine = std::minstd_rand>
class backoff_schedule {
public:
  // Expects a policy that validate() accepts (connector::start checks it first).
  explicit backoff_schedule(backoff policy)
    requires std::constructible_from<Engine, std::random_device::result_type>
      : backoff_schedule(policy, Engine{std::random_device{}()}) {}

  backoff_schedule(backoff policy, Engine engine) : policy_(policy), engine_(std::move(engine)) {
    assert(!policy_.validate());
  }

  // The wait before the next retry, uniform in [0, next_ceiling()]; advances to the following retry.
  std::chrono::milliseconds next_delay() {
    const auto ceiling = next_ceiling();
    ++retries_;
    std::uniform_int_distribution<std::chrono::milliseconds::rep> jitter{0, ceiling.count()};
    return std::chrono::milliseconds{jitter(engine_)};
  }

  std::chrono::milliseconds next_ceiling() const noexcept { return policy_.ceiling(retries_); }

  // A delay uniform in [earliest, latest] from the same engine, for a wait the server asked for (a goaway's
  // reconnect hint); it leaves the retry count alone.
  std::chrono::milliseconds draw_within(std::chrono::milliseconds earliest, std::chrono::milliseconds latest) {
    assert(earliest <= latest);
    std::uniform_int_distribution<std::chrono::milliseconds::rep> jitter{earliest.count(), latest.count()};
    return std::chrono::milliseconds{jitter(engine_)};
  }

  // Delays handed out since construction or the last reset().
  std::size_t retries() const noexcept { return retries_; }

  // After a success: the next failure is treated as the first.
  void reset() noexcept { retries_ = 0; }

  const backoff& policy() const noexcept { return policy_; }

private:
  backoff policy_;
  Engine engine_;
  std::size_t retries_ = 0;
};

} // namespace tether

#include "catch.hpp"

#include "time_budget.hpp"

#include <tether/timer_wheel.hpp>

#include <asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using time_point = steady::time_point;
using tether::wheel_node;
using tether::detail::hashed_wheel;

constexpr std::chrono::milliseconds tick{10};
constexpr std::size_t slot_count = 64;
constexpr std::chrono::milliseconds rotation{640};  // tick * slot_count
constexpr time_point start = time_point{} + std::chrono::hours{1};

// The wheel under a clock the test moves by hand.
struct manual_wheel {
  hashed_wheel wheel{tick, slot_count, start};
  time_point now = start;

  std::size_t advance_to(time_point when) {
    now = when;
    return wheel.advance(when);
  }
};

// Records each firing by the manual clock and then runs the test's reaction, if any.
struct probe : wheel_node {
  explicit probe(const time_point* clock_now = nullptr) : wheel_node(&on_expiry), clock_now(clock_now) {}

  const time_point* clock_now;
  int fire_count = 0;
  time_point fired_at{};
  bool scheduled_while_firing = false;
  std::function<void(probe&)> reaction;

  static void on_expiry(wheel_node& node) noexcept {
    auto& self = static_cast<probe&>(node);
    ++self.fire_count;
    self.fired_at = *self.clock_now;
    self.scheduled_while_firing = self.scheduled();
    if (self.reaction)
      self.reaction(self);
  }
};

std::unique_ptr<probe[]> make_probes(std::size_t count, const manual_wheel& clock) {
  auto probes = std::make_unique<probe[]>(count);
  for (std::size_t i = 0; i < count; ++i)
    probes[i].clock_now = &clock.now;
  return probes;
}

time_point first_boundary_at_or_after(time_point deadline) {
  auto ticks = (deadline - start) / tick;
  if (start + ticks * tick < deadline)
    ++ticks;
  return start + ticks * tick;
}

time_point random_deadline(std::mt19937_64& random, std::chrono::nanoseconds span) {
  std::uniform_int_distribution<std::int64_t> offset{0, span.count()};
  return start + std::chrono::nanoseconds{offset(random)};
}

} // namespace

TEST_CASE("a deadline fires at the first tick boundary at or after it") {
  manual_wheel clock;
  std::mt19937_64 random{20240611};
  constexpr std::size_t count = 10'000;
  constexpr auto span = rotation * 5;  // most deadlines are several rotations away
  auto probes = make_probes(count, clock);
  for (std::size_t i = 0; i < count; ++i) {
    const auto deadline = random_deadline(random, span);
    // Every tenth deadline sits exactly on a boundary, which must fire at that boundary, not the next.
    clock.wheel.schedule(probes[i], i % 10 == 0 ? first_boundary_at_or_after(deadline) : deadline);
  }
  REQUIRE(clock.wheel.size() == count);

  std::size_t fired = 0;
  for (auto now = start; now <= start + span + tick; now += tick)
    fired += clock.advance_to(now);
  REQUIRE(fired == count);
  REQUIRE(clock.wheel.size() == 0);

  std::size_t not_once = 0, early = 0, late_by_a_tick = 0, off_boundary = 0, still_scheduled = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const probe& node = probes[i];
    not_once += node.fire_count != 1;
    early += node.fired_at < node.deadline();
    late_by_a_tick += node.fired_at - node.deadline() >= tick;
    off_boundary += node.fired_at != first_boundary_at_or_after(node.deadline());
    still_scheduled += node.scheduled_while_firing;
  }
  CHECK(not_once == 0);
  CHECK(early == 0);
  CHECK(late_by_a_tick == 0);
  CHECK(off_boundary == 0);
  CHECK(still_scheduled == 0);
}

TEST_CASE("advancing at irregular times fires each node at the first advance past its boundary") {
  manual_wheel clock;
  std::mt19937_64 random{7};
  constexpr std::size_t count = 5'000;
  constexpr auto span = rotation * 3;
  auto probes = make_probes(count, clock);
  for (std::size_t i = 0; i < count; ++i)
    clock.wheel.schedule(probes[i], random_deadline(random, span));

  // Steps both shorter and longer than a tick, so some advances cross no boundary and some cross two.
  std::uniform_int_distribution<std::int64_t> step_ns{1, std::chrono::nanoseconds{tick * 5 / 2}.count()};
  std::vector<time_point> advances;
  while (clock.now <= start + span + tick) {
    advances.push_back(clock.now + std::chrono::nanoseconds{step_ns(random)});
    clock.advance_to(advances.back());
  }
  REQUIRE(clock.wheel.size() == 0);

  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const probe& node = probes[i];
    const auto boundary = first_boundary_at_or_after(node.deadline());
    const auto expected = *std::lower_bound(advances.begin(), advances.end(), boundary);
    mismatches += node.fire_count != 1 || node.fired_at != expected || node.fired_at < node.deadline();
  }
  CHECK(mismatches == 0);
}

TEST_CASE("a cancelled node does not fire") {
  manual_wheel clock;
  probe cancelled{&clock.now}, kept{&clock.now}, never_scheduled{&clock.now};
  clock.wheel.schedule(cancelled, start + 30ms);
  clock.wheel.schedule(kept, start + 30ms);
  clock.wheel.cancel(cancelled);
  REQUIRE_FALSE(cancelled.scheduled());
  REQUIRE(clock.wheel.size() == 1);

  clock.wheel.cancel(cancelled);
  clock.wheel.cancel(never_scheduled);
  REQUIRE(clock.wheel.size() == 1);

  REQUIRE(clock.advance_to(start + rotation * 2) == 1);
  CHECK(kept.fire_count == 1);
  CHECK(cancelled.fire_count == 0);
  CHECK(never_scheduled.fire_count == 0);
}

TEST_CASE("scheduling a scheduled node moves it") {
  manual_wheel clock;
  probe node{&clock.now};

  SECTION("later") {
    clock.wheel.schedule(node, start + 30ms);
    clock.wheel.schedule(node, start + 80ms);
    REQUIRE(clock.wheel.size() == 1);
    REQUIRE(node.deadline() == start + 80ms);
    for (auto now = start; now < start + 80ms; now += tick)
      REQUIRE(clock.advance_to(now) == 0);
    REQUIRE(clock.advance_to(start + 80ms) == 1);
  }
  SECTION("earlier") {
    clock.wheel.schedule(node, start + 80ms);
    clock.wheel.schedule(node, start + 20ms);
    REQUIRE(clock.wheel.size() == 1);
    REQUIRE(clock.advance_to(start + 10ms) == 0);
    REQUIRE(clock.advance_to(start + 20ms) == 1);
    REQUIRE(clock.advance_to(start + rotation * 2) == 0);
  }
  CHECK(node.fire_count == 1);
  CHECK(clock.wheel.size() == 0);
}

TEST_CASE("a deadline several rotations away waits out the earlier passes over its slot") {
  manual_wheel clock;
  probe node{&clock.now};
  const auto deadline = start + rotation * 3 + 25ms;
  clock.wheel.schedule(node, deadline);

  for (auto now = start; now < start + rotation * 3 + 30ms; now += tick) {
    clock.advance_to(now);
    REQUIRE(node.fire_count == 0);
    REQUIRE(clock.wheel.next_tick() == now + tick);
  }
  REQUIRE(clock.advance_to(start + rotation * 3 + 30ms) == 1);
  CHECK(node.fired_at == start + rotation * 3 + 30ms);
}

TEST_CASE("a passed deadline fires at the next tick") {
  manual_wheel clock;
  probe node{&clock.now};

  SECTION("on a fresh wheel, at its start") {
    clock.wheel.schedule(node, start - std::chrono::hours{1});
    REQUIRE(clock.advance_to(start) == 1);
  }
  SECTION("on a running wheel, at the boundary after the last one reached") {
    clock.advance_to(start + 100ms);
    clock.wheel.schedule(node, start + 40ms);
    REQUIRE(clock.wheel.next_tick() == start + 110ms);
    REQUIRE(clock.advance_to(start + 105ms) == 0);
    REQUIRE(clock.advance_to(start + 110ms) == 1);
  }
  CHECK(node.fire_count == 1);
}

TEST_CASE("a handler re-files its node for the remainder of a lazily tracked timeout") {
  // How connections use the wheel: activity only stores a timestamp; the node fires at the old deadline and
  // the handler either schedules the remainder or acts.
  manual_wheel clock;
  constexpr auto idle_timeout = 200ms;
  time_point last_activity = start;
  std::optional<time_point> reaped_at;
  probe connection{&clock.now};
  connection.reaction = [&](probe& self) {
    const auto idle_deadline = last_activity + idle_timeout;
    if (idle_deadline > clock.now)
      clock.wheel.schedule(self, idle_deadline);
    else
      reaped_at = clock.now;
  };
  clock.wheel.schedule(connection, last_activity + idle_timeout);

  for (auto now = start; now <= start + 1s; now += tick) {
    clock.advance_to(now);
    if (now == start + 150ms || now == start + 330ms)
      last_activity = now;
  }
  REQUIRE(reaped_at);
  CHECK(*reaped_at == start + 530ms);
  CHECK(connection.fire_count == 3);  // at 200 ms, at 350 ms, and at 530 ms when it is really idle
  CHECK(!connection.scheduled_while_firing);
  CHECK(clock.wheel.size() == 0);
}

TEST_CASE("a handler scheduling its own node into the past fires once per tick, not in a loop") {
  manual_wheel clock;
  probe node{&clock.now};
  node.reaction = [&](probe& self) {
    if (self.fire_count < 3)
      clock.wheel.schedule(self, clock.now - 1s);
  };
  clock.wheel.schedule(node, start + 20ms);
  REQUIRE(clock.advance_to(start + 20ms) == 1);
  REQUIRE(clock.advance_to(start + 30ms) == 1);
  REQUIRE(clock.advance_to(start + 40ms) == 1);
  REQUIRE(clock.advance_to(start + 50ms) == 0);
  CHECK(node.fire_count == 3);
}

TEST_CASE("handlers may cancel, move or destroy nodes of the slot being walked") {
  manual_wheel clock;
  const auto deadline = start + 50ms;
  probe first{&clock.now}, second{&clock.now};

  SECTION("two nodes each cancelling the other: exactly one fires") {
    first.reaction = [&](probe&) { clock.wheel.cancel(second); };
    second.reaction = [&](probe&) { clock.wheel.cancel(first); };
    clock.wheel.schedule(first, deadline);
    clock.wheel.schedule(second, deadline);
    REQUIRE(clock.advance_to(deadline) == 1);
    CHECK(first.fire_count + second.fire_count == 1);
    CHECK(clock.wheel.size() == 0);
  }
  SECTION("cancelling a waiting node and destroying its owner") {
    auto victim = std::make_unique<probe>(&clock.now);
    probe bystander{&clock.now};
    first.reaction = [&](probe&) {
      clock.wheel.cancel(*victim);
      victim.reset();
    };
    clock.wheel.schedule(first, deadline);
    clock.wheel.schedule(*victim, deadline);
    clock.wheel.schedule(bystander, deadline);
    REQUIRE(clock.advance_to(deadline) == 2);
    CHECK(victim == nullptr);
    CHECK(bystander.fire_count == 1);
    CHECK(clock.wheel.size() == 0);
  }
  SECTION("moving a waiting node of the same slot further out") {
    first.reaction = [&](probe&) { clock.wheel.schedule(second, clock.now + 2 * tick); };
    clock.wheel.schedule(first, deadline);
    clock.wheel.schedule(second, deadline);
    REQUIRE(clock.advance_to(deadline) == 1);
    CHECK(second.fire_count == 0);
    REQUIRE(clock.advance_to(deadline + tick) == 0);
    REQUIRE(clock.advance_to(deadline + 2 * tick) == 1);
    CHECK(second.fired_at == deadline + 2 * tick);
  }
  SECTION("re-filing an already fired node into the same slot one rotation later") {
    first.reaction = [&](probe&) { clock.wheel.schedule(second, clock.now + rotation); };
    clock.wheel.schedule(second, deadline);
    clock.wheel.schedule(first, deadline);
    REQUIRE(clock.advance_to(deadline) == 2);
    REQUIRE(second.fire_count == 1);
    REQUIRE(clock.advance_to(deadline + rotation - tick) == 0);
    REQUIRE(clock.advance_to(deadline + rotation) == 1);
    CHECK(second.fire_count == 2);
  }
  SECTION("scheduling a due node into the slot being walked defers it to the next tick") {
    first.reaction = [&](probe&) { clock.wheel.schedule(second, clock.now); };
    clock.wheel.schedule(first, deadline);
    REQUIRE(clock.advance_to(deadline) == 1);
    CHECK(second.fire_count == 0);
    REQUIRE(clock.advance_to(deadline + tick) == 1);
    CHECK(second.fire_count == 1);
  }
}

TEST_CASE("one advance after a long stall fires everything due") {
  manual_wheel clock;
  std::mt19937_64 random{99};
  constexpr std::size_t count = 1'000;
  auto probes = make_probes(count, clock);
  for (std::size_t i = 0; i < count; ++i)
    clock.wheel.schedule(probes[i], random_deadline(random, rotation * 10));
  probe far_away{&clock.now};
  const auto far_deadline = start + std::chrono::hours{1000};
  clock.wheel.schedule(far_away, far_deadline);

  const auto after_stall = start + rotation * 20 + 3ms;
  REQUIRE(clock.advance_to(after_stall) == count);
  std::size_t not_once = 0;
  for (std::size_t i = 0; i < count; ++i)
    not_once += probes[i].fire_count != 1;
  CHECK(not_once == 0);
  CHECK(far_away.scheduled());
  CHECK(clock.wheel.size() == 1);
  CHECK(clock.wheel.next_tick() == start + rotation * 20 + tick);

  REQUIRE(clock.advance_to(far_deadline - 1ms) == 0);
  REQUIRE(clock.advance_to(far_deadline) == 1);
}

TEST_CASE("size() counts scheduled nodes") {
  manual_wheel clock;
  probe a{&clock.now}, b{&clock.now}, c{&clock.now};
  CHECK(clock.wheel.size() == 0);
  clock.wheel.schedule(a, start + 20ms);
  clock.wheel.schedule(b, start + 20ms);
  clock.wheel.schedule(c, start + rotation * 2);
  CHECK(clock.wheel.size() == 3);
  clock.wheel.schedule(a, start + 30ms);
  CHECK(clock.wheel.size() == 3);
  clock.wheel.cancel(c);
  clock.wheel.cancel(c);
  CHECK(clock.wheel.size() == 2);
  clock.advance_to(start + 20ms);
  CHECK(clock.wheel.size() == 1);
  a.reaction = [&](probe& self) { clock.wheel.schedule(self, clock.now + tick); };
  clock.advance_to(start + 30ms);
  CHECK(clock.wheel.size() == 1);
  clock.wheel.cancel(a);
  CHECK(clock.wheel.size() == 0);
}

TEST_CASE("100k nodes schedule, cancel and fire") {
  manual_wheel clock;
  std::mt19937_64 random{100'000};
  constexpr std::size_t count = 100'000;
  auto probes = make_probes(count, clock);
  for (std::size_t i = 0; i < count; ++i)
    clock.wheel.schedule(probes[i], random_deadline(random, rotation * 3));
  REQUIRE(clock.wheel.size() == count);

  std::size_t cancelled = 0;
  for (std::size_t i = 0; i < count; i += 3, ++cancelled)
    clock.wheel.cancel(probes[i]);
  REQUIRE(clock.wheel.size() == count - cancelled);

  std::size_t fired = 0;
  for (auto now = start; now <= start + rotation * 3 + tick; now += tick)
    fired += clock.advance_to(now);
  CHECK(fired == count - cancelled);
  CHECK(clock.wheel.size() == 0);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < count; ++i)
    wrong += probes[i].fire_count != (i % 3 == 0 ? 0 : 1);
  CHECK(wrong == 0);
}

TEST_CASE("schedule and cancel are O(1) and advance is bounded by the slot count") {
  // All per-timer state lives in the node, and the operations cannot allocate (they are noexcept), so they
  // are pointer moves whatever the wheel holds.
  static_assert(sizeof(wheel_node) == 2 * sizeof(void*) + sizeof(time_point) + sizeof(wheel_node::expiry_handler));
  static_assert(
      noexcept(std::declval<hashed_wheel&>().schedule(std::declval<wheel_node&>(), std::declval<time_point>())));
  static_assert(noexcept(std::declval<hashed_wheel&>().cancel(std::declval<wheel_node&>())));

  manual_wheel clock;
  constexpr std::size_t count = 100'000;
  auto probes = make_probes(count, clock);
  // One slot holding every node: unlinking from the middle of a long list must not disturb the rest.
  for (std::size_t i = 0; i < count; ++i)
    clock.wheel.schedule(probes[i], start + 20ms);
  for (std::size_t i = 1; i < count; i += 2)
    clock.wheel.cancel(probes[i]);
  REQUIRE(clock.advance_to(start + 20ms) == count / 2);

  // Two centuries of ticks (6e11) in one advance, with a node still waiting beyond them so the walk cannot stop
  // early for lack of nodes: a tick-by-tick catch-up would never finish this test.
  const auto two_centuries = std::chrono::hours{24 * 365 * 200};
  probe due{&clock.now}, beyond{&clock.now};
  clock.wheel.schedule(due, start + 1s);
  clock.wheel.schedule(beyond, start + two_centuries + 1h);
  REQUIRE(clock.advance_to(start + two_centuries) == 1);
  CHECK(due.fire_count == 1);
  CHECK(beyond.scheduled());
  CHECK(clock.wheel.next_tick() == start + two_centuries + tick);
  clock.wheel.cancel(beyond);
}

TEST_CASE("timer_wheel_options refuse a tick that is not positive and an empty slot ring, naming the field") {
  CHECK(tether::timer_wheel_options{.tick = 0ms}.validate() == tether::error::wheel_tick_not_positive);
  CHECK(tether::timer_wheel_options{.tick = -1ms}.validate() == tether::error::wheel_tick_not_positive);
  CHECK(tether::timer_wheel_options{.slots = 0}.validate() == tether::error::wheel_slots_zero);
  CHECK(tether::timer_wheel_options{.slots = 0}.validate().message() == "timer_wheel_options.slots must be at least 1");
  CHECK_FALSE(tether::timer_wheel_options{.tick = 1ms, .slots = 1}.validate());
}

TEST_CASE("destroying a hashed_wheel releases the nodes it holds") {
  probe node;
  {
    hashed_wheel wheel{tick, slot_count, start};
    wheel.schedule(node, start + 1s);
    REQUIRE(node.scheduled());
  }
  CHECK(!node.scheduled());
}

namespace {

// Times its firing by the real clock and looks at the wheel's clock from inside the handler.
struct stopwatch : wheel_node {
  explicit stopwatch(tether::timer_wheel& wheel) : wheel_node(&on_expiry), wheel(wheel) {}

  tether::timer_wheel& wheel;
  std::optional<time_point> fired_at;
  time_point wheel_now_while_firing{};
  bool wheel_now_is_cached = false;

  static void on_expiry(wheel_node& node) noexcept {
    auto& self = static_cast<stopwatch&>(node);
    self.fired_at = steady::now();
    self.wheel_now_while_firing = self.wheel.now();
    self.wheel_now_is_cached = self.wheel.now() == self.wheel.now();
  }
};

struct flag_node : wheel_node {
  flag_node() : wheel_node(&on_expiry) {}
  bool fired = false;
  static void on_expiry(wheel_node& node) noexcept { static_cast<flag_node&>(node).fired = true; }
};

} // namespace

TEST_CASE("timer_wheel fires on a real io_context and stops its timer once empty") {
  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  REQUIRE(wheel.tick() == 10ms);
  stopwatch node{wheel};

  // Generous upper bound: the machine may be busy; the lower bound is exact.
  const auto fires_within_bounds = [&] {
    const auto scheduled_at = steady::now();
    wheel.schedule_after(node, 50ms);
    REQUIRE(wheel.size() == 1);
    const auto deadline = node.deadline();
    CHECK(deadline >= scheduled_at + 50ms);

    // run_for returns before its limit only when the io_context runs out of work: the wheel stopped its timer.
    io.run_for(10s);
    REQUIRE(io.stopped());
    REQUIRE(node.fired_at);
    CHECK(*node.fired_at >= deadline);
    CHECK(tether::test::within_budget("a real wheel fires", *node.fired_at - scheduled_at,
                                      50ms + wheel.tick() + tether::test::scaled(200ms)));
    CHECK(node.wheel_now_while_firing >= deadline);
    CHECK(node.wheel_now_is_cached);
    CHECK(wheel.size() == 0);
  };

  SECTION("once") { fires_within_bounds(); }
  SECTION("again after idling") {
    fires_within_bounds();
    node.fired_at.reset();
    std::this_thread::sleep_for(30ms);
    io.restart();
    fires_within_bounds();
  }
  SECTION("a cancelled node leaves nothing to wait for") {
    wheel.schedule_after(node, 1h);
    wheel.cancel(node);
    io.run_for(10s);
    REQUIRE(io.stopped());
    CHECK(!node.fired_at);
  }
}

TEST_CASE("destroying a timer_wheel with a tick pending is safe") {
  asio::io_context io;
  flag_node node;
  auto wheel = std::make_unique<tether::timer_wheel>(io, tether::timer_wheel_options{.tick = 1ms});
  wheel->schedule_after(node, 0ms);

  SECTION("while the wait is pending") {
    wheel.reset();
    CHECK(!node.scheduled());
  }
  SECTION("after the completion is queued") {
    // io_context polls the reactor before running this handler, so the expired wait's completion is already
    // queued, with success that no cancellation can take back, when the wheel goes.
    std::this_thread::sleep_for(20ms);
    asio::post(io, [&] { wheel.reset(); });
  }
  io.run_for(10s);
  CHECK(io.stopped());
  CHECK(wheel == nullptr);
  CHECK(!node.fired);
}

// The adaptive heartbeat's search without sockets: a simulated path forgets a flow idle for its timeout or
// longer, and the learner is driven by its own probe plans.
#include "catch.hpp"

#include <tether/error.hpp>
#include <tether/idle_interval_learner.hpp>

#include <chrono>
#include <initializer_list>
#include <vector>

using namespace std::chrono_literals;
using tether::adaptive_heartbeat;
using tether::idle_interval_learner;
using tether::interval_change;
using std::chrono::milliseconds;

namespace {
const idle_interval_learner::clock::time_point t0 = idle_interval_learner::clock::time_point{} + 1000h;

struct simulated_path {
  milliseconds timeout;
  bool carries(milliseconds idle) const { return idle < timeout; }
};

// Runs probes as the learner plans them, each taking its idle period, until settled or out of probes.
struct learning_run {
  explicit learning_run(idle_interval_learner start) : learner(start) {}
  idle_interval_learner learner;
  idle_interval_learner::clock::time_point now = t0;
  std::vector<interval_change> changes;

  void probe_once(const simulated_path& path) {
    const auto plan = learner.next_probe(now);
    REQUIRE(plan.start >= now);
    now = plan.start;
    learner.probe_started(now);
    now += plan.idle;
    const auto change = path.carries(plan.idle) ? learner.probe_held(plan.idle, now)
                                                : learner.probe_failed(plan.idle, now);
    if (change)
      changes.push_back(*change);
    // The protected connection is never put past the path, unless the path is stricter than the user's minimum.
    REQUIRE((learner.interval() < path.timeout || learner.interval() == learner.options().min));
  }
  void learn(const simulated_path& path, unsigned budget) {
    while (!learner.settled() && learner.probes() < budget)
      probe_once(path);
  }
};
} // namespace

TEST_CASE("adaptive heartbeat ends within half the path's timeout and below it, in a bounded number of probes") {
  const adaptive_heartbeat options{.min = 1s, .max = 5min, .max_probes_per_hour = 1000};
  for (const milliseconds timeout : std::initializer_list<milliseconds>{1500ms, 2s, 3s, 4s, 7s, 10s, 29s, 59s, 61s, 100s, 349s}) {
    INFO("path timeout " << timeout.count() << " ms");
    learning_run run{idle_interval_learner{options, t0}};
    run.learn(simulated_path{timeout}, 20);
    CHECK(run.learner.settled());
    CHECK(run.learner.probes() <= 14);
    CHECK(run.learner.interval() >= timeout / 2);
    CHECK(run.learner.interval() < timeout);
    CHECK(run.learner.proven() < timeout);
    for (const auto change : run.changes)
      CHECK(change == interval_change::proven_longer);
  }
}

TEST_CASE("adaptive heartbeat stays within its bounds") {
  SECTION("a path more patient than max settles at max") {
    learning_run run{idle_interval_learner{{.min = 1s, .max = 10s, .max_probes_per_hour = 1000}, t0}};
    run.learn(simulated_path{1h}, 20);
    CHECK(run.learner.settled());
    CHECK(run.learner.interval() == 10s);
    CHECK(run.learner.probes() <= 4);
  }
  SECTION("a path stricter than min leaves it at min, settled") {
    learning_run run{idle_interval_learner{{.min = 5s, .max = 60s, .max_probes_per_hour = 1000}, t0}};
    run.learn(simulated_path{3s}, 20);
    CHECK(run.learner.settled());
    CHECK(run.learner.interval() == 5s);
    CHECK(run.learner.probes_failed() == run.learner.probes());
  }
}

TEST_CASE("adaptive heartbeat backs off to min at once when the path gets stricter, then learns again") {
  learning_run run{idle_interval_learner{{.min = 1s, .max = 5min, .reverify_every = 1min,
                                          .max_probes_per_hour = 1000}, t0}};
  run.learn(simulated_path{40s}, 20);
  REQUIRE(run.learner.settled());
  const auto learned = run.learner.interval();
  REQUIRE(learned >= 20s);

  // The first re-verification checks the proven period again, a minute after settling.
  const auto plan = run.learner.next_probe(run.now);
  CHECK(plan.idle == run.learner.proven());
  CHECK(plan.start == run.now + 1min);

  run.changes.clear();
  const simulated_path stricter{10s};
  run.probe_once(stricter);
  REQUIRE(run.changes == std::vector{interval_change::path_stricter});
  CHECK(run.learner.interval() == 1s);
  CHECK_FALSE(run.learner.settled());
  run.learn(stricter, 40);
  CHECK(run.learner.settled());
  CHECK(run.learner.interval() >= 5s);
  CHECK(run.learner.interval() < 10s);
}

TEST_CASE("adaptive heartbeat re-verifies alternately the proof and the failure, and grows on a looser path") {
  learning_run run{idle_interval_learner{{.min = 1s, .max = 5min, .reverify_every = 10min,
                                          .max_probes_per_hour = 1000}, t0}};
  run.learn(simulated_path{8s}, 20);
  REQUIRE(run.learner.settled());
  const auto proven = run.learner.proven();
  const auto failed = run.learner.failed();
  REQUIRE(failed > proven);

  run.probe_once(simulated_path{8s});  // the proof holds again
  CHECK(run.learner.settled());
  const auto second = run.learner.next_probe(run.now);
  CHECK(second.idle == failed);
  CHECK(second.start == run.now + 10min);

  const simulated_path looser{60s};
  run.changes.clear();
  run.probe_once(looser);  // what failed holds now: the search goes on upwards
  CHECK(run.changes == std::vector{interval_change::proven_longer});
  CHECK_FALSE(run.learner.settled());
  run.learn(looser, 40);
  CHECK(run.learner.interval() >= 30s);
  CHECK(run.learner.interval() < 60s);
}

TEST_CASE("adaptive heartbeat losing the protected connection goes back to min") {
  learning_run run{idle_interval_learner{{.min = 2s, .max = 5min, .max_probes_per_hour = 1000}, t0}};
  run.learn(simulated_path{30s}, 20);
  REQUIRE(run.learner.interval() > 2s);
  CHECK(run.learner.connection_lost(run.now) == interval_change::path_stricter);
  CHECK(run.learner.interval() == 2s);
  CHECK(run.learner.connection_lost(run.now) == std::nullopt);  // already at min: nothing changes
}

TEST_CASE("adaptive heartbeat spends no more probes than its hourly budget") {
  learning_run run{idle_interval_learner{{.min = 1s, .max = 5min, .max_probes_per_hour = 4}, t0}};
  std::vector<idle_interval_learner::clock::time_point> starts;
  for (int i = 0; i < 8; ++i) {
    const auto plan = run.learner.next_probe(run.now);
    starts.push_back(plan.start);
    run.now = plan.start;
    run.learner.probe_started(run.now);
    (void)run.learner.probe_held(plan.idle, run.now);  // instant probes: only the budget spaces them
  }
  for (int i = 1; i < 4; ++i)
    CHECK(starts[i] == starts[0]);  // the bucket starts full
  for (int i = 4; i < 8; ++i)
    CHECK(starts[i] - starts[i - 1] == 15min);
}

TEST_CASE("adaptive heartbeat starts from a remembered proof") {
  const idle_interval_learner learner{{.min = 1s, .max = 5min}, t0, 20s};
  CHECK(learner.interval() == 15s);
  CHECK(learner.next_probe(t0).idle == 40s);
  const idle_interval_learner fresh{{.min = 1s, .max = 5min}, t0};
  CHECK(fresh.interval() == 1s);
  CHECK(fresh.next_probe(t0).idle == 2s);
}

TEST_CASE("adaptive heartbeat options are validated field by field") {
  using tether::error;
  CHECK_FALSE(adaptive_heartbeat{}.validate());
  CHECK(adaptive_heartbeat{.min = 0s}.validate() == error::adaptive_heartbeat_bounds_invalid);
  CHECK(adaptive_heartbeat{.min = 10s, .max = 5s}.validate() == error::adaptive_heartbeat_bounds_invalid);
  CHECK(adaptive_heartbeat{.margin = 1.0}.validate() == error::adaptive_heartbeat_fraction_out_of_range);
  CHECK(adaptive_heartbeat{.margin = -0.1}.validate() == error::adaptive_heartbeat_fraction_out_of_range);
  CHECK(adaptive_heartbeat{.precision = 0.0}.validate() == error::adaptive_heartbeat_fraction_out_of_range);
  CHECK(adaptive_heartbeat{.reverify_every = -1s}.validate() == error::adaptive_heartbeat_reverify_negative);
  CHECK(adaptive_heartbeat{.max_probes_per_hour = 0}.validate() == error::adaptive_heartbeat_probe_budget_not_positive);
  CHECK(tether::interval_change_name(interval_change::proven_longer) == "proven_longer");
  CHECK(tether::interval_change_name(interval_change::path_stricter) == "path_stricter");
}

// The adaptive heartbeat's learning: what it costs and how close it gets. For each idle timeout, the fault
// suite's conntrack firewall (tests/fault/network.hpp, network namespaces) forgets flows idle that long, and a
// connector with connector_options::adaptive learns from min 1 s until it settles. Reported per timeout: the
// probes it spent (and how many failed), the time to settle, this process's CPU time meanwhile beside the
// baseline's over as long (the same connector with a fixed heartbeat at the minimum, no probes), the learned
// interval as a fraction of the timeout (the goal: within [0.5, 1)), and the pings per hour against the
// baseline's.
// Needs root (namespaces and nftables): without it the benchmark says SKIPPED and measures nothing.
//
//   tether_bench_adaptive [--quick] [--timeouts 4s,8s,16s]
#include "namespaced_echo_server.hpp"
#include "network.hpp"

#include "../support/flags.hpp"
#include "../support/process.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connector.hpp>
#include <tether/idle_interval_learner.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <sys/resource.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;
using tether::fault::netns_scope;

std::chrono::microseconds cpu_time() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto micros = [](const timeval& t) { return std::chrono::seconds{t.tv_sec} + std::chrono::microseconds{t.tv_usec}; };
  return micros(usage.ru_utime) + micros(usage.ru_stime);
}

struct client_run {
  milliseconds learned{0};
  unsigned probes = 0;
  unsigned failed = 0;
  milliseconds took{0};
  std::chrono::microseconds cpu{0};
  bool settled = false;
  bool kept = false;  // the protected connection stayed up throughout
};

// A connector through a firewall that forgets flows idle for `idle_timeout`: with `adaptive`, until it settles;
// without (the baseline, a fixed heartbeat at min), for `duration`.
client_run run_through_firewall(milliseconds idle_timeout, const tether::adaptive_heartbeat& adaptive, bool learning,
                                milliseconds duration) {
  tether::fault::network net;
  net.forget_idle_flows_after(std::chrono::duration_cast<std::chrono::seconds>(idle_timeout));
  asio::io_context io;
  tether::fault::namespaced_echo_server server{io, net};
  netns_scope inside{net.client};
  using policy = tether::liveness<tether::heartbeat>;
  tether::connector_options options{.host = tether::fault::network::server_address,
                                    .service = std::to_string(server.port()),
                                    .wheel = {.tick = 20ms}};
  if (learning)
    options.adaptive = adaptive;
  tether::connector<tether::line_codec, policy> client{
      io, options, {}, policy{tether::heartbeat{.interval = adaptive.min, .timeout = 1s}}};
  int connects = 0;
  bool closed = false;
  client.on_connect([&](auto&) { ++connects; });
  client.on_close([&](auto&, tether::close_reason) { closed = true; });
  if (const auto ec = client.start())
    throw std::runtime_error{"connector: " + ec.message()};

  const auto cpu_before = cpu_time();
  const auto start = clock_type::now();
  const auto until = start + duration;
  const auto settled = [&] { return client.interval_learner() && client.interval_learner()->settled(); };
  while (!(learning && settled()) && !closed && clock_type::now() < until && !bench::interrupted())
    io.run_one_for(50ms);
  client_run result;
  result.took = std::chrono::duration_cast<milliseconds>(clock_type::now() - start);
  result.cpu = cpu_time() - cpu_before;
  result.settled = settled();
  result.kept = !closed && connects == 1;
  if (const auto* learner = client.interval_learner()) {
    result.learned = learner->interval();
    result.probes = learner->probes();
    result.failed = learner->probes_failed();
  }
  client.stop();
  io.run_for(100ms);
  return result;
}

int run(const std::vector<milliseconds>& timeouts) {
  bench::begin_driver();
  if (const std::string missing = tether::fault::missing_privileges(); !missing.empty()) {
    fmt::print("SKIPPED: adaptive benchmark not run: {}\n", missing);
    return 0;
  }
  const tether::adaptive_heartbeat adaptive{.min = 1s, .max = 5min, .max_probes_per_hour = 1000};
  fmt::print("Adaptive heartbeat learning a conntrack firewall's idle timeout (network namespaces), from min {} ms,\n"
             "margin {}, precision {}; baseline: a fixed heartbeat at min.\n",
             adaptive.min.count(), adaptive.margin, adaptive.precision);
  fmt::print("  {:>10} {:>10} {:>8} {:>7} {:>7} {:>9} {:>11} {:>11} {:>10}  {}\n", "timeout ms", "learned ms",
             "/timeout", "probes", "failed", "settle s", "cpu ms", "base cpu ms", "pings/h", "connection");
  bool every_goal_met = true;
  for (const auto timeout : timeouts) {
    const auto learned = run_through_firewall(timeout, adaptive, true, 20 * timeout + 60s);
    const auto baseline = run_through_firewall(timeout, adaptive, false, std::max(learned.took, 1000ms));
    const double fraction = static_cast<double>(learned.learned.count()) / static_cast<double>(timeout.count());
    const double pings_ratio = learned.learned.count() > 0 ? static_cast<double>(adaptive.min.count()) /
                                                                 static_cast<double>(learned.learned.count())
                                                           : 1.0;
    const bool met = learned.settled && learned.kept && baseline.kept && fraction >= 0.5 && fraction < 1.0;
    every_goal_met = every_goal_met && met;
    fmt::print("  {:>10} {:>10} {:>8.2f} {:>7} {:>7} {:>9.1f} {:>11.1f} {:>11.1f} {:>9.2f}x  {}{}\n", timeout.count(),
               learned.learned.count(), fraction, learned.probes, learned.failed,
               static_cast<double>(learned.took.count()) / 1000.0, static_cast<double>(learned.cpu.count()) / 1000.0,
               static_cast<double>(baseline.cpu.count()) / 1000.0, pings_ratio, learned.kept ? "kept" : "LOST",
               met ? "" : "  (goal missed: settled within [0.5, 1) of the timeout, connection kept)");
  }
  fmt::print("cpu ms: this process while learning; base cpu ms: the baseline (a fixed heartbeat at min, no\n"
             "probes) over as long; pings/h: the learned interval's pings per hour over the baseline's.\n");
  return every_goal_met ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  constexpr const char* usage = "usage: tether_bench_adaptive [--quick] [--timeouts 4s,8s,16s]";
  try {
    bench::flags given{argc, argv};
    const bool quick = given.has("--quick");
    std::vector<milliseconds> timeouts = quick ? std::vector<milliseconds>{3s} : std::vector<milliseconds>{4s, 8s, 16s};
    if (const auto listed = given.text("--timeouts", ""); !listed.empty()) {
      timeouts.clear();
      for (const auto& item : bench::split(listed, ',')) {
        const auto timeout = bench::parse_duration(item);
        if (!timeout || *timeout < 2s || timeout->count() % 1000 != 0)
          throw bench::usage_error{"--timeouts takes whole seconds of at least 2s separated by commas (conntrack "
                                   "counts in seconds), not '" + listed + "'"};
        timeouts.push_back(*timeout);
      }
    }
    given.finish();
    return run(timeouts);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr, "tether_bench_adaptive: {}\n{}\n", e.what(), usage);
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_adaptive: {}\n", e.what());
    return 1;
  }
}

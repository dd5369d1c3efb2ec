// Idle tracking: what noting activity on a connection costs.
//
//   tether        a connection stores the wheel's cached now() as its last activity and never touches its timer
//                 on the data path; when its wheel node fires, the deadline is recomputed from that timestamp and
//                 the node is filed again (tether::connection does exactly this).
//   steady_timer  what most Asio code does: one asio::steady_timer per connection, re-armed on every read with
//                 expires_after + async_wait; the aborted waits are run by io_context::poll() every 256 touches.
//
// Both touch the same pseudo-random sequence of connections, each connection a separate heap object as in a
// server. Pinned to CPU1; the median of several repetitions is reported. The timer wheel's own operations
// (schedule, move, cancel, expire and re-file) are measured on their own.
//
//   tether_bench_idle [--quick] [--connections 10000,100000] [--touches 1000000] [--repetitions 7]
#include "../support/flags.hpp"
#include "../support/process.hpp"
#include "../support/summary.hpp"

#include <tether/detail/hashed_wheel.hpp>
#include <tether/liveness/strategy.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto idle_bound = 30s;

struct options {
  std::vector<std::size_t> connections{10'000, 100'000};
  std::size_t touches = 1'000'000;
  std::size_t repetitions = 7;
};

// The part of tether::connection that idle tracking involves: its wheel node, its wheel and its activity stamps.
struct tracked_connection : tether::wheel_node {
  explicit tracked_connection(tether::timer_wheel& wheel) : wheel_node(&on_deadline), wheel(&wheel) {}

  static void on_deadline(tether::wheel_node& node) noexcept {
    auto& self = static_cast<tracked_connection&>(node);
    self.wheel->schedule(self, self.seen.received + idle_bound);
  }

  void touch() noexcept {
    const auto now = wheel->now();
    seen.received = now;
    seen.data_received = now;
  }

  tether::timer_wheel* wheel;
  tether::activity seen{};
};

struct timed_connection {
  explicit timed_connection(asio::io_context& io) : timer(io) {}

  void touch() {
    timer.expires_after(idle_bound);
    timer.async_wait([this](const std::error_code& ec) {
      if (!ec)
        ++expiries;
    });
  }

  asio::steady_timer timer;
  std::uint64_t expiries = 0;
};

// A deadline that, once reached, is filed again one rotation later: a connection whose activity moved on.
struct refiling_node : tether::wheel_node {
  static constexpr std::chrono::milliseconds tick{100};
  static constexpr std::size_t slots = 512;

  explicit refiling_node(tether::detail::hashed_wheel& wheel) : wheel_node(&refile), wheel(&wheel) {}

  static void refile(tether::wheel_node& node) noexcept {
    auto& self = static_cast<refiling_node&>(node);
    self.wheel->schedule(self, self.deadline() + tick * static_cast<int>(slots));
  }

  tether::detail::hashed_wheel* wheel;
};

std::vector<std::uint32_t> touch_order(std::size_t connections, std::size_t touches) {
  std::mt19937 random{20260601};
  std::uniform_int_distribution<std::uint32_t> pick{0, static_cast<std::uint32_t>(connections - 1)};
  std::vector<std::uint32_t> order(touches);
  for (auto& index : order)
    index = pick(random);
  return order;
}

double nanoseconds_per(clock_type::duration elapsed, std::size_t operations) {
  return std::chrono::duration<double, std::nano>(elapsed).count() / static_cast<double>(operations);
}

double tether_touch(std::size_t n, const std::vector<std::uint32_t>& order, std::size_t repetitions) {
  asio::io_context io{1};
  tether::timer_wheel wheel{io};
  std::vector<std::unique_ptr<tracked_connection>> connections;
  for (std::size_t i = 0; i < n; ++i) {
    connections.push_back(std::make_unique<tracked_connection>(wheel));
    connections.back()->touch();
    wheel.schedule(*connections.back(), connections.back()->seen.received + idle_bound);
  }
  std::vector<double> samples;
  for (std::size_t rep = 0; rep < repetitions; ++rep) {
    const auto start = clock_type::now();
    for (const auto index : order)
      connections[index]->touch();
    samples.push_back(nanoseconds_per(clock_type::now() - start, order.size()));
    io.poll();
  }
  for (auto& connection : connections)
    wheel.cancel(*connection);
  return bench::median(samples);
}

double steady_timer_touch(std::size_t n, const std::vector<std::uint32_t>& order, std::size_t repetitions) {
  asio::io_context io{1};
  std::vector<std::unique_ptr<timed_connection>> connections;
  for (std::size_t i = 0; i < n; ++i) {
    connections.push_back(std::make_unique<timed_connection>(io));
    connections.back()->touch();
  }
  std::vector<double> samples;
  for (std::size_t rep = 0; rep < repetitions; ++rep) {
    const auto start = clock_type::now();
    std::size_t since_poll = 0;
    for (const auto index : order) {
      connections[index]->touch();
      if (++since_poll == 256) {
        since_poll = 0;
        io.poll();
      }
    }
    io.poll();
    samples.push_back(nanoseconds_per(clock_type::now() - start, order.size()));
  }
  for (auto& connection : connections)
    connection->timer.cancel();
  io.poll();
  return bench::median(samples);
}

struct wheel_costs {
  double schedule = 0;
  double move = 0;
  double cancel = 0;
  double expire_and_refile = 0;
};

// The wheel's operations through its public API (schedule, move, cancel), and expiry through the hashed wheel
// it is built on, driven with explicit time points so that a whole rotation of expiries can be timed at once.
wheel_costs wheel_operations(std::size_t n, const std::vector<std::uint32_t>& order, std::size_t repetitions) {
  asio::io_context io{1};
  tether::timer_wheel wheel{io};
  std::vector<std::unique_ptr<tracked_connection>> connections;
  for (std::size_t i = 0; i < n; ++i)
    connections.push_back(std::make_unique<tracked_connection>(wheel));
  std::mt19937 random{7};
  std::uniform_int_distribution<std::int64_t> spread_ms{1000, 50'000};
  std::vector<clock_type::duration> delays(order.size());
  for (auto& delay : delays)
    delay = std::chrono::milliseconds{spread_ms(random)};

  std::vector<double> schedule;
  std::vector<double> move;
  std::vector<double> cancel;
  for (std::size_t rep = 0; rep < repetitions; ++rep) {
    const auto now = wheel.now();
    auto start = clock_type::now();
    for (std::size_t i = 0; i < n; ++i)
      wheel.schedule(*connections[i], now + delays[i % delays.size()]);
    schedule.push_back(nanoseconds_per(clock_type::now() - start, n));

    start = clock_type::now();
    for (std::size_t k = 0; k < order.size(); ++k)
      wheel.schedule(*connections[order[k]], now + delays[k]);
    move.push_back(nanoseconds_per(clock_type::now() - start, order.size()));

    start = clock_type::now();
    for (auto& connection : connections)
      wheel.cancel(*connection);
    cancel.push_back(nanoseconds_per(clock_type::now() - start, n));
  }

  // Every node expires once per rotation and files itself again.
  const auto origin = clock_type::time_point{} + 1h;
  tether::detail::hashed_wheel bare{refiling_node::tick, refiling_node::slots, origin};
  std::vector<std::unique_ptr<refiling_node>> nodes;
  for (std::size_t i = 0; i < n; ++i) {
    nodes.push_back(std::make_unique<refiling_node>(bare));
    const auto ticks_ahead = static_cast<int>(1 + i % (refiling_node::slots - 1));
    bare.schedule(*nodes.back(), origin + refiling_node::tick * ticks_ahead);
  }
  std::vector<double> expire;
  auto now = origin;
  for (std::size_t rep = 0; rep < repetitions; ++rep) {
    std::size_t fired = 0;
    const auto start = clock_type::now();
    for (std::size_t t = 0; t < refiling_node::slots; ++t) {
      now += refiling_node::tick;
      fired += bare.advance(now);
    }
    expire.push_back(nanoseconds_per(clock_type::now() - start, fired));
  }
  for (auto& node : nodes)
    bare.cancel(*node);
  return {bench::median(schedule), bench::median(move), bench::median(cancel), bench::median(expire)};
}

int run(const options& opts) {
  bench::pin_to_cpu(1);
  fmt::print("Idle tracking: cost per activity touch, {} pseudo-random touches, median of {} repetitions, CPU1\n",
             opts.touches, opts.repetitions);
  fmt::print("  {:>8} {:>22} {:>16} {:>9}   {}\n", "N", "steady_timer re-arm ns", "tether touch ns", "ratio",
             "goal <= 10 ns and >= 30x");
  std::vector<std::pair<std::size_t, wheel_costs>> wheel_rows;
  for (const std::size_t n : opts.connections) {
    const auto order = touch_order(n, opts.touches);
    const double timer = steady_timer_touch(n, order, opts.repetitions);
    const double tether = tether_touch(n, order, opts.repetitions);
    const double ratio = timer / tether;
    fmt::print("  {:>8} {:>22.1f} {:>16.2f} {:>8.0f}x   {}\n", n, timer, tether, ratio,
               tether <= 10 && ratio >= 30 ? "met" : "NOT met");
    wheel_rows.emplace_back(n, wheel_operations(n, order, opts.repetitions));
  }
  fmt::print("\nTimer wheel operations (tether::timer_wheel, tick 100 ms, 512 slots), ns per operation\n");
  fmt::print("  {:>8} {:>10} {:>10} {:>10} {:>18}\n", "N", "schedule", "move", "cancel", "expire + re-file");
  for (const auto& [n, costs] : wheel_rows)
    fmt::print("  {:>8} {:>10.2f} {:>10.2f} {:>10.2f} {:>18.2f}\n", n, costs.schedule, costs.move, costs.cancel,
               costs.expire_and_refile);
  fmt::print("\nMemory per tracked connection: tether::wheel_node {} B in the connection, no allocation;\n"
             "asio::steady_timer {} B in the connection plus one allocated wait operation per pending wait.\n",
             sizeof(tether::wheel_node), sizeof(asio::steady_timer));
  return bench::interrupted() ? 130 : 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    bench::begin_driver();
    bench::flags given{argc, argv};
    options opts;
    if (given.has("--quick")) {
      opts.touches = 100'000;
      opts.repetitions = 1;
    }
    opts.connections = given.counts("--connections", opts.connections);
    opts.touches = given.integer("--touches", opts.touches);
    opts.repetitions = given.integer("--repetitions", opts.repetitions);
    given.finish();
    if (opts.touches == 0 || opts.repetitions == 0)
      throw bench::usage_error{"--touches and --repetitions must be positive"};
    return run(opts);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr,
               "tether_bench_idle: {}\nusage: tether_bench_idle [--quick] [--connections 10000,100000] "
               "[--touches 1000000] [--repetitions 7]\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_idle: {}\n", e.what());
    return 1;
  }
}

// Detection time: how long each strategy takes to notice a dead peer, against the bound its configuration
// promises. The network is the fault suite's (tests/fault/network.hpp): client and server in network namespaces
// of their own, joined through a router namespace whose nftables firewall can drop everything at once. After an
// echo proves the path, the path goes silent:
//
//   heartbeat      while idle; bound interval + timeout (plus up to one wheel tick, 100 ms by default)
//   tcp_keepalive  while idle; bound idle + interval * count
//   user_timeout   with data in flight (where keepalive sends no probes); bound the timeout
//
// Each configuration runs several times on a fresh connection; the table gives the median and the worst case.
// Needs root (namespaces and nftables): without it the benchmark says SKIPPED and measures nothing.
//
//   tether_bench_detection [--quick] [--runs 5] [--data FILE]
#include "network.hpp"

#include "../support/flags.hpp"
#include "../support/process.hpp"
#include "../support/summary.hpp"

#include <tether/close_reason.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>
#include <tether/timer_wheel.hpp>

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using tether::close_reason;
using tether::fault::netns_scope;

template <class Predicate>
bool run_until(asio::io_context& io, Predicate done, std::chrono::milliseconds limit) {
  const auto until = clock_type::now() + limit;
  while (!done() && clock_type::now() < until && !bench::interrupted()) {
    if (io.stopped())
      io.restart();
    io.run_one_for(5ms);
  }
  return done();
}

struct outcome {
  std::optional<std::chrono::milliseconds> detected;
  std::optional<close_reason> reason;
};

// A tether client in the client namespace, talking through the firewall to a tether echo server in the server
// namespace; only the client runs the strategy under test.
template <class Liveness>
class pair_over_firewall {
public:
  using client_connection = tether::connection<tether::line_codec, Liveness>;
  using server_connection = tether::connection<tether::line_codec>;

  pair_over_firewall(tether::fault::network& net, Liveness liveness) : acceptor_(io_) {
    {
      netns_scope inside{net.server};
      acceptor_.open(asio::ip::tcp::v4());
      acceptor_.bind({asio::ip::make_address(tether::fault::network::server_address), 0});
      acceptor_.listen();
    }
    typename client_connection::socket_type socket{io_};
    {
      netns_scope inside{net.client};
      socket.open(asio::ip::tcp::v4());
    }
    socket.connect(net.server_endpoint(acceptor_.local_endpoint().port()));

    server_settings_.on_message = [](server_connection& c, std::string_view line) { c.send(line); };
    client_settings_.liveness = liveness;
    client_settings_.on_message = [this](client_connection&, std::string_view) { ++echoes_; };
    client_settings_.on_close = [this](client_connection&, close_reason why) {
      closed_ = why;
      closed_at_ = clock_type::now();
    };
    server_ = server_connection::create(acceptor_.accept(io_), server_settings_, wheel_);
    client_ = client_connection::create(std::move(socket), client_settings_, wheel_);
    server_->start();
    client_->start();
  }

  pair_over_firewall(const pair_over_firewall&) = delete;
  pair_over_firewall& operator=(const pair_over_firewall&) = delete;

  ~pair_over_firewall() {
    client_->abort();
    server_->abort();
  }

  bool echoed() {
    const std::size_t before = echoes_;
    if (client_->send("are you there"))
      return false;
    const auto answered_or_closed = [&] { return echoes_ > before || closed_; };
    return run_until(io_, answered_or_closed, 5s) && echoes_ > before;
  }

  void send_into_the_void() { client_->send("stuck in flight"); }

  outcome detection_since(clock_type::time_point start, std::chrono::milliseconds limit) {
    const auto closed = [&] { return closed_.has_value(); };
    run_until(io_, closed, limit);
    if (!closed_)
      return {};
    return {std::chrono::duration_cast<std::chrono::milliseconds>(closed_at_ - start), closed_};
  }

private:
  asio::io_context io_;
  tether::timer_wheel wheel_{io_};
  asio::ip::tcp::acceptor acceptor_;
  tether::connection_context<tether::line_codec> server_settings_;
  tether::connection_context<tether::line_codec, Liveness> client_settings_;
  std::shared_ptr<server_connection> server_;
  std::shared_ptr<client_connection> client_;
  std::size_t echoes_ = 0;
  std::optional<close_reason> closed_;
  clock_type::time_point closed_at_;
};

struct scenario {
  std::string strategy;
  std::string configuration;
  std::chrono::milliseconds bound;
  close_reason expected;
  std::function<outcome(tether::fault::network&)> run_once;
  bool quick = false;  // part of the --quick selection
};

// Silences the path once the connection is proven, optionally with data in flight, and times the close.
template <class Liveness>
outcome silence_and_time(tether::fault::network& net, Liveness liveness, bool data_in_flight,
                         std::chrono::milliseconds bound) {
  pair_over_firewall<Liveness> pair{net, liveness};
  if (!pair.echoed())
    throw std::runtime_error{"no echo through the fault network"};
  net.blackhole(true);
  struct restore_path {
    tether::fault::network& net;
    ~restore_path() { net.blackhole(false); }
  } restores{net};
  const auto start = clock_type::now();
  if (data_in_flight)
    pair.send_into_the_void();
  return pair.detection_since(start, 2 * bound + 5s);
}

std::vector<scenario> scenarios() {
  const auto heartbeat = [](std::chrono::milliseconds interval, std::chrono::milliseconds timeout, bool quick) {
    const tether::heartbeat policy{.interval = interval, .timeout = timeout};
    return scenario{"heartbeat",
                    fmt::format("interval {}s, timeout {}s", interval.count() / 1000, timeout.count() / 1000),
                    interval + timeout,
                    close_reason::heartbeat_timeout,
                    [policy, bound = interval + timeout](tether::fault::network& net) {
                      return silence_and_time(net, tether::liveness{policy}, false, bound);
                    },
                    quick};
  };
  const auto keepalive = [](std::chrono::milliseconds idle, std::chrono::milliseconds interval, int count, bool quick) {
    const tether::tcp_keepalive policy{.idle = idle, .interval = interval, .count = count};
    return scenario{
        "tcp_keepalive",
        fmt::format("idle {}s, interval {}s, count {}", idle.count() / 1000, interval.count() / 1000, count),
        policy.detection_bound(),
        close_reason::keepalive_timeout,
        [policy](tether::fault::network& net) {
          return silence_and_time(net, tether::liveness{policy}, false, policy.detection_bound());
        },
        quick};
  };
  const auto user_timeout = [](std::chrono::milliseconds timeout, bool quick) {
    const tether::user_timeout policy{timeout};
    return scenario{"user_timeout",
                    fmt::format("timeout {}s, data in flight", timeout.count() / 1000),
                    timeout,
                    close_reason::user_timeout,
                    [policy](tether::fault::network& net) {
                      return silence_and_time(net, tether::liveness{policy}, true, policy.timeout);
                    },
                    quick};
  };
  return {heartbeat(1s, 1s, true),     heartbeat(2s, 1s, false), keepalive(1s, 1s, 2, true),
          keepalive(2s, 1s, 3, false), user_timeout(2s, true),   user_timeout(4s, false)};
}

int run(std::size_t runs, bool quick, const std::string& data_file) {
  bench::begin_driver();
  if (const std::string missing = tether::fault::missing_privileges(); !missing.empty()) {
    fmt::print("SKIPPED: detection benchmark not run: {}\n", missing);
    return 0;
  }
  tether::fault::network net;
  fmt::print("Detection time of a dead peer: the path through a conntrack firewall (network namespaces) goes\n"
             "silent after an echo; {} run(s) per configuration, wheel tick 100 ms.\n",
             runs);
  fmt::print("  {:<14} {:<32} {:>9} {:>10} {:>8} {:>13}  {}\n", "strategy", "configuration", "bound ms", "median ms",
             "max ms", "median/bound", "close reason");
  std::ofstream data;
  if (!data_file.empty()) {
    data.open(data_file);
    data << "# label bound_ms median_ms max_ms\n";
  }
  bool every_run_detected = true;
  for (const auto& s : scenarios()) {
    if (quick && !s.quick)
      continue;
    std::vector<double> detected;
    std::string reasons;
    for (std::size_t run = 0; run < runs && !bench::interrupted(); ++run) {
      const outcome o = s.run_once(net);
      if (!o.detected) {
        every_run_detected = false;
        reasons = "NOT DETECTED within twice the bound";
        continue;
      }
      detected.push_back(static_cast<double>(o.detected->count()));
      if (*o.reason != s.expected)
        reasons = fmt::format("UNEXPECTED {}", tether::close_reason_name(*o.reason));
      else if (reasons.empty())
        reasons = std::string{tether::close_reason_name(*o.reason)};
    }
    if (bench::interrupted())
      return 130;
    const double median = bench::median(detected);
    const double worst = bench::maximum(detected);
    fmt::print("  {:<14} {:<32} {:>9} {:>10.0f} {:>8.0f} {:>13.2f}  {}\n", s.strategy, s.configuration, s.bound.count(),
               median, worst, median / static_cast<double>(s.bound.count()), reasons);
    if (data.is_open()) {
      // One line per setting under the strategy's name, so that the chart's labels stay narrow.
      std::string label = s.strategy;
      for (const auto& setting : bench::split(s.configuration, ','))
        label += "\\n" + std::string{setting.starts_with(' ') ? setting.substr(1) : setting};
      data << fmt::format("\"{}\" {} {:.0f} {:.0f}\n", label, s.bound.count(), median, worst);
    }
  }
  return every_run_detected ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  try {
    bench::flags given{argc, argv};
    const bool quick = given.has("--quick");
    const auto runs = given.integer<std::size_t>("--runs", quick ? 1 : 5);
    const std::string data_file = given.text("--data", "");
    given.finish();
    if (runs == 0)
      throw bench::usage_error{"--runs must be positive"};
    return run(runs, quick, data_file);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr, "tether_bench_detection: {}\nusage: tether_bench_detection [--quick] [--runs 5] [--data FILE]\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_detection: {}\n", e.what());
    return 1;
  }
}

// Peer comparison: tether against the servers users would otherwise write, under the echo benchmark's loads and
// with the memory benchmark's idle connections, in the same run.
//
//   tether  the echo benchmark's server: tether::listener, line_codec, all four liveness strategies active.
//   go      echo_server.go: a goroutine per connection, a read deadline per read, runtime TCP keepalive (Go 1.19).
//   netty   EchoServer.java: Netty 4.1 on NIO, IdleStateHandler, SO_KEEPALIVE, default event loop groups (the
//           Debian JDK).
//
// Every server runs as a child process pinned to CPU1. Echo: the four loads of tether_bench_echo (1 and 100
// connections, client on CPU1 or CPU0), servers rotating within each round after a warm-up that lets the JVM
// compile its hot paths; each figure is the median of per-round ratios. Idle memory: each round starts every
// server afresh, reads its VmRSS, opens N connections from this process (CPU0) that send nothing, waits until
// the server holds N more descriptors and 2 s more, and reads VmRSS again; the growth over N is the figure, the
// same reading for all three (the heap figure of tether_bench_memory exists only for tether).
//
//   tether_bench_peers [--quick] [--rounds 5] [--duration 2s] [--connections 100] [--idle-connections 10000]
//   tether_bench_peers serve      (tether's echo server, used by the driver)
#include "../echo/clients.hpp"
#include "../echo/loads.hpp"
#include "../echo/servers.hpp"

#include "../support/flags.hpp"
#include "../support/process.hpp"
#include "../support/procfs.hpp"
#include "../support/summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using bench::echo::goal_text;
using bench::echo::running_server;
using bench::echo::server_cpu;

// Where the warm-up flood and the idle connections come from: the core the server is not on.
constexpr int other_cpu = 0;

struct options {
  std::size_t rounds = 5;
  std::chrono::milliseconds duration = 2s;
  std::chrono::milliseconds warm_up = 3s;
  std::size_t warm_up_round_trips = 2000;
  std::chrono::milliseconds flood_warm_up = 500ms;
  std::size_t connections = 100;
  std::size_t idle_connections = 10000;
  std::size_t memory_rounds = 3;
};

struct peer {
  std::string name;
  std::vector<std::string> command;  // empty: not built here, and why is in `missing`
  std::string missing;
};

std::vector<peer> peers() {
  const std::string go_server = TETHER_BENCH_GO_SERVER;
  const std::string netty_classpath = TETHER_BENCH_NETTY_CLASSPATH;
  std::vector<peer> all{{"tether", {bench::self_executable(), "serve"}, ""}};
  if (go_server.empty())
    all.push_back({"go", {}, "golang-go was not found when the benchmarks were configured"});
  else
    all.push_back({"go", {go_server}, ""});
  if (netty_classpath.empty())
    all.push_back({"netty", {}, "javac or libnetty-java was not found when the benchmarks were configured"});
  else
    all.push_back({"netty", {TETHER_BENCH_JAVA, "-cp", netty_classpath, "EchoServer"}, ""});
  return all;
}

// The JVM takes a while to start.
running_server start_server(const peer& which) { return bench::echo::start_server(which.command, 30s); }

void run_echo_scenario(const bench::echo::load& what, const options& opts, const std::vector<peer>& servers_in_order,
                       std::map<std::string, running_server>& servers) {
  bench::pin_to_cpu(what.client_cpu);
  std::map<std::string, std::vector<double>> rates, cpu, ratios;
  for (std::size_t round = 0; round < opts.rounds && !bench::interrupted(); ++round) {
    std::map<std::string, double> this_round;
    for (std::size_t k = 0; k < servers_in_order.size(); ++k) {
      const auto& name = servers_in_order[(round + k) % servers_in_order.size()].name;
      const auto s = bench::echo::measure(
          what, servers.at(name), {opts.connections, opts.warm_up_round_trips, opts.flood_warm_up, opts.duration});
      this_round[name] = s.throughput;
      rates[name].push_back(s.throughput);
      cpu[name].push_back(s.server_cpu);
    }
    for (const auto& [name, rate] : this_round)
      if (name != "tether")
        ratios[name].push_back(this_round["tether"] / rate);
  }
  fmt::print("\n{} ({} rounds x {} ms, medians)\n", what.title, rates["tether"].size(), opts.duration.count());
  fmt::print("  {:<8} {:>14} {:>15} {:>11}\n", "server", what.many_connections ? "messages/s" : "round trips/s",
             "server CPU us", "tether/it");
  for (const auto& which : servers_in_order) {
    const std::string ratio =
        which.name == "tether" ? "" : fmt::format("{:.3f}", bench::median(ratios[which.name]));
    fmt::print("  {:<8} {:>14.0f} {:>15.2f} {:>11}\n", which.name, bench::median(rates[which.name]),
               bench::median(cpu[which.name]), ratio);
  }
  for (const auto& [name, values] : ratios)
    fmt::print("  goal tether >= 1.3x {}: {:.3f} -> {}\n", name, bench::median(values),
               goal_text(bench::median(values) >= 1.3));
}

void run_echo(const options& opts, const std::vector<peer>& available) {
  std::map<std::string, running_server> servers;
  for (const auto& which : available)
    servers.emplace(which.name, start_server(which));
  // The JVM interprets before it compiles: every server gets the same flood first, so that all are measured warm.
  bench::pin_to_cpu(other_cpu);
  for (const auto& which : available)
    bench::echo::one_in_flight_each(servers.at(which.name).port, servers.at(which.name).process.pid(),
                                    opts.connections, 0ms, opts.warm_up);
  fmt::print("Echo: 64-byte newline-terminated messages over loopback, TCP_NODELAY on both ends, servers pinned to "
             "CPU{},\nafter {} ms of warm-up flood each. tether/it is the median of per-round throughput ratios.\n",
             server_cpu, opts.warm_up.count());
  for (const auto& what : bench::echo::four_loads(opts.connections)) {
    if (bench::interrupted())
      break;
    run_echo_scenario(what, opts, available, servers);
  }
  for (auto& [name, server] : servers)
    server.process.stop(0ms);
}

std::size_t open_descriptors(pid_t pid) {
  std::error_code ec;
  std::size_t count = 0;
  for (std::filesystem::directory_iterator entry{fmt::format("/proc/{}/fd", pid), ec}, end; !ec && entry != end;
       entry.increment(ec))
    ++count;
  return count;
}

// Server VmRSS growth per connection while it holds `count` idle connections from this process.
double resident_bytes_per_idle_connection(const peer& which, std::size_t count) {
  auto server = start_server(which);
  // One round trip first, so that what the first message loads (classes, code, buffers' pools) is in the baseline.
  bench::echo::exact_round_trips(server.port, 100);
  std::this_thread::sleep_for(1500ms);
  const auto descriptors_before = open_descriptors(server.process.pid());
  const auto resident_before = bench::resident_bytes(server.process.pid());

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(server.port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> sockets;
  struct closes_with_reset {
    std::vector<int>& sockets;
    ~closes_with_reset() {
      const linger abortive{1, 0};
      for (const int fd : sockets) {
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
        ::close(fd);
      }
    }
  } resets{sockets};
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      throw bench::system_failure("socket");
    sockets.push_back(fd);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
      throw bench::system_failure("connect to the " + which.name + " server");
  }
  const auto patience = std::chrono::steady_clock::now() + 30s;
  while (open_descriptors(server.process.pid()) < descriptors_before + count) {
    if (std::chrono::steady_clock::now() > patience || bench::interrupted())
      throw std::runtime_error{fmt::format("the {} server accepted {} of {} connections within 30 s", which.name,
                                           open_descriptors(server.process.pid()) - descriptors_before, count)};
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(2s);
  const auto resident_after = bench::resident_bytes(server.process.pid());
  return static_cast<double>(resident_after - resident_before) / static_cast<double>(count);
}

void run_idle_memory(const options& opts, const std::vector<peer>& available) {
  bench::pin_to_cpu(other_cpu);
  std::map<std::string, std::vector<double>> per_connection, ratios;
  for (std::size_t round = 0; round < opts.memory_rounds && !bench::interrupted(); ++round) {
    std::map<std::string, double> this_round;
    for (std::size_t k = 0; k < available.size(); ++k) {
      const auto& which = available[(round + k) % available.size()];
      this_round[which.name] = resident_bytes_per_idle_connection(which, opts.idle_connections);
      per_connection[which.name].push_back(this_round[which.name]);
    }
    for (const auto& [name, bytes] : this_round)
      if (name != "tether")
        ratios[name].push_back(bytes / this_round["tether"]);
  }
  fmt::print("\nIdle memory: server VmRSS growth per connection holding {} idle connections ({} rounds, medians)\n",
             opts.idle_connections, per_connection["tether"].size());
  fmt::print("  {:<8} {:>14} {:>11}\n", "server", "B/connection", "it/tether");
  for (const auto& which : available) {
    const std::string ratio = which.name == "tether" ? "" : fmt::format("{:.1f}", bench::median(ratios[which.name]));
    fmt::print("  {:<8} {:>14.0f} {:>11}\n", which.name, bench::median(per_connection[which.name]), ratio);
  }
  for (const auto& [name, values] : ratios)
    fmt::print("  goal tether <= 1/8 of {}: {:.1f}x less -> {}\n", name, bench::median(values),
               goal_text(bench::median(values) >= 8));
}

void allow_descriptors(std::size_t needed) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < needed + 100)
    throw bench::usage_error{fmt::format("--idle-connections {} needs more open files than this process may have ({})",
                                         needed, limit.rlim_cur)};
}

int drive(const options& opts) {
  bench::begin_driver();
  allow_descriptors(opts.idle_connections);
  std::vector<peer> available;
  for (auto& which : peers()) {
    if (which.command.empty())
      fmt::print("{}: SKIPPED ({})\n", which.name, which.missing);
    else
      available.push_back(std::move(which));
  }
  run_echo(opts, available);
  if (!bench::interrupted())
    run_idle_memory(opts, available);
  return bench::interrupted() ? 130 : 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1 && std::string_view{argv[1]} == "serve") {
      bench::flags{argc, argv, 2}.finish();
      return bench::echo::serve_tether(tether::line_codec{});
    }
    bench::flags given{argc, argv};
    options opts;
    if (given.has("--quick")) {
      opts.rounds = 1;
      opts.duration = 300ms;
      opts.warm_up = 300ms;
      opts.warm_up_round_trips = 200;
      opts.flood_warm_up = 100ms;
      opts.idle_connections = 500;
      opts.memory_rounds = 1;
    }
    opts.rounds = given.integer("--rounds", opts.rounds);
    opts.duration = given.duration("--duration", opts.duration);
    opts.connections = given.integer("--connections", opts.connections);
    opts.idle_connections = given.integer("--idle-connections", opts.idle_connections);
    given.finish();
    if (opts.rounds == 0 || opts.connections == 0 || opts.idle_connections == 0 || opts.duration.count() <= 0)
      throw bench::usage_error{"--rounds, --connections, --idle-connections and --duration must be positive"};
    return drive(opts);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr,
               "tether_bench_peers: {}\nusage: tether_bench_peers [--quick] [--rounds N] [--duration 2s] "
               "[--connections 100] [--idle-connections 10000]\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_peers: {}\n", e.what());
    return 1;
  }
}

// Echo overhead: what tether costs on the data path, against the same server in plain Asio and against a
// minimal epoll server (the floor), under the same client load in the same run.
//
// Servers run as child processes pinned to CPU1; the client is this process, pinned to CPU1 (same core) or
// CPU0 (cross core). Every round measures every server, in an order that rotates from round to round, and the
// ratios are taken within a round before their median is reported, so slow drifts of a shared, virtualised
// machine cancel out. Wall time on such a machine moves by several percent between rounds, so the servers'
// user-space instructions per message are also counted with callgrind, which does not depend on timing, and
// their system calls per message with strace (the kernel side, which callgrind does not see).
//
//   tether_bench_echo [--quick] [--rounds 5] [--duration 2s] [--connections 100] [--no-callgrind] [--no-strace]
//   tether_bench_echo serve --variant tether|tether-websocket|tether-tls|asio|asio-ssl|epoll   (one server)
#include "clients.hpp"
#include "loads.hpp"
#include "servers.hpp"
#include "tls_clients.hpp"
#include "tls_servers.hpp"

#include "../support/flags.hpp"
#include "../support/process.hpp"
#include "../support/summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using bench::echo::goal_text;
using bench::echo::running_server;
using bench::echo::sample;
using bench::echo::server_cpu;
using bench::echo::start_server;

constexpr std::array<const char*, 3> variants{"epoll", "asio", "tether"};

struct options {
  std::size_t rounds = 5;
  std::chrono::milliseconds duration = 2s;
  std::size_t warm_up_round_trips = 2000;
  std::chrono::milliseconds flood_warm_up = 500ms;
  std::size_t connections = 100;
  bool callgrind = true;
  bool syscalls = true;
  std::size_t callgrind_base_messages = 2000;
  std::size_t callgrind_extra_messages = 20000;
};

void run_scenario(const bench::echo::load& what, const options& opts, std::map<std::string, running_server>& servers) {
  bench::pin_to_cpu(what.client_cpu);
  std::map<std::string, std::vector<sample>> samples;
  std::map<std::string, std::vector<double>> ratios;
  for (std::size_t round = 0; round < opts.rounds && !bench::interrupted(); ++round) {
    std::map<std::string, sample> this_round;
    for (std::size_t k = 0; k < variants.size(); ++k) {
      const std::string variant = variants[(round + k) % variants.size()];
      const sample s = bench::echo::measure(
          what, servers.at(variant),
          {opts.connections, opts.warm_up_round_trips, opts.flood_warm_up, opts.duration});
      this_round[variant] = s;
      samples[variant].push_back(s);
    }
    ratios["tether/asio"].push_back(this_round["tether"].throughput / this_round["asio"].throughput);
    ratios["tether/epoll"].push_back(this_round["tether"].throughput / this_round["epoll"].throughput);
    ratios["asio/epoll"].push_back(this_round["asio"].throughput / this_round["epoll"].throughput);
    ratios["cpu tether/asio"].push_back(this_round["tether"].server_cpu / this_round["asio"].server_cpu);
  }

  const auto median_of = [&](const std::string& variant, double sample::*field) {
    std::vector<double> values;
    for (const auto& s : samples[variant])
      values.push_back(s.*field);
    return bench::median(values);
  };
  fmt::print("\n{} ({} rounds x {} ms, medians)\n", what.title, samples["tether"].size(), opts.duration.count());
  fmt::print("  {:<8} {:>14} {:>8} {:>8} {:>15} {:>9} {:>9}\n", "server",
             what.many_connections ? "messages/s" : "round trips/s", "p50 us", "p99 us", "server CPU us", "vs epoll",
             "vs asio");
  for (const char* variant : variants) {
    const std::string name = variant;
    const std::string vs_epoll = name == "epoll" ? "1" : fmt::format("{:.3f}", bench::median(ratios[name + "/epoll"]));
    const std::string vs_asio = name == "tether" ? fmt::format("{:.3f}", bench::median(ratios["tether/asio"])) : "";
    const std::string p50 = what.many_connections ? "-" : fmt::format("{:.1f}", median_of(name, &sample::p50));
    const std::string p99 = what.many_connections ? "-" : fmt::format("{:.1f}", median_of(name, &sample::p99));
    fmt::print("  {:<8} {:>14.0f} {:>8} {:>8} {:>15.2f} {:>9} {:>9}\n", name, median_of(name, &sample::throughput), p50,
               p99, median_of(name, &sample::server_cpu), vs_epoll, vs_asio);
  }
  const double tether_vs_asio = bench::median(ratios["tether/asio"]);
  fmt::print("  tether/asio per round: {:.3f}", fmt::join(ratios["tether/asio"], " "));
  fmt::print("  (range {:.3f}..{:.3f})\n", bench::minimum(ratios["tether/asio"]),
             bench::maximum(ratios["tether/asio"]));
  fmt::print("  server CPU per message, tether/asio: {:.3f} (median of per-round ratios)\n",
             bench::median(ratios["cpu tether/asio"]));
  fmt::print("  goal tether >= 0.97x plain Asio: {:.3f} -> {}\n", tether_vs_asio, goal_text(tether_vs_asio >= 0.97));
}

// What WebSocket framing costs against line framing, same server otherwise: 1 connection ping-pong on one core,
// the two servers alternating within each round.
void run_websocket_comparison(const options& opts) {
  bench::pin_to_cpu(server_cpu);
  const std::string self = bench::self_executable();
  auto lines = start_server({self, "serve", "--variant", "tether"}, 10s);
  auto websocket = start_server({self, "serve", "--variant", "tether-websocket"}, 10s);
  std::vector<double> ratios, line_rates, websocket_rates, line_cpu, websocket_cpu;
  for (std::size_t round = 0; round < opts.rounds && !bench::interrupted(); ++round) {
    bench::echo::ping_pong_result line_result, websocket_result;
    const auto measure_lines = [&] {
      line_result = bench::echo::ping_pong(lines.port, lines.process.pid(), opts.warm_up_round_trips, opts.duration);
    };
    const auto measure_websocket = [&] {
      websocket_result = bench::echo::ping_pong(websocket.port, websocket.process.pid(), opts.warm_up_round_trips,
                                                opts.duration, 20'000'000, bench::echo::framing::websocket);
    };
    if (round % 2 == 0) {
      measure_lines();
      measure_websocket();
    } else {
      measure_websocket();
      measure_lines();
    }
    line_rates.push_back(line_result.round_trips_per_second);
    websocket_rates.push_back(websocket_result.round_trips_per_second);
    line_cpu.push_back(line_result.server_cpu_microseconds);
    websocket_cpu.push_back(websocket_result.server_cpu_microseconds);
    ratios.push_back(websocket_result.round_trips_per_second / line_result.round_trips_per_second);
  }
  lines.process.stop(0ms);
  websocket.process.stop(0ms);
  fmt::print("\nWebSocket against line framing: tether, 1 connection ping-pong, same core, 64-byte payloads "
             "(masked binary frames from the client), {} rounds, medians\n",
             ratios.size());
  fmt::print("  {:<18} {:>14} {:>15}\n", "codec", "round trips/s", "server CPU us");
  fmt::print("  {:<18} {:>14.0f} {:>15.2f}\n", "line_codec", bench::median(line_rates), bench::median(line_cpu));
  fmt::print("  {:<18} {:>14.0f} {:>15.2f}\n", "websocket_codec", bench::median(websocket_rates),
             bench::median(websocket_cpu));
  fmt::print("  websocket/line: {:.3f} (median of per-round ratios)\n", bench::median(ratios));
}

// What TLS costs in tether against the same TLS in plain Asio (asio::ssl::stream), both servers with the same
// OpenSSL context: 1 connection ping-pong inside a session, then full handshakes back to back (each followed by
// one echo), on one core, the two servers alternating within each round.
void run_tls_comparison(const options& opts) {
  bench::pin_to_cpu(server_cpu);
  const std::string self = bench::self_executable();
  std::map<std::string, running_server> servers;
  for (const char* variant : {"tether-tls", "asio-ssl"})
    servers.emplace(variant, start_server({self, "serve", "--variant", variant}, 10s));
  std::map<std::string, std::vector<double>> rates, cpu, handshake_rates, handshake_cpu;
  std::vector<double> echo_ratios, handshake_ratios;
  for (std::size_t round = 0; round < opts.rounds && !bench::interrupted(); ++round) {
    std::map<std::string, double> echo_rate, handshake_rate;
    for (std::size_t k = 0; k < servers.size(); ++k) {
      const std::string variant = k == round % 2 ? "tether-tls" : "asio-ssl";
      auto& server = servers.at(variant);
      const auto echo =
          bench::echo::tls_ping_pong(server.port, server.process.pid(), opts.warm_up_round_trips, opts.duration);
      const auto handshake = bench::echo::handshakes(server.port, server.process.pid(), opts.duration);
      rates[variant].push_back(echo_rate[variant] = echo.round_trips_per_second);
      cpu[variant].push_back(echo.server_cpu_microseconds);
      handshake_rates[variant].push_back(handshake_rate[variant] = handshake.handshakes_per_second);
      handshake_cpu[variant].push_back(handshake.server_cpu_microseconds);
    }
    echo_ratios.push_back(echo_rate["tether-tls"] / echo_rate["asio-ssl"]);
    handshake_ratios.push_back(handshake_rate["tether-tls"] / handshake_rate["asio-ssl"]);
  }
  for (auto& [variant, server] : servers)
    server.process.stop(0ms);
  fmt::print("\nTLS: tether (tls_codec<line_codec>, 4 strategies) against plain Asio (asio::ssl::stream), the same "
             "OpenSSL context\n(TLS 1.3, P-256 certificate), client and server on CPU{}, {} rounds, medians\n",
             server_cpu, echo_ratios.size());
  fmt::print("  {:<11} {:>14} {:>15} {:>13} {:>17}\n", "server", "round trips/s", "server CPU us", "handshakes/s",
             "CPU us/handshake");
  for (const char* variant : {"tether-tls", "asio-ssl"})
    fmt::print("  {:<11} {:>14.0f} {:>15.2f} {:>13.0f} {:>17.1f}\n", variant, bench::median(rates[variant]),
               bench::median(cpu[variant]), bench::median(handshake_rates[variant]),
               bench::median(handshake_cpu[variant]));
  const double echo_ratio = bench::median(echo_ratios);
  fmt::print("  tether/asio-ssl: echo {:.3f}, handshakes {:.3f} (medians of per-round ratios)\n", echo_ratio,
             bench::median(handshake_ratios));
  fmt::print("  goal tether >= 0.97x plain Asio over TLS: {:.3f} -> {}\n", echo_ratio, goal_text(echo_ratio >= 0.97));
}

// Instructions the server executes in user space while echoing `messages` round trips, connection setup and
// shutdown included; nullopt where valgrind is missing or the run failed.
std::optional<double> callgrind_instructions(const std::string& variant, std::size_t messages) {
  const auto file = std::filesystem::temp_directory_path() /
                    fmt::format("tether-bench-callgrind-{}-{}-{}.out", ::getpid(), variant, messages);
  {
    auto server = start_server({"valgrind", "-q", "--tool=callgrind", "--callgrind-out-file=" + file.string(),
                                bench::self_executable(), "serve", "--variant", variant},
                               60s);
    bench::echo::exact_round_trips(server.port, messages);
    server.process.stop(0ms, 60s);
  }
  std::ifstream profile{file};
  std::optional<double> total;
  for (std::string line; std::getline(profile, line);) {
    if (line.starts_with("summary:") || (!total && line.starts_with("totals:")))
      total = std::stod(line.substr(line.find(':') + 1));
  }
  std::filesystem::remove(file);
  return total;
}

void run_callgrind(const options& opts) {
  if (std::system("command -v valgrind >/dev/null 2>&1") != 0) {
    fmt::print("\ninstructions per message: SKIPPED (valgrind is not installed)\n");
    return;
  }
  bench::pin_to_cpu(0);
  fmt::print("\nServer user-space instructions per echoed message (callgrind Ir, 1 connection ping-pong;\n"
             "(Ir at {} + {} messages - Ir at {}) / {}, so setup and shutdown cancel out)\n",
             opts.callgrind_base_messages, opts.callgrind_extra_messages, opts.callgrind_base_messages,
             opts.callgrind_extra_messages);
  std::map<std::string, double> per_message;
  for (const char* variant : variants) {
    if (bench::interrupted())
      return;
    const auto base = callgrind_instructions(variant, opts.callgrind_base_messages);
    const auto more = callgrind_instructions(variant, opts.callgrind_base_messages + opts.callgrind_extra_messages);
    if (!base || !more) {
      fmt::print("  {:<8} FAILED (no callgrind totals)\n", variant);
      continue;
    }
    per_message[variant] = (*more - *base) / static_cast<double>(opts.callgrind_extra_messages);
  }
  for (const auto& [variant, instructions] : per_message)
    fmt::print("  {:<8} {:>8.0f} instructions/message\n", variant, instructions);
  if (per_message.contains("tether") && per_message.contains("asio")) {
    const double extra = per_message["tether"] - per_message["asio"];
    fmt::print("  tether - asio: {:+.0f} instructions/message ({:.2f}x asio's user-space instructions)\n", extra,
               per_message["tether"] / per_message["asio"]);
  }
}

// System calls per echoed message under the many-connection load, counted with strace -c: the kernel side of
// the cost, which callgrind does not see. The tracer slows the server down, but not what it calls per message.
void run_syscall_count(const options& opts) {
  if (std::system("command -v strace >/dev/null 2>&1") != 0) {
    fmt::print("\nsystem calls per message: SKIPPED (strace is not installed)\n");
    return;
  }
  bench::pin_to_cpu(0);
  fmt::print("\nServer system calls per echoed message (strace -c, {} connections, one message in flight each)\n",
             opts.connections);
  fmt::print("  {:<8} {:>8} {:>8} {:>11} {:>11} {:>8}\n", "server", "read", "write", "epoll_ctl", "epoll_wait", "all");
  for (const char* variant : variants) {
    if (bench::interrupted())
      return;
    const auto file = std::filesystem::temp_directory_path() /
                      fmt::format("tether-bench-strace-{}-{}.out", ::getpid(), variant);
    std::uint64_t echoed = 0;
    {
      auto server = start_server({"strace", "-f", "-c", "-o", file.string(), bench::self_executable(), "serve",
                                  "--variant", variant},
                                 10s);
      echoed = bench::echo::one_in_flight_each(server.port, server.process.pid(), opts.connections,
                                               opts.flood_warm_up, opts.duration)
                   .echoed;
      // SIGTERM to strace would only detach it; the traced server must end for strace to write its summary.
      for (const pid_t traced : bench::children_of(server.process.pid()))
        ::kill(traced, SIGTERM);
      server.process.stop(10s);
    }
    std::map<std::string, double> calls;
    std::ifstream summary{file};
    for (std::string line; std::getline(summary, line);) {
      std::istringstream fields{line};
      std::vector<std::string> words{std::istream_iterator<std::string>{fields}, {}};
      if (words.size() >= 5 && bench::parse_integer<std::uint64_t>(words[3]))
        calls[words.back()] += static_cast<double>(*bench::parse_integer<std::uint64_t>(words[3]));
    }
    std::filesystem::remove(file);
    const double n = static_cast<double>(std::max<std::uint64_t>(echoed, 1));
    const auto per = [&](std::initializer_list<const char*> names) {
      double total = 0;
      for (const char* name : names)
        total += calls[name];
      return total / n;
    };
    fmt::print("  {:<8} {:>8.2f} {:>8.2f} {:>11.2f} {:>11.2f} {:>8.2f}\n", variant,
               per({"read", "recvfrom", "recvmsg", "readv"}), per({"write", "sendto", "sendmsg", "writev"}),
               per({"epoll_ctl"}), per({"epoll_wait", "epoll_pwait"}), per({"total"}));
  }
}

int drive(const options& opts) {
  bench::begin_driver();
  const std::string self = bench::self_executable();
  std::map<std::string, running_server> servers;
  for (const char* variant : variants)
    servers.emplace(variant, start_server({self, "serve", "--variant", variant}, 10s));

  fmt::print("Echo overhead: 64-byte newline-terminated messages over loopback, TCP_NODELAY on both ends.\n"
             "Servers pinned to CPU{}; tether runs line_codec with tcp_keepalive, user_timeout, heartbeat and\n"
             "idle_reaper active (bounds beyond the run). Ratios are medians of per-round ratios.\n",
             server_cpu);
  for (const auto& what : bench::echo::four_loads(opts.connections)) {
    if (bench::interrupted())
      break;
    run_scenario(what, opts, servers);
  }
  for (auto& [variant, server] : servers)
    server.process.stop(0ms);
  servers.clear();
  if (!bench::interrupted())
    run_websocket_comparison(opts);
  if (!bench::interrupted())
    run_tls_comparison(opts);
  if (opts.callgrind && !bench::interrupted())
    run_callgrind(opts);
  if (opts.syscalls && !bench::interrupted())
    run_syscall_count(opts);
  return bench::interrupted() ? 130 : 0;
}

int serve(const std::string& variant) {
  if (variant == "tether")
    return bench::echo::serve_tether(tether::line_codec{});
  if (variant == "tether-websocket")
    return bench::echo::serve_tether(tether::websocket_codec{.path = ""});
  if (variant == "tether-tls")
    return bench::echo::serve_tether_tls();
  if (variant == "asio")
    return bench::echo::serve_asio();
  if (variant == "asio-ssl")
    return bench::echo::serve_asio_ssl();
  if (variant == "epoll")
    return bench::echo::serve_epoll();
  throw bench::usage_error{"--variant is one of tether, tether-websocket, tether-tls, asio, asio-ssl, epoll"};
}

} // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1 && std::string_view{argv[1]} == "serve") {
      bench::flags given{argc, argv, 2};
      const std::string variant = given.text("--variant", "");
      given.finish();
      return serve(variant);
    }
    bench::flags given{argc, argv};
    options opts;
    if (given.has("--quick")) {
      opts.rounds = 1;
      opts.duration = 300ms;
      opts.warm_up_round_trips = 200;
      opts.flood_warm_up = 100ms;
      opts.callgrind_base_messages = 200;
      opts.callgrind_extra_messages = 1000;
    }
    opts.rounds = given.integer("--rounds", opts.rounds);
    opts.duration = given.duration("--duration", opts.duration);
    opts.connections = given.integer("--connections", opts.connections);
    opts.callgrind = !given.has("--no-callgrind");
    opts.syscalls = !given.has("--no-strace");
    given.finish();
    if (opts.rounds == 0 || opts.connections == 0 || opts.duration.count() <= 0)
      throw bench::usage_error{"--rounds, --connections and --duration must be positive"};
    return drive(opts);
  } catch (const bench::usage_error& e) {
    fmt::print(stderr,
               "tether_bench_echo: {}\nusage: tether_bench_echo [--quick] [--rounds N] [--duration 2s] "
               "[--connections 100] [--no-callgrind] [--no-strace]\n",
               e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tether_bench_echo: {}\n", e.what());
    return 1;
  }
}

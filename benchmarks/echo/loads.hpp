// The four echo loads (1 and many connections, client on the server's core or the other one), and how one
// server is started and measured under one of them: shared by the echo benchmark and the peer comparison, so
// that both put every server under exactly the same load.
#pragma once

#include "clients.hpp"

#include "../support/flags.hpp"
#include "../support/process.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench::echo {

inline constexpr int server_cpu = 1;

struct running_server {
  child_process process;
  std::uint16_t port;
};

// Runs `command` pinned to server_cpu and waits for the "port N" line every echo server prints once it listens.
inline running_server start_server(const std::vector<std::string>& command, std::chrono::milliseconds patience) {
  child_process process{command, server_cpu};
  const auto line = process.expect("port ", patience);
  if (!line)
    throw std::runtime_error{"the echo server did not start: " + command.front()};
  const auto port = parse_integer<std::uint16_t>(line->substr(5));
  if (!port)
    throw std::runtime_error{"the echo server announced a bad port: " + *line};
  return {std::move(process), *port};
}

struct load {
  std::string title;
  int client_cpu;
  bool many_connections;
};

inline std::vector<load> four_loads(std::size_t connections) {
  const std::string flood = fmt::format("{} connections, one message in flight each", connections);
  return {
      {"1 connection ping-pong, same core (client and server on CPU1)", 1, false},
      {"1 connection ping-pong, cross core (client CPU0, server CPU1)", 0, false},
      {flood + ", cross core (client CPU0, server CPU1)", 0, true},
      {flood + ", same core (client and server on CPU1)", 1, true},
  };
}

struct load_settings {
  std::size_t connections;
  std::size_t warm_up_round_trips;
  std::chrono::milliseconds flood_warm_up;
  std::chrono::milliseconds duration;
};

// One figure per server per round: throughput, latency (ping-pong only) and server CPU per message.
struct sample {
  double throughput = 0;
  double p50 = 0;
  double p99 = 0;
  double server_cpu = 0;
};

// Measures `server` under `what`; the caller has pinned itself to what.client_cpu.
inline sample measure(const load& what, const running_server& server, const load_settings& settings) {
  if (what.many_connections) {
    const auto r = one_in_flight_each(server.port, server.process.pid(), settings.connections, settings.flood_warm_up,
                                      settings.duration);
    return {r.messages_per_second, 0, 0, r.server_cpu_microseconds};
  }
  const auto r = ping_pong(server.port, server.process.pid(), settings.warm_up_round_trips, settings.duration);
  return {r.round_trips_per_second, r.p50_microseconds, r.p99_microseconds, r.server_cpu_microseconds};
}

inline std::string goal_text(bool met) { return met ? "met" : "NOT met"; }

} // namespace bench::echo

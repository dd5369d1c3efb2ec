// Attacks on a listener kept as tests: connection churn that resets or closes at once, by the ten thousand, and
// pings in bursts that try to stay under a rate limit counted per ping.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"
#include "process_usage.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>

#include <asio.hpp>
#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::run_until;
using tether::test::scaled;

using tether::test::heap_in_use;
using tether::test::open_descriptors;
using tether::test::resident_bytes;

TEST_CASE("hostile: 20,000 connections that reset or close at once leave descriptors and heap where they were") {
  asio::io_context io;
  using policy = tether::liveness<tether::heartbeat, tether::idle_reaper>;
  tether::listener<tether::line_codec, policy> server{
      io, {.backlog = 4096}, {}, tether::liveness{tether::heartbeat{.interval = 5s, .timeout = 5s},
                                                  tether::idle_reaper{.read_idle = 30s}}};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  std::size_t rejected = 0;
  server.on_reject([&](const auto&, close_reason, std::string_view) { ++rejected; });
  REQUIRE_FALSE(server.start());
  run_until(io, [] { return false; }, 50ms);
  const std::size_t descriptors_before = open_descriptors();
  const std::size_t heap_before = heap_in_use();
  const std::size_t resident_before = resident_bytes();

  // Sanitizers make each connection several times dearer: the count shrinks with the time scale.
  const std::size_t total = 20'000 / static_cast<std::size_t>(tether::test::time_scale);
  constexpr std::size_t batch = 250;
  std::size_t resets = 0;
  for (std::size_t done = 0; done < total; done += batch) {
    std::vector<asio::ip::tcp::socket> clients;
    for (std::size_t i = 0; i < batch; ++i) {
      clients.emplace_back(io);
      clients.back().connect(server.local_endpoint());
    }
    // Half leave with a reset, half with a FIN, before the server has even accepted them.
    for (std::size_t i = 0; i < clients.size(); ++i) {
      if (i % 2 == 0) {
        tether::set_option(clients[i], tether::sockopt::linger::abortive());
        ++resets;
      }
      clients[i].close();
    }
    REQUIRE(run_until(io, [&] { return server.stats().closed_total() == done + batch; }, scaled(10'000ms)));
  }
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
  run_until(io, [] { return false; }, 100ms);
  const std::size_t descriptors_after = open_descriptors();
  const std::size_t heap_after = heap_in_use();
  const std::size_t resident_after = resident_bytes();
  fmt::print("CHURN | {} connections, {} reset and {} closed at once | peer_reset {} peer_closed {} | descriptors "
             "{} -> {} | heap {} -> {} B | RSS {} -> {} KiB\n",
             total, resets, total - resets, server.stats().closed(close_reason::peer_reset),
             server.stats().closed(close_reason::peer_closed), descriptors_before, descriptors_after, heap_before,
             heap_after, resident_before / 1024, resident_after / 1024);
  CHECK(rejected == 0);
  CHECK(server.stats().opened() == total);
  CHECK(server.stats().closed(close_reason::peer_reset) == resets);
  CHECK(server.stats().closed(close_reason::peer_closed) == total - resets);
  CHECK(server.stats().closed(close_reason::io_error) == 0);
  CHECK(descriptors_after == descriptors_before);
  CHECK(heap_after <= heap_before + 256 * 1024);
  // Sanitizers hold freed memory back (ASan's quarantine), so only the plain build's RSS says anything here.
  if (tether::test::time_scale == 1)
    CHECK(resident_after <= resident_before + 8 * 1024 * 1024);
}

TEST_CASE("hostile: pings in bursts of three every 0.7 s are closed as a ping flood, a peer pinging once a second "
          "is not") {
  asio::io_context io;
  tether::listener<tether::line_codec, tether::liveness<tether::heartbeat>> server{
      io, {}, {}, tether::liveness{tether::heartbeat{.interval = 10s, .timeout = 5s, .min_peer_ping_interval = 1s,
                                                     .max_ping_strikes = 3}}};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  std::optional<close_reason> flooder_closed;
  std::optional<std::uint16_t> flooder_port;
  std::optional<close_reason> polite_closed;
  server.on_close([&](auto& conn, close_reason why) {
    (conn.remote().port() == flooder_port ? flooder_closed : polite_closed) = why;
  });
  REQUIRE_FALSE(server.start());

  tether::test::raw_peer flooder{io};
  tether::test::raw_peer polite{io};
  flooder.connect(server.local_endpoint());
  polite.connect(server.local_endpoint());
  flooder_port = flooder.socket.local_endpoint().port();
  flooder.start_reading();
  polite.start_reading();

  // 4.3 pings a second in bursts: each burst alone stays within max_ping_strikes.
  const auto started = std::chrono::steady_clock::now();
  int pings = 0;
  for (int burst = 0; burst < 20 && !flooder_closed; ++burst) {
    for (int i = 0; i < 3; ++i, ++pings)
      flooder.write("\x10ping " + std::to_string(pings) + "\n");
    if (burst % 2 == 0)
      polite.write("\x10ping polite " + std::to_string(burst) + "\n");
    run_until(io, [&] { return flooder_closed.has_value(); }, 700ms);
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  fmt::print("PING FLOOD | bursts of 3 every 700 ms | closed after {} pings, {} ms\n", pings, took.count());
  REQUIRE(flooder_closed.has_value());
  CHECK(*flooder_closed == close_reason::ping_flood);
  CHECK(pings <= 12);
  // The polite peer pinged every 1.4 s meanwhile: within the rate, still served.
  polite.write("still here\n");
  REQUIRE(run_until(io, [&] { return polite.received.find("still here\n") != std::string::npos; }));
  CHECK_FALSE(polite_closed.has_value());
}

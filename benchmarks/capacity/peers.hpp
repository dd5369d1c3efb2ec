// The two kinds of child process of the capacity benchmark.
//
// A server is one tether::listener shard on a port it shares with the other servers through SO_REUSEPORT, with
// heartbeat and the idle reaper active. A client opens its share of the connections from a source address of
// its own (tether::bind_source_address, so the kernel picks the port at connect time), serves each one as a
// tether::connection that answers the servers' pings, and otherwise stays silent.
//
// Both answer "report" on stdin with one line of counters (see the report structs) and end on end of file.
#pragma once

#include "../support/control.hpp"
#include "../support/procfs.hpp"

#include <tether/close_reason.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/connector.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/listener.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace bench::capacity {

using close_counts = std::array<std::uint64_t, tether::close_reason_count>;

struct server_config {
  std::uint16_t port = 0;
  std::chrono::milliseconds heartbeat_interval{};
  std::chrono::milliseconds heartbeat_timeout{};
  std::chrono::milliseconds read_idle{};
};

struct server_report {
  std::int64_t live = 0;
  std::uint64_t opened = 0;
  std::uint64_t heartbeats = 0;
  std::int64_t slowest_heartbeat_us = 0;  // the longest ping-to-pong round trip since the last report
  std::int64_t heap = 0;
  std::int64_t rss = 0;
  close_counts closes{};
};

struct client_report {
  std::uint64_t connected = 0;
  std::uint64_t failed = 0;
  bool finished = false;  // every attempt has completed, one way or the other
  std::int64_t rss = 0;
  std::int64_t rss_before_connecting = 0;
  close_counts closes{};
  std::string first_error;
};

inline std::string counts_text(const close_counts& counts) { return fmt::format("{}", fmt::join(counts, " ")); }

inline void read_counts(std::istream& in, close_counts& counts) {
  for (auto& count : counts)
    in >> count;
}

inline server_report parse_server_report(const std::string& line) {
  server_report r;
  std::istringstream in{line.substr(line.find(' ') + 1)};
  in >> r.live >> r.opened >> r.heartbeats >> r.slowest_heartbeat_us >> r.heap >> r.rss;
  read_counts(in, r.closes);
  return r;
}

inline client_report parse_client_report(const std::string& line) {
  client_report r;
  std::istringstream in{line.substr(line.find(' ') + 1)};
  int finished = 0;
  in >> r.connected >> r.failed >> finished >> r.rss >> r.rss_before_connecting;
  read_counts(in, r.closes);
  r.finished = finished != 0;
  std::getline(in >> std::ws, r.first_error);
  return r;
}

inline int serve(const server_config& config) {
  asio::io_context io{1};
  const auto liveness =
      tether::liveness{tether::heartbeat{.interval = config.heartbeat_interval, .timeout = config.heartbeat_timeout},
                       tether::idle_reaper{.read_idle = config.read_idle}};
  tether::listener server{
      io, {.port = config.port, .backlog = 4096, .reuse_port = true}, tether::line_codec{}, liveness};
  std::chrono::microseconds slowest_heartbeat{0};
  server.on_heartbeat(
      [&](auto&, std::chrono::microseconds rtt) { slowest_heartbeat = std::max(slowest_heartbeat, rtt); });
  if (auto ec = server.start()) {
    fmt::print(stderr, "capacity server cannot listen on port {}: {}\n", config.port, ec.message());
    return 1;
  }
  const auto report = [&] {
    const auto& stats = server.stats();
    close_counts closes{};
    for (std::size_t r = 0; r < closes.size(); ++r)
      closes[r] = stats.closed(static_cast<tether::close_reason>(r));
    const auto slowest = std::exchange(slowest_heartbeat, std::chrono::microseconds{0});
    return fmt::format("report {} {} {} {} {} {} {}", server.connections(), stats.opened(), stats.heartbeats(),
                       slowest.count(), heap_in_use(), resident_bytes(::getpid()), counts_text(closes));
  };
  control_channel control{io, [&](std::string_view) { control_channel::reply(report()); }, [&] { io.stop(); }};
  control.start();
  control_channel::reply(fmt::format("port {}", server.local_endpoint().port()));
  io.run();
  return 0;
}

struct client_config {
  std::uint16_t port = 0;
  std::vector<asio::ip::address> sources;  // taken in turn, one per connect
  std::size_t connections = 0;
  std::size_t concurrency = 256;  // connects in flight at once
  // Connects started per second, 0 for as fast as the concurrency allows. The kernel completes handshakes
  // faster than the servers accept and start connections, and a server that falls seconds behind answers
  // pongs seconds late: pacing keeps the setup from measuring that overload instead of holding connections.
  double rate = 0;
};

class client {
public:
  using connection_type = tether::connection<tether::line_codec>;

  client(asio::io_context& io, const client_config& config)
      : io_(io), config_(config), wheel_(io), pacer_(io), rss_before_connecting_(resident_bytes(::getpid())) {
    settings_.on_close = [this](connection_type&, tether::close_reason why) {
      ++closes_[static_cast<std::size_t>(why)];
    };
    held_.reserve(config.connections);
  }

  void start() {
    if (config_.rate > 0)
      pace();
    else
      connect_more();
  }

  std::string report() const {
    const bool finished = connected_ + failed_ == config_.connections;
    return fmt::format("report {} {} {} {} {} {} {}", connected_, failed_, finished ? 1 : 0, resident_bytes(::getpid()),
                       rss_before_connecting_, counts_text(closes_), first_error_);
  }

  // Resets every connection (no TIME_WAIT is left behind) without reporting it as a close.
  void abort_all() {
    pacer_.cancel();
    settings_.on_close = nullptr;
    for (const auto& connection : held_)
      connection->abort();
  }

private:
  static constexpr std::chrono::milliseconds pacing_step{10};

  void pace() {
    pacer_.expires_after(pacing_step);
    pacer_.async_wait([this](const std::error_code& ec) {
      if (ec || started_ == config_.connections)
        return;
      const double per_step = config_.rate * std::chrono::duration<double>(pacing_step).count();
      allowance_ = std::min(allowance_ + per_step, std::max(1.0, 10 * per_step));
      connect_more();
      pace();
    });
  }

  void connect_more() {
    while (in_flight_ < config_.concurrency && started_ < config_.connections &&
           (config_.rate == 0 || allowance_ >= 1)) {
      allowance_ -= config_.rate == 0 ? 0 : 1;
      ++started_;
      ++in_flight_;
      auto socket = std::make_shared<connection_type::socket_type>(io_);
      std::error_code ec;
      socket->open(asio::ip::tcp::v4(), ec);
      if (!ec)
        ec = tether::bind_source_address(*socket, config_.sources[started_ % config_.sources.size()]);
      if (ec) {
        finished_attempt(ec);
        continue;
      }
      const asio::ip::tcp::endpoint server{asio::ip::address_v4::loopback(), config_.port};
      socket->async_connect(server, [this, socket](const std::error_code& error) {
        if (error) {
          finished_attempt(error);
        } else {
          held_.push_back(connection_type::create(std::move(*socket), settings_, wheel_));
          held_.back()->start();
          finished_attempt({});
        }
        connect_more();
      });
    }
  }

  void finished_attempt(const std::error_code& ec) {
    --in_flight_;
    if (!ec) {
      ++connected_;
      return;
    }
    ++failed_;
    if (first_error_.empty())
      first_error_ = ec.message();
  }

  asio::io_context& io_;
  client_config config_;
  tether::timer_wheel wheel_;
  asio::steady_timer pacer_;
  double allowance_ = 0;  // connects the pace allows right now
  std::int64_t rss_before_connecting_;
  tether::connection_context<tether::line_codec> settings_;
  std::vector<std::shared_ptr<connection_type>> held_;
  std::size_t started_ = 0;
  std::size_t in_flight_ = 0;
  std::uint64_t connected_ = 0;
  std::uint64_t failed_ = 0;
  close_counts closes_{};
  std::string first_error_;
};

inline int connect(const client_config& config) {
  asio::io_context io{1};
  client load{io, config};
  control_channel control{io, [&](std::string_view) { control_channel::reply(load.report()); },
                          [&] {
                            load.abort_all();
                            io.stop();
                          }};
  control.start();
  load.start();
  io.run();
  return 0;
}

} // namespace bench::capacity

// tether in about fifteen seconds: one process, loopback only, no privileges. An echo server with all four
// liveness strategies serves a handful of clients while the narration says what tether does and why:
// effective socket options, heartbeats and their round trips, a client that hangs caught by heartbeat, a
// silent client reaped by the idle reaper, a client over the per-address limit refused, a graceful stop,
// and the closes per reason.
#include <tether/tether.hpp>

#include <asio.hpp>
#include <fmt/core.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

const auto demo_start = std::chrono::steady_clock::now();

template <class... Args>
void say(std::string_view who, fmt::format_string<Args...> text, Args&&... args) {
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - demo_start).count();
  fmt::print("[{:6.2f}s] {:<9} {}\n", elapsed, who, fmt::format(text, std::forward<Args>(args)...));
  std::fflush(stdout);
}

std::string microseconds_text(std::chrono::microseconds rtt) { return fmt::format("{} us", rtt.count()); }

// Server-side strategies, kept short so the whole story fits in seconds. In production these are minutes.
const auto server_liveness = tether::liveness{
    tether::tcp_keepalive{.idle = 10s, .interval = 2s, .count = 3},  // kernel probes: dead hosts, warm NAT state
    tether::user_timeout{16s},                                       // data unacknowledged this long: dead
    tether::heartbeat{.interval = 1s, .timeout = 1s},                // app ping/pong: also catches hung peers
    tether::idle_reaper{.read_idle = 4s},                            // clients that send nothing are closed
};
using server_type = tether::listener<tether::line_codec, decltype(server_liveness)>;

const auto client_liveness = tether::liveness{tether::heartbeat{.interval = 2s, .timeout = 1s}};
using client_type = tether::connector<tether::line_codec, decltype(client_liveness)>;

// Names connections by the client's source port, so server-side lines say which client they are about.
std::map<std::uint16_t, std::string> client_names;

std::string name_of(const asio::ip::tcp::endpoint& remote) {
  const auto found = client_names.find(remote.port());
  return found == client_names.end() ? fmt::format("{}", remote.address().to_string()) : found->second;
}

// A client that talks every 700 ms and prints each echo's round trip.
struct chatty_client {
  chatty_client(asio::io_context& io, std::string client_name, std::uint16_t port, const char* source)
      : name(std::move(client_name)),
        connector(io,
                  {.service = std::to_string(port), .bind_address = asio::ip::make_address(source),
                   .wheel = {.tick = 20ms}},
                  tether::line_codec{}, client_liveness),
        pacer(io) {
    connector.on_connect([this](auto& conn) {
      client_names[conn.socket().local_endpoint().port()] = name;
      say(name, "connected from {}, will send a line every 700 ms", conn.socket().local_endpoint().address().to_string());
      send_next(conn);
    });
    connector.on_message([this](auto& conn, std::string_view echo) {
      const auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - sent_at);
      if (++echoes <= 2)
        say(name, "echo \"{}\" in {}", echo, microseconds_text(rtt));
      pacer.expires_after(700ms);
      pacer.async_wait([this, weak = conn.weak_from_this()](std::error_code ec) {
        if (auto alive = weak.lock(); !ec && alive && alive->is_open())
          send_next(*alive);
      });
    });
    connector.on_heartbeat([this](auto&, std::chrono::microseconds rtt) {
      say(name, "heartbeat answered by the server in {}", microseconds_text(rtt));
    });
    connector.on_goaway([this](auto& conn, std::string_view) {
      say(name, "server says goaway: finishing and closing");
      pacer.cancel();
      conn.close();
    });
    connector.on_close([this](auto&, tether::close_reason why) { say(name, "closed: {}", why); });
    if (const std::error_code ec = connector.start())
      say(name, "cannot start: {}", ec.message());
  }

  void send_next(client_type::connection_type& conn) {
    sent_at = std::chrono::steady_clock::now();
    conn.send(fmt::format("message {} from {}", echoes + 1, name));
  }

  std::string name;
  client_type connector;
  asio::steady_timer pacer;
  std::chrono::steady_clock::time_point sent_at{};
  int echoes = 0;
};

} // namespace

int main() {
  asio::io_context io;
  server_type server{io,
                     {.max_per_address = 2, .wheel = {.tick = 20ms}},
                     tether::line_codec{},
                     server_liveness};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  server.on_accept([](auto& conn) {
    tether::sockopt::keepalive keepalive;
    tether::sockopt::user_timeout user_timeout;
    tether::get_option(conn.socket(), keepalive);
    tether::get_option(conn.socket(), user_timeout);
    say("server", "accepted {}: kernel holds {} {}", name_of(conn.remote()), keepalive, user_timeout);
  });
  server.on_heartbeat([](auto& conn, std::chrono::microseconds rtt) {
    say("server", "pinged {} after 1 s without a byte from it: pong in {}", name_of(conn.remote()), microseconds_text(rtt));
  });
  server.on_reject([](const asio::ip::tcp::endpoint& remote, tether::close_reason why, std::string_view) {
    say("server", "refused a connection from {}: {} (max_per_address = 2)", remote.address().to_string(), why);
  });
  server.on_close([](auto& conn, tether::close_reason why) {
    const auto silent_for = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                                  conn.last_activity().received);
    say("server", "closed {}: {} ({}; last byte {} ms ago)", name_of(conn.remote()), why, conn.close_detail(),
        silent_for.count());
  });
  if (auto ec = server.start()) {
    fmt::print(stderr, "demo: cannot listen on loopback: {}\n", ec.message());
    return 1;
  }
  const auto port = server.local_endpoint().port();
  say("server", "listening on {} with heartbeat every 1s (timeout 1s), idle reaper at 4s without data",
      fmt::format("127.0.0.1:{}", port));

  // Two well-behaved clients on their own source addresses.
  std::vector<std::unique_ptr<chatty_client>> clients;
  clients.push_back(std::make_unique<chatty_client>(io, "alice", port, "127.0.0.2"));
  clients.push_back(std::make_unique<chatty_client>(io, "bob", port, "127.0.0.3"));

  // A silent client: answers pings (so heartbeat sees it alive) but never sends data.
  client_type silent{io, {.service = std::to_string(port), .bind_address = asio::ip::make_address("127.0.0.4")},
                     tether::line_codec{}, client_liveness};
  silent.on_connect([](auto& conn) {
    client_names[conn.socket().local_endpoint().port()] = "silent";
    say("silent", "connected; will answer pings but never send data");
  });
  silent.on_close([](auto&, tether::close_reason why) { say("silent", "closed: {}", why); });
  silent.start();

  // A client that hangs: it sends once, then never reads again, like a process stuck in a deadlock. Its kernel
  // keeps acknowledging, so TCP keepalive would see nothing wrong; only the heartbeat can tell.
  asio::ip::tcp::socket frozen{io};
  frozen.open(asio::ip::tcp::v4());
  frozen.bind({asio::ip::make_address("127.0.0.5"), 0});
  frozen.connect({asio::ip::address_v4::loopback(), port});
  client_names[frozen.local_endpoint().port()] = "frozen";
  say("frozen", "connected; sends one line and then hangs (stops reading, never answers pings)");
  asio::write(frozen, asio::buffer(std::string_view{"hello from frozen\n"}));

  // A crowd from one address: the third connection is over max_per_address.
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> crowd;
  asio::steady_timer crowd_timer{io, 5s};
  crowd_timer.async_wait([&](std::error_code) {
    say("crowd", "opening 3 connections from 127.0.0.6");
    for (int i = 0; i < 3; ++i) {
      auto& socket = *crowd.emplace_back(std::make_unique<asio::ip::tcp::socket>(io));
      socket.open(asio::ip::tcp::v4());
      socket.bind({asio::ip::make_address("127.0.0.6"), 0});
      client_names[socket.local_endpoint().port()] = fmt::format("crowd #{}", i + 1);
      socket.connect({asio::ip::address_v4::loopback(), port});
    }
  });

  asio::steady_timer stop_timer{io, 9s};
  stop_timer.async_wait([&](std::error_code) {
    say("server", "graceful stop: goaway to every client, 3 s for them to finish");
    silent.stop();
    crowd.clear();
    frozen.close();
    server.stop(3s);
  });
  io.run();

  const auto& stats = server.stats();
  fmt::print("\nclose reasons at the server ({} connections served):\n", stats.opened());
  for (std::size_t i = 0; i < tether::close_reason_count; ++i) {
    const auto reason = static_cast<tether::close_reason>(i);
    if (const auto count = stats.closed(reason))
      fmt::print("  {:<18} {}\n", tether::close_reason_name(reason), count);
  }
  fmt::print("heartbeat round trips answered: {} (fastest {} us)\n", stats.heartbeats(), stats.min_heartbeat_rtt().count());
  return 0;
}

// The smallest real use of tether as a package: a loopback echo server and a client, both with a liveness
// composition, exchanging one line. Exit status 0 when the echo comes back and keepalive reads back as set.
#include <tether/tether.hpp>

#include <asio.hpp>
#include <fmt/core.h>

int main() {
  using namespace std::chrono_literals;
  asio::io_context io;

  tether::listener server{io, {}, tether::line_codec{},
                          tether::liveness{tether::heartbeat{.interval = 5s, .timeout = 2s}, tether::idle_reaper{.all_idle = 10s}}};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  if (auto ec = server.start()) {
    fmt::print(stderr, "listen: {}\n", ec.message());
    return 1;
  }

  const tether::tcp_keepalive keepalive{.idle = 30s, .interval = 5s, .count = 4};
  tether::connector client{io, {.service = std::to_string(server.local_endpoint().port())}, tether::line_codec{},
                           tether::liveness{keepalive, tether::user_timeout_for(keepalive)}};
  bool ok = false;
  client.on_connect([&](auto& conn) {
    tether::sockopt::keepalive effective;
    tether::get_option(conn.socket(), effective);
    fmt::print("tether {}.{}.{}: client {}\n", TETHER_VERSION_MAJOR, TETHER_VERSION_MINOR, TETHER_VERSION_PATCH, effective);
    ok = effective == tether::sockopt::keepalive{.idle = keepalive.idle, .interval = keepalive.interval, .count = keepalive.count};
    conn.send("ping over tether");
  });
  client.on_message([&](auto& conn, std::string_view echo) {
    ok = ok && echo == "ping over tether";
    fmt::print("echo: {}\n", echo);
    conn.close();
    server.stop(1s);
  });
  client.on_connect_error([&](const std::error_code& ec, auto) {
    fmt::print(stderr, "connect: {}\n", ec.message());
    server.stop(0s);
  });
  client.start();
  io.run_for(10s);
  return ok ? 0 : 1;
}

#include <tether/tether.hpp>
#include <asio/signal_set.hpp>
using namespace std::chrono_literals;

int main() {
  asio::io_context io;
  auto liveness = tether::liveness{
      tether::tcp_keepalive{.idle = 60s, .interval = 10s, .count = 3},  // kernel probes, below the NAT timeout
      tether::user_timeout{90s},                                        // bound unacknowledged data
      tether::heartbeat{.interval = 15s, .timeout = 5s},                // app ping/pong: catches hung peers
      tether::idle_reaper{.read_idle = 5min},                           // close clients that say nothing
  };
  // Listens on loopback (127.0.0.1) unless .address says otherwise, e.g. asio::ip::address_v4::any().
  tether::listener server{io, {.port = 7000, .max_connections = 50'000, .max_per_address = 64},
                          tether::line_codec{}, liveness};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  server.on_close([](auto& conn, tether::close_reason why) {
    fmt::print("{} closed: {} ({})\n", conn.remote().address().to_string(), why, conn.close_detail());
  });
  if (auto ec = server.start()) return fmt::print("cannot listen: {}\n", ec.message()), 1;
  asio::signal_set signals{io, SIGINT, SIGTERM};
  signals.async_wait([&](auto, int) { server.stop(10s); });
  io.run();
}

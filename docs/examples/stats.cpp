// tether::stats: opens, closes per reason, live connections and heartbeat round trips, in relaxed atomics so
// one object can be shared by every thread of a server. Listeners and connectors own one (stats()); plain
// connections report into the one their settings point at.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/format.hpp>
#include <tether/stats.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <fmt/core.h>

#include <chrono>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}
} // namespace

int main() {
  tether::stats counters;

  // Connections count themselves when settings.stats points here.
  {
    asio::io_context io;
    tether::timer_wheel wheel{io};
    asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
    asio::ip::tcp::socket peer{io};
    peer.connect(acceptor.local_endpoint());
    tether::connection_context<tether::line_codec> settings{.stats = &counters};
    auto served = tether::connection<tether::line_codec>::create(acceptor.accept(io), settings, wheel);
    served->start();
    check(counters.live() == 1, "one live connection");
    served->close();  // graceful: completes when the peer's FIN arrives
    peer.shutdown(asio::socket_base::shutdown_send);
    io.run();
  }
  check(counters.opened() == 1 && counters.live() == 0, "opened and closed");
  check(counters.closed(tether::close_reason::local_close) == 1, "counted under local_close");

  // The recording side is thread-safe: several threads may record into one object.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&counters, t] {
      for (int i = 0; i < 1000; ++i) {
        counters.record_open();
        counters.record_close(t % 2 == 0 ? tether::close_reason::idle_timeout : tether::close_reason::peer_closed);
      }
      counters.record_heartbeat_rtt(std::chrono::microseconds{100 + t});
    });
  }
  for (auto& thread : threads)
    thread.join();
  counters.record_rejected(tether::close_reason::limit_exceeded);  // counted, never live

  fmt::print("{}\n", counters);
  check(counters.opened() == 4001 && counters.live() == 0, "opens and live");
  check(counters.closed_total() == 4002, "every close and the rejection");
  check(counters.closed(tether::close_reason::limit_exceeded) == 1, "rejection");
  check(counters.heartbeats() == 4 && counters.min_heartbeat_rtt() == 100us, "heartbeat round trips");
  return failures == 0 ? 0 : 1;
}

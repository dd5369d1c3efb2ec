// tether::listener: accepts and serves connections, enforces connection limits, and stops with a deadline.
// Three raw clients connect to a listener that admits two; then the listener stops, sends goaway, and resets
// the clients that ignore it at the deadline. io.run() returns by itself once everything is closed.
#include <tether/codec/line_codec.hpp>
#include <tether/format.hpp>
#include <tether/listener.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <fmt/core.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
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

// A plain socket that sends one line and records everything until the connection ends.
struct raw_client {
  explicit raw_client(asio::io_context& io) : socket(io) {}
  void start(const asio::ip::tcp::endpoint& server) {
    socket.connect(server);
    asio::write(socket, asio::buffer(std::string_view{"hi\n"}));
    read();
  }
  void read() {
    socket.async_read_some(asio::buffer(buffer), [this](std::error_code ec, std::size_t n) {
      if (ec) {
        ended = ec;
        return;
      }
      received.append(buffer.data(), n);
      read();
    });
  }
  asio::ip::tcp::socket socket;
  std::array<char, 256> buffer{};
  std::string received;
  std::error_code ended;
};
} // namespace

int main() {
  asio::io_context io;
  tether::listener server{io, {.port = 0, .max_connections = 2}, tether::line_codec{}};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  std::vector<tether::close_reason> rejections;
  server.on_reject([&](const asio::ip::tcp::endpoint&, tether::close_reason why, std::string_view detail) {
    rejections.push_back(why);
    fmt::print("refused: {} ({})\n", why, detail);  // "over max_connections"
  });
  std::vector<tether::close_reason> closes;
  server.on_close([&](auto&, tether::close_reason why) { closes.push_back(why); });
  if (auto ec = server.start()) {
    fmt::print("cannot listen: {}\n", ec.message());
    return 1;
  }
  fmt::print("listening on {}\n", server.local_endpoint().port());

  std::vector<std::unique_ptr<raw_client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<raw_client>(io));
    clients.back()->start(server.local_endpoint());
  }

  // Stop after a moment; connections still open 100 ms later are aborted.
  asio::steady_timer later{io, 150ms};
  later.async_wait([&](std::error_code) {
    fmt::print("before stop: {} (live connections {})\n", server.stats(), server.connections());
    server.stop(100ms);
  });
  io.run();

  int echoed = 0;
  for (const auto& client : clients) {
    fmt::print("client got {:?}, then {}\n", client->received, client->ended.message());
    echoed += client->received.starts_with("hi\n") ? 1 : 0;
  }
  fmt::print("after stop: {}\n", server.stats());
  check(echoed == 2, "two clients served");
  check(rejections == std::vector<tether::close_reason>{tether::close_reason::limit_exceeded}, "one refused");
  check(closes == std::vector<tether::close_reason>(2, tether::close_reason::shutdown), "both closed by stop");
  check(server.stats().closed(tether::close_reason::limit_exceeded) == 1 && server.stats().opened() == 2, "stats");
  check(server.connections() == 0, "nothing left");
  return failures == 0 ? 0 : 1;
}

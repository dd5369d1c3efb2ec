// tether::connector: the client side. Connects within a deadline, retries with jittered exponential backoff,
// and runs the connection. Here the server's port refuses connections until the second failure, then listens.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/connector.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <fmt/core.h>

#include <memory>
#include <optional>
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

using served_connection = tether::connection<tether::line_codec>;
} // namespace

int main() {
  asio::io_context io;
  // Bound but not listening: connects are refused, and the port stays ours for later.
  asio::ip::tcp::acceptor port_holder{io};
  port_holder.open(asio::ip::tcp::v4());
  port_holder.bind({asio::ip::address_v4::loopback(), 0});

  tether::timer_wheel server_wheel{io};
  tether::connection_context<tether::line_codec> server_settings;
  server_settings.on_message = [](served_connection& conn, std::string_view line) { conn.send(line); };
  std::shared_ptr<served_connection> served;

  tether::connector client{io,
                           {.host = "127.0.0.1",
                            .service = std::to_string(port_holder.local_endpoint().port()),
                            .connect_timeout = 1s,
                            .reconnect = true,
                            .retry = {.initial = 10ms, .maximum = 40ms}},
                           tether::line_codec{}};

  std::vector<std::error_code> refusals;
  client.on_connect_error([&](const std::error_code& ec, std::chrono::milliseconds next_retry) {
    fmt::print("attempt {} failed: {}; next in {} ms\n", client.attempts(), ec.message(), next_retry.count());
    refusals.push_back(ec);
    if (refusals.size() == 2) {
      port_holder.listen();
      port_holder.async_accept(io, [&](std::error_code ec2, served_connection::socket_type socket) {
        if (ec2)
          return;
        served = served_connection::create(std::move(socket), server_settings, server_wheel);
        served->start();
      });
    }
  });
  std::size_t attempts_when_connected = 99;
  client.on_connect([&](auto& conn) {
    attempts_when_connected = client.attempts();  // reset to 0 by a success
    conn.send("hello");
  });
  std::optional<std::string> answer;
  client.on_message([&](auto&, std::string_view line) {
    answer = line;
    client.stop();  // no more attempts; the connection closes gracefully
  });
  std::optional<tether::close_reason> closed;
  client.on_close([&](auto&, tether::close_reason why) { closed = why; });

  client.start();
  io.run();  // returns once nothing is left: stopped connector, closed connections

  check(refusals.size() == 2 && refusals.front() == asio::error::connection_refused, "two refusals");
  check(attempts_when_connected == 0, "attempts reset on success");
  check(answer == "hello", "echoed");
  check(closed == tether::close_reason::local_close, "stop() closes with local_close");
  check(client.current() == nullptr, "no current connection");
  check(client.stats().opened() == 1 && client.stats().live() == 0, "stats");
  return failures == 0 ? 0 : 1;
}

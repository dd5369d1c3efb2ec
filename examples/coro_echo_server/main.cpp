// The echo server written with coroutines: one coroutine per connection that co_awaits each message
// (connection::async_receive) and its echo (connection::async_send), next to the callback style of echo_server.
//
//   coro_echo_server --listen 127.0.0.1:7000 [--heartbeat 15s,5s]
//
// Prints "listening ADDR:PORT", one line per connection that ends with its close reason, and stops on SIGINT or
// SIGTERM (goaway, then connections still open 5s later are reset). Exit status 1 when it cannot listen, 2 for a
// bad command line.
#include "common/cli.hpp"
#include "common/socket_report.hpp"
#include "common/with_error.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/format.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/heartbeat.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/signal_set.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include <cstdio>
#include <memory>
#include <string>

namespace {

using policy = tether::liveness<tether::heartbeat>;
using server_type = tether::listener<tether::line_codec, policy>;
using connection = server_type::connection_type;
using examples::with_error;

// Echoes until the connection ends; the error of the receive that ends the loop is the close reason.
asio::awaitable<void> echo(std::shared_ptr<connection> conn) {
  std::size_t echoed = 0;
  for (;;) {
    auto [ec, message] = co_await conn->async_receive(with_error);
    if (ec) {
      fmt::print("closed {} after {} echoes: {} ({})\n", examples::endpoint_text(conn->remote()), echoed,
                 ec.message(), conn->close_detail());
      std::fflush(stdout);
      co_return;
    }
    auto [sent] = co_await conn->async_send(message, with_error);
    if (!sent)
      ++echoed;
  }
}

} // namespace

int main(int argc, char** argv) {
  asio::ip::tcp::endpoint listen;
  tether::heartbeat heartbeat{.interval = std::chrono::seconds{15}, .timeout = std::chrono::seconds{5}};
  try {
    bool listen_given = false;
    examples::flag_parser flags;
    flags.value("--listen", "ADDR:PORT", [&](std::string_view v) {
      const auto endpoint = examples::parse_endpoint(v);
      listen_given = endpoint.has_value();
      listen = endpoint.value_or(listen);
      return listen_given;
    });
    flags.value("--heartbeat", "INTERVAL,TIMEOUT (e.g. 15s,5s)", [&](std::string_view v) {
      const auto parsed = examples::parse_heartbeat(v);
      heartbeat = parsed.value_or(heartbeat);
      return parsed.has_value();
    });
    flags.parse(argc, argv);
    if (!listen_given)
      throw examples::usage_error{"--listen is required: --listen ADDR:PORT"};
  } catch (const examples::usage_error& e) {
    fmt::print(stderr, "coro_echo_server: {}\n", e.what());
    return 2;
  }

  asio::io_context io;
  server_type server{io, {.address = listen.address(), .port = listen.port()}, tether::line_codec{}, policy{heartbeat}};
  // on_message stays unset: every message waits for the connection's coroutine to receive it.
  server.on_accept([](connection& conn) { asio::co_spawn(conn.get_executor(), echo(conn.shared_from_this()), asio::detached); });
  if (const auto ec = server.start()) {
    fmt::print(stderr, "coro_echo_server: cannot listen on {}: {}\n", examples::endpoint_text(listen), ec.message());
    return 1;
  }
  fmt::print("listening {}\n", examples::endpoint_text(server.local_endpoint()));
  std::fflush(stdout);
  asio::signal_set signals{io, SIGINT, SIGTERM};
  signals.async_wait([&](const std::error_code& ec, int) {
    if (!ec)
      server.stop(std::chrono::seconds{5});
  });
  io.run();
  fmt::print("stopped: {}\n", server.stats());
  return 0;
}

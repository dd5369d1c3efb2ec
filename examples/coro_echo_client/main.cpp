// The echo client written with coroutines: co_await the connection (connector::async_connect), each send
// (connection::async_send) and each echo (connection::async_receive), next to the callback style of echo_client.
//
//   coro_echo_client --connect 127.0.0.1:7000 [--messages 3] [--message hello] [--heartbeat 15s,5s]
//
// Prints one line per echo with its round trip, then closes gracefully. Exit status 0 when every message came
// back unchanged, 1 when the connection failed or an echo was wrong, 2 for a bad command line.
#include "common/cli.hpp"
#include "common/socket_report.hpp"
#include "common/with_error.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connector.hpp>
#include <tether/liveness/heartbeat.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/core.h>

#include <chrono>
#include <string>

namespace {

using policy = tether::liveness<tether::heartbeat>;
using client_type = tether::connector<tether::line_codec, policy>;
using examples::with_error;

struct run_options {
  asio::ip::tcp::endpoint server;
  std::size_t messages = 3;
  std::string message = "hello";
  tether::heartbeat heartbeat{.interval = std::chrono::seconds{15}, .timeout = std::chrono::seconds{5}};
};

asio::awaitable<int> run(client_type& client, const run_options& options) {
  auto [connect_error, conn] = co_await client.async_connect(with_error);
  if (connect_error) {
    fmt::print(stderr, "coro_echo_client: cannot connect to {}: {}\n", examples::endpoint_text(options.server),
               connect_error.message());
    co_return 1;
  }
  for (std::size_t i = 1; i <= options.messages; ++i) {
    const auto sent_at = std::chrono::steady_clock::now();
    auto [send_error] = co_await conn->async_send(options.message, with_error);
    auto [receive_error, echo] = co_await conn->async_receive(with_error);
    if (send_error || receive_error || echo != options.message) {
      fmt::print(stderr, "coro_echo_client: message {} failed: {}\n", i,
                 (send_error ? send_error : receive_error ? receive_error : std::make_error_code(std::errc::bad_message)).message());
      co_return 1;
    }
    const auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - sent_at);
    fmt::print("echo {}: {} ({} us)\n", i, echo, rtt.count());
  }
  conn->close();
  auto [end, nothing] = co_await conn->async_receive(with_error);
  fmt::print("closed: {}\n", end.message());
  co_return 0;
}

} // namespace

int main(int argc, char** argv) {
  run_options options;
  try {
    bool connect_given = false;
    examples::flag_parser flags;
    flags.value("--connect", "ADDR:PORT", [&](std::string_view v) {
      const auto endpoint = examples::parse_endpoint(v);
      connect_given = endpoint.has_value();
      options.server = endpoint.value_or(options.server);
      return connect_given;
    });
    flags.value("--messages", "N (1..1000000)", [&](std::string_view v) {
      const auto n = examples::parse_integer<std::size_t>(v);
      options.messages = n.value_or(0);
      return n && *n >= 1 && *n <= 1'000'000;
    });
    flags.value("--message", "TEXT (one line)", [&](std::string_view v) {
      options.message = v;
      return !v.empty() && v.find('\n') == std::string_view::npos;
    });
    flags.value("--heartbeat", "INTERVAL,TIMEOUT (e.g. 15s,5s)", [&](std::string_view v) {
      const auto parsed = examples::parse_heartbeat(v);
      options.heartbeat = parsed.value_or(options.heartbeat);
      return parsed.has_value();
    });
    flags.parse(argc, argv);
    if (!connect_given)
      throw examples::usage_error{"--connect is required: --connect ADDR:PORT"};
  } catch (const examples::usage_error& e) {
    fmt::print(stderr, "coro_echo_client: {}\n", e.what());
    return 2;
  }

  asio::io_context io;
  client_type client{io,
                     {.host = options.server.address().to_string(), .service = std::to_string(options.server.port())},
                     tether::line_codec{}, policy{options.heartbeat}};
  int status = 1;
  asio::co_spawn(io, run(client, options), [&](std::exception_ptr, int result) { status = result; });
  io.run();
  return status;
}

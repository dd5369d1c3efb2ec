// tether::connection: one TCP connection with framing, liveness and a close reason. Two of them talk over
// loopback here: the client sends, the server echoes, and the client closes gracefully once it has its answers.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/error.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <fmt/core.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

using connection = tether::connection<tether::line_codec>;
} // namespace

int main() {
  asio::io_context io;
  tether::timer_wheel wheel{io};  // one per io_context thread, shared by its connections
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};

  tether::connection_context<tether::line_codec> server_settings;
  server_settings.on_message = [](connection& conn, std::string_view line) { conn.send(line); };
  std::optional<tether::close_reason> server_closed;
  server_settings.on_close = [&](connection&, tether::close_reason why) { server_closed = why; };

  // Over the high-water mark, refuse the send instead of closing with backpressure.
  tether::connection_context<tether::line_codec> client_settings{
      .options = {.write_high_water = 64 * 1024, .on_overflow = tether::connection_options::overflow::refuse}};
  std::vector<std::string> echoes;
  client_settings.on_message = [&](connection& conn, std::string_view line) {
    echoes.emplace_back(line);
    if (echoes.size() == 3)
      conn.close();  // graceful: flush, FIN, wait for the peer's end (options.graceful_close_timeout)
  };
  std::optional<tether::close_reason> client_closed;
  client_settings.on_close = [&](connection& conn, tether::close_reason why) {
    client_closed = why;
    fmt::print("client closed: {} ({})\n", tether::close_reason_name(why), conn.close_detail());
  };

  connection::socket_type socket{io};
  socket.connect(acceptor.local_endpoint());
  auto client = connection::create(std::move(socket), client_settings, wheel);
  auto server = connection::create(acceptor.accept(io), server_settings, wheel);
  server->start();
  client->start();
  fmt::print("client connected to {}\n", client->remote().port());

  check(!client->send("hello"), "send queues one frame");
  bool written = false;
  client->async_send("world", [&](std::error_code ec) { written = !ec; });  // completes once handed to the kernel
  check(client->send("two\nlines") == tether::error::frame_not_encodable, "the codec cannot carry a newline");
  check(client->send(std::string(100 * 1024, 'x')) == tether::error::write_queue_full, "over the high-water mark");
  check(client->is_open(), "refusing leaves the connection open");

  // From another thread, go through the io_context: a connection is not thread-safe.
  asio::post(io, [client] { client->send("posted"); });

  io.run();  // returns once both sides have closed

  check(echoes == std::vector<std::string>{"hello", "world", "posted"}, "echoes in order");
  check(written, "async_send completed");
  check(client_closed == tether::close_reason::local_close, "this side closed");
  check(server_closed == tether::close_reason::peer_closed, "the server saw the peer close");
  check(client->send("late") == tether::error::connection_not_open, "nothing is sent after a close");
  return failures == 0 ? 0 : 1;
}

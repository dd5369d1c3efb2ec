// Tunes a loopback connection's liveness options and prints what the kernel made of each request,
// including the ones it refuses and why.
#include <tether/tether.hpp>

#include <asio.hpp>
#include <fmt/core.h>

using namespace std::chrono_literals;
namespace sockopt = tether::sockopt;

template <class Value>
void apply(asio::ip::tcp::socket& socket, const Value& wanted) {
  Value effective{};
  auto ec = tether::set_option(socket, wanted);
  if (ec) {
    fmt::print("  {:<46} refused: {}\n", fmt::format("{}", wanted), ec.message());
    return;
  }
  ec = tether::get_option(socket, effective);
  fmt::print("  {:<46} kernel holds {}\n", fmt::format("{}", wanted), ec ? ec.message() : fmt::format("{}", effective));
}

int main() {
  asio::io_context io;
  asio::ip::tcp::acceptor listener{io, {asio::ip::address_v4::loopback(), 0}};
  asio::ip::tcp::socket client{io};
  client.connect(listener.local_endpoint());
  auto server = listener.accept();

  fmt::print("connection {} -> {}\n", client.local_endpoint().port(), client.remote_endpoint().port());
  apply(client, sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 3});
  apply(client, sockopt::keepalive{.idle = 1500ms, .interval = 500ms, .count = 5});
  apply(client, sockopt::keepalive{.idle = 12h, .interval = 10s, .count = 3});
  apply(client, sockopt::user_timeout{30s});
  apply(client, sockopt::linger::abortive());
  apply(client, sockopt::no_delay{true});
  apply(client, sockopt::send_buffer_size{64 * 1024});
  apply(client, sockopt::reuse_port{true});

  asio::write(client, asio::buffer("hello\n", 6));
  char reply[6];
  asio::read(server, asio::buffer(reply));
  sockopt::tcp_info info;
  if (auto ec = tether::get_option(client, info))
    fmt::print("  tcp_info: {}\n", ec.message());
  else
    fmt::print("  {}\n", info);
}

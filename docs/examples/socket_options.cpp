// tether::set_option and tether::get_option on a loopback connection: each option value, the value the
// kernel holds afterwards, a refused request that leaves the socket as it was, and the TCP_INFO snapshot.
#include <tether/error.hpp>
#include <tether/format.hpp>
#include <tether/socket_options.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <fmt/core.h>

#include <string_view>

using namespace std::chrono_literals;
namespace sockopt = tether::sockopt;

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
  asio::io_context io;
  asio::ip::tcp::acceptor listener{io, {asio::ip::address_v4::loopback(), 0}};
  asio::ip::tcp::socket client{io};
  client.connect(listener.local_endpoint());
  asio::ip::tcp::socket server = listener.accept();

  // Durations are rounded up to the platform's unit (seconds for keepalive), never shortened.
  std::error_code ec = tether::set_option(client, sockopt::keepalive{.idle = 1500ms, .interval = 10s, .count = 3});
  sockopt::keepalive keepalive;
  if (!ec)
    ec = tether::get_option(client, keepalive);
  fmt::print("keepalive: {}\n", ec ? ec.message() : fmt::format("{}", keepalive));
  check(!ec && keepalive == sockopt::keepalive{.idle = 2s, .interval = 10s, .count = 3}, "keepalive read back");

  // Out of range: refused before the kernel is asked; the message names the accepted range.
  ec = tether::set_option(client, sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 0});
  fmt::print("count 0: {}\n", ec.message());
  check(ec == tether::error::keepalive_count_out_of_range && ec == std::errc::invalid_argument, "count 0 refused");
  sockopt::keepalive unchanged;
  check(!tether::get_option(client, unchanged) && unchanged == keepalive, "a refused request changes nothing");

  // A native handle works too; it must be an lvalue.
  const tether::native_socket handle = client.native_handle();
  ec = tether::set_option(handle, sockopt::user_timeout{1500ms});
  sockopt::user_timeout user_timeout;
  if (!ec)
    ec = tether::get_option(handle, user_timeout);
  fmt::print("user timeout: {}\n", ec ? ec.message() : fmt::format("{}", user_timeout));
  check((!ec && user_timeout.timeout >= 1500ms) || ec == std::errc::not_supported, "user timeout");

  for (const auto value : {sockopt::no_delay{true}, sockopt::no_delay{false}}) {
    sockopt::no_delay read{};
    check(!tether::set_option(client, value) && !tether::get_option(client, read) && read == value, "no_delay");
  }

  // Linux reports twice the requested buffer size (its bookkeeping); the getter shows what the kernel holds.
  sockopt::send_buffer_size send_buffer;
  check(!tether::set_option(client, sockopt::send_buffer_size{64 * 1024}) && !tether::get_option(client, send_buffer) &&
            send_buffer.bytes >= 64 * 1024,
        "send buffer");
  fmt::print("{}\n", send_buffer);

  // Listener-side options go on the acceptor, before bind().
  asio::ip::tcp::acceptor second{io, asio::ip::tcp::v4()};
  sockopt::reuse_address reuse_address{false};
  check(!tether::set_option(second, sockopt::reuse_address{}) && !tether::get_option(second, reuse_address) &&
            reuse_address.enabled,
        "reuse_address");
  ec = tether::set_option(second, sockopt::reuse_port{});
  fmt::print("reuse_port: {}\n", ec ? ec.message() : "on");  // not_supported where the kernel does not balance
  check(!ec || ec == std::errc::not_supported, "reuse_port");

  // After some traffic the kernel has an RTT estimate.
  for (int round = 0; round < 3; ++round) {
    char byte = 'x';
    asio::write(client, asio::buffer(&byte, 1));
    asio::read(server, asio::buffer(&byte, 1));
    asio::write(server, asio::buffer(&byte, 1));
    asio::read(client, asio::buffer(&byte, 1));
  }
  sockopt::tcp_info info;
  ec = tether::get_option(client, info);
  fmt::print("{}\n", ec ? ec.message() : fmt::format("{}", info));
  check((!ec && info.state == sockopt::tcp_state::established && info.rtt > 0us) || ec == std::errc::not_supported,
        "tcp_info");

  // Abortive close: the peer sees a reset and this side keeps no TIME_WAIT entry.
  sockopt::linger linger;
  check(!tether::set_option(client, sockopt::linger::timed(5s)) && !tether::get_option(client, linger) &&
            linger == sockopt::linger::timed(5s),
        "timed linger");
  check(!tether::set_option(client, sockopt::linger::abortive()), "abortive linger");
  client.close();
  char byte = 0;
  server.read_some(asio::buffer(&byte, 1), ec);
  fmt::print("peer after abortive close: {}\n", ec.message());
  check(ec == asio::error::connection_reset, "abortive close resets");
  return failures == 0 ? 0 : 1;
}

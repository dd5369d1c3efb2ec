// tether::error: codes that name the refused field and the platform's accepted range, and compare equal to
// the portable std::errc conditions, so callers can handle them generically or precisely.
#include <tether/error.hpp>
#include <tether/socket_options.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <fmt/core.h>

#include <string_view>
#include <system_error>

using namespace std::chrono_literals;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

// Generic handling through the portable conditions.
std::string_view classify(const std::error_code& ec) {
  if (!ec)
    return "ok";
  if (ec == std::errc::invalid_argument)
    return "bad value: fix the configuration";
  if (ec == std::errc::not_supported)
    return "the platform lacks it: degrade or refuse to start";
  if (ec == std::errc::no_buffer_space)
    return "the peer is not keeping up";
  if (ec == std::errc::not_connected)
    return "the connection is closing or closed";
  return "system error";
}
} // namespace

int main() {
  asio::io_context io;
  asio::ip::tcp::socket socket{io, asio::ip::tcp::v4()};

  const std::error_code refused = tether::set_option(socket, tether::sockopt::keepalive{.idle = 0s});
  fmt::print("[{}] {} -> {}\n", refused.category().name(), refused.message(), classify(refused));
  check(refused == tether::error::keepalive_idle_out_of_range, "precise comparison");
  check(refused == std::errc::invalid_argument, "portable condition");
  check(std::string_view{refused.category().name()} == "tether", "category name");

  for (const tether::error code : {tether::error::tcp_info_not_supported, tether::error::write_queue_full,
                                   tether::error::connection_not_open, tether::error::frame_not_encodable}) {
    const std::error_code ec = tether::make_error_code(code);
    fmt::print("{:>3} {} -> {}\n", ec.value(), ec.message(), classify(ec));
  }
  check(std::error_code{tether::error::write_queue_full} == std::errc::no_buffer_space, "write_queue_full");
  check(std::error_code{tether::error::connection_not_open} == std::errc::not_connected, "connection_not_open");
  check(std::error_code{tether::error::reuse_port_not_supported} == std::errc::not_supported, "not_supported");

  // System errors pass through unchanged, in the system category (the codes Asio reports).
  socket.close();
  const std::error_code closed = tether::set_option(socket, tether::sockopt::no_delay{});
  fmt::print("[{}] {}\n", closed.category().name(), closed.message());
  check(closed && closed.category() == std::system_category(), "system error on a closed socket");
  return failures == 0 ? 0 : 1;
}

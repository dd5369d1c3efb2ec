// tether::close_reason: every close carries exactly one. A reason has a stable name, converts to a
// std::error_code (category "tether.close_reason"), and the connection keeps the detail text and the socket
// error behind it.
#include <tether/close_reason.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/format.hpp>
#include <tether/socket_options.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <fmt/core.h>

#include <optional>
#include <string_view>

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
  for (std::size_t i = 0; i < tether::close_reason_count; ++i) {
    const auto reason = static_cast<tether::close_reason>(i);
    const std::error_code as_error = reason;  // implicit: close_reason is an error-code enum
    fmt::print("{:>2} {:<18} {}\n", i, tether::close_reason_name(reason), as_error.category().name());
    check(as_error.message() == tether::close_reason_name(reason), "message is the name");
  }

  // A peer that resets: the reason, the detail and the socket error are all kept on the connection.
  asio::io_context io;
  tether::timer_wheel wheel{io};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  asio::ip::tcp::socket peer{io};
  peer.connect(acceptor.local_endpoint());

  using connection = tether::connection<tether::line_codec>;
  tether::connection_context<tether::line_codec> settings;
  std::optional<tether::close_reason> seen;
  settings.on_close = [&](connection& conn, tether::close_reason why) {
    seen = why;
    fmt::print("closed: {} ({}; socket error: {})\n", why, conn.close_detail(), conn.close_error().message());
  };
  auto served = connection::create(acceptor.accept(io), settings, wheel);
  served->start();

  tether::set_option(peer, tether::sockopt::linger::abortive());
  peer.close();
  io.run();

  check(seen == tether::close_reason::peer_reset, "peer_reset reported");
  check(served->reason() == tether::close_reason::peer_reset, "reason() after on_close");
  check(served->close_error() == asio::error::connection_reset, "close_error() keeps the socket error");
  check(served->is_closed(), "closed");
  return failures == 0 ? 0 : 1;
}

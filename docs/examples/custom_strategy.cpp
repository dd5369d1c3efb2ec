// A liveness strategy of your own. A strategy is an aggregate of settings plus a per-connection `state`; it
// may set socket options when a connection starts (apply) and may watch the connection through deadlines
// (next_deadline / on_deadline). Here: a maximum connection age, and socket buffer sizes as a kernel strategy.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/strategy.hpp>
#include <tether/socket_options.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <fmt/core.h>

#include <chrono>
#include <optional>
#include <string_view>

using namespace std::chrono_literals;
using tether::liveness_clock;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

// Closes a connection once it is `limit` old, however busy: spreads long-lived clients over restarted or
// rebalanced servers. Strategies get no call when the connection opens, so the age is taken at the first
// check, which is asked for at once (a deadline in the past fires at the wheel's next tick).
struct max_age {
  std::chrono::milliseconds limit{std::chrono::hours{1}};

  struct state {
    liveness_clock::time_point opened{};
  };
  static constexpr bool needs_control_frames = false;

  liveness_clock::time_point next_deadline(const state& s, const tether::activity& seen) const noexcept {
    return s.opened == liveness_clock::time_point{} ? seen.received : s.opened + limit;
  }

  // Called whenever the connection's node fires, also for other strategies' deadlines: check our own.
  tether::verdict on_deadline(state& s, const tether::activity&, liveness_clock::time_point now) const noexcept {
    if (s.opened == liveness_clock::time_point{}) {
      s.opened = now;
      return tether::verdict::none();
    }
    if (now >= s.opened + limit)
      return tether::verdict::close(tether::close_reason::local_close, "maximum connection age reached");
    return tether::verdict::none();
  }
};

// A kernel strategy: socket options applied by start(); a refusal closes the connection with io_error.
struct socket_buffers {
  int bytes = 256 * 1024;

  struct state {};
  static constexpr bool needs_control_frames = false;

  std::error_code apply(tether::native_socket socket) const noexcept {
    if (auto ec = tether::set_option(socket, tether::sockopt::send_buffer_size{bytes}))
      return ec;
    return tether::set_option(socket, tether::sockopt::receive_buffer_size{bytes});
  }
};

static_assert(tether::timed_strategy<max_age> && !tether::socket_option_strategy<max_age>);
static_assert(tether::socket_option_strategy<socket_buffers> && !tether::timed_strategy<socket_buffers>);
} // namespace

int main() {
  using policy = tether::liveness<max_age, socket_buffers>;
  using connection = tether::connection<tether::line_codec, policy>;

  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  tether::connection_settings<tether::line_codec, policy> settings{
      .liveness = policy{max_age{.limit = 100ms}, socket_buffers{.bytes = 128 * 1024}}};
  std::optional<liveness_clock::time_point> closed_at;
  settings.on_close = [&](connection& conn, tether::close_reason why) {
    closed_at = liveness_clock::now();
    fmt::print("closed: {} ({})\n", tether::name(why), conn.close_detail());
  };

  asio::ip::tcp::socket peer{io};
  peer.connect(acceptor.local_endpoint());
  const auto started = liveness_clock::now();
  auto conn = connection::create(acceptor.accept(io), settings, wheel);
  conn->start();

  tether::sockopt::send_buffer_size buffer;
  check(!tether::get_option(conn->socket(), buffer) && buffer.bytes >= 128 * 1024, "socket_buffers applied");

  io.run_for(300ms);
  check(closed_at.has_value() && conn->close_detail() == "maximum connection age reached", "closed by max_age");
  if (closed_at) {
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(*closed_at - started);
    fmt::print("closed at age {} ms\n", age.count());
    check(age >= 100ms, "not before the limit");
  }
  // local_close is not abortive: the peer sees an orderly end of stream.
  char byte = 0;
  std::error_code ec;
  peer.read_some(asio::buffer(&byte, 1), ec);
  check(ec == asio::error::eof, "peer sees FIN");
  return failures == 0 ? 0 : 1;
}

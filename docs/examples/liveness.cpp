// tether::liveness<S...>: the strategies a connection runs, chosen by type at compile time and tuned by value
// at run time. Kernel strategies (tcp_keepalive, user_timeout) set socket options when the connection starts;
// timed strategies (heartbeat, idle_reaper) share the connection's single timer-wheel node.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>
#include <tether/socket_options.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <fmt/core.h>

#include <optional>
#include <string_view>

using namespace std::chrono_literals;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

// Kernel probes after 60 s idle, every 10 s, 3 of them: an idle dead peer is found within 90 s, and
// user_timeout_for() gives unacknowledged data the same 90 s.
constexpr tether::tcp_keepalive keepalive{.idle = 60s, .interval = 10s, .count = 3};
static_assert(keepalive.detection_bound() == 90s);
static_assert(tether::user_timeout_for(keepalive).timeout == 90s);

using full_policy = tether::liveness<tether::tcp_keepalive, tether::user_timeout, tether::heartbeat, tether::idle_reaper>;
static_assert(full_policy::has<tether::heartbeat> && full_policy::timed && full_policy::needs_control_frames);
// Kernel-only policies keep no timer node and need no control frames, so any codec will do.
static_assert(!tether::liveness<tether::tcp_keepalive, tether::user_timeout>::timed);
static_assert(!tether::liveness<tether::tcp_keepalive, tether::user_timeout>::needs_control_frames);
} // namespace

int main() {
  const auto policy = tether::liveness{keepalive, tether::user_timeout_for(keepalive),
                                       tether::heartbeat{.interval = 15s, .timeout = 5s},
                                       tether::idle_reaper{.read_idle = 5min}};
  static_assert(std::is_same_v<decltype(policy), const full_policy>);
  check(policy.get<tether::heartbeat>().interval == 15s, "strategies stay readable");

  asio::io_context io;
  tether::timer_wheel wheel{io};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  using connection = tether::connection<tether::line_codec, full_policy>;
  tether::connection_context<tether::line_codec, full_policy> settings{.liveness = policy};
  std::optional<tether::close_reason> closed;
  settings.on_close = [&](connection&, tether::close_reason why) { closed = why; };

  asio::ip::tcp::socket peer{io};
  peer.connect(acceptor.local_endpoint());
  auto conn = connection::create(acceptor.accept(io), settings, wheel);
  conn->start();
  check(conn->is_open(), "started");

  // What the kernel holds after start().
  tether::sockopt::keepalive applied_keepalive;
  tether::sockopt::user_timeout applied_user_timeout;
  check(!tether::get_option(conn->socket(), applied_keepalive) &&
            applied_keepalive == tether::sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 3},
        "keepalive applied");
  const std::error_code ut = tether::get_option(conn->socket(), applied_user_timeout);
  check((!ut && applied_user_timeout.timeout == 90s) || ut == std::errc::not_supported, "user timeout applied");
  fmt::print("applied: keepalive idle {}s interval {}s count {}; user timeout {} ms\n",
             applied_keepalive.idle.count() / 1000, applied_keepalive.interval.count() / 1000, applied_keepalive.count,
             applied_user_timeout.timeout.count());
  conn->abort();
  check(closed == tether::close_reason::local_close, "abort reports local_close");

  // A value the platform refuses ends the connection inside start(), with the option's error kept.
  using keepalive_only = tether::liveness<tether::tcp_keepalive>;
  tether::connection_context<tether::line_codec, keepalive_only> refused_settings{
      .liveness = keepalive_only{tether::tcp_keepalive{.idle = 60s, .interval = 10s, .count = 0}}};
  asio::ip::tcp::socket second_peer{io};
  second_peer.connect(acceptor.local_endpoint());
  auto refused = tether::connection<tether::line_codec, keepalive_only>::create(acceptor.accept(io), refused_settings, wheel);
  refused->start();
  fmt::print("refused: {} ({})\n", tether::close_reason_name(refused->reason()), refused->close_error().message());
  check(refused->is_closed() && refused->reason() == tether::close_reason::io_error, "io_error at start");
  check(refused->close_error() == tether::error::keepalive_count_out_of_range, "the refusal is kept");
  io.run_for(50ms);
  return failures == 0 ? 0 : 1;
}

// tether::heartbeat: in-band ping/pong. A ping goes out after `interval` without any received byte; a peer
// that sends neither a pong nor anything else within `timeout` is closed with heartbeat_timeout. Every tether
// connection over a control-frame codec answers pings by itself; a peer pinging too often is closed with
// ping_flood.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>
#include <fmt/core.h>

#include <chrono>
#include <optional>
#include <string_view>

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

using policy = tether::liveness<tether::heartbeat>;
using watched = tether::connection<tether::line_codec, policy>;
using plain = tether::connection<tether::line_codec>;
} // namespace

int main() {
  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  const tether::heartbeat fast{.interval = 50ms, .timeout = 50ms};

  // 1. A live tether peer answers, and each answer is a round-trip measurement.
  tether::stats counters;
  tether::connection_context<tether::line_codec, policy> pinging{.liveness = policy{fast}, .stats = &counters};
  int answered = 0;
  pinging.on_heartbeat = [&](watched&, std::chrono::microseconds) { ++answered; };
  tether::connection_context<tether::line_codec> answering;  // no heartbeat of its own: it still answers
  {
    watched::socket_type socket{io};
    socket.connect(acceptor.local_endpoint());
    auto client = watched::create(std::move(socket), pinging, wheel);
    auto server = plain::create(acceptor.accept(io), answering, wheel);
    server->start();
    client->start();
    io.run_for(250ms);
    const tether::heartbeat::state& rtt = client->liveness_state<tether::heartbeat>();  // through the policy
    fmt::print("{} pongs; rtt last {} us, min {} us, smoothed {} us\n", answered, rtt.last_rtt().count(),
               rtt.min_rtt().count(), rtt.smoothed_rtt().count());
    check(answered >= 3 && counters.heartbeats() == static_cast<std::uint64_t>(answered), "round trips measured");
    check(rtt.min_rtt().count() > 0 && rtt.min_rtt() <= rtt.last_rtt(), "min <= last");
    check(client->is_open() && server->is_open(), "both open");
    client->abort();
    server->abort();
  }

  // 2. A peer that never answers (a hung process looks the same) is closed after interval + timeout, counted
  // from the last byte received (here: the start), plus up to one wheel tick.
  std::optional<std::chrono::milliseconds> detected_after;
  tether::connection_context<tether::line_codec, policy> strict{.liveness = policy{fast}};
  strict.on_close = [&](watched& conn, tether::close_reason why) {
    if (why == tether::close_reason::heartbeat_timeout)
      detected_after = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - conn.last_activity().received);
    fmt::print("closed: {} ({})\n", tether::close_reason_name(why), conn.close_detail());
  };
  asio::ip::tcp::socket silent{io};
  silent.connect(acceptor.local_endpoint());
  auto watching = watched::create(acceptor.accept(io), strict, wheel);
  watching->start();
  io.restart();
  io.run_for(400ms);
  check(detected_after.has_value(), "heartbeat_timeout");
  if (detected_after) {
    fmt::print("detected {} ms after the last byte (interval + timeout = 100 ms, tick 10 ms)\n", detected_after->count());
    check(*detected_after >= fast.interval + fast.timeout, "never before interval + timeout");
    check(*detected_after <= fast.interval + fast.timeout + wheel.tick() + 250ms, "within the bound (with slack)");
  }

  // 3. A burst of max_ping_strikes pings passes; the next ping is answered with too_many_pings (a tether peer
  // slows down), and a peer that goes on overrunning the rate is closed.
  std::optional<tether::close_reason> flood_close;
  tether::connection_context<tether::line_codec, policy> guarded{
      .liveness = policy{tether::heartbeat{.interval = 10s, .min_peer_ping_interval = 1s, .max_ping_strikes = 3}}};
  guarded.on_close = [&](watched&, tether::close_reason why) { flood_close = why; };
  asio::ip::tcp::socket flooder{io};
  flooder.connect(acceptor.local_endpoint());
  auto guarding = watched::create(acceptor.accept(io), guarded, wheel);
  guarding->start();
  for (int ping = 1; ping <= 7; ++ping)
    asio::write(flooder, asio::buffer("\x10ping " + std::to_string(ping) + "\n"));
  io.restart();  // the io_context stopped when it last ran out of work
  io.run_for(100ms);
  check(flood_close == tether::close_reason::ping_flood, "ping_flood");
  return failures == 0 ? 0 : 1;
}

// tether::idle_reaper: closes connections that carried no application data for a while (idle_timeout, FIN).
// Only whole data frames count: control frames do not, and neither do bytes of a frame that never completes,
// so a peer trickling an endless line (slowloris) is reaped like a silent one.
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <fmt/core.h>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <string>
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

using policy = tether::liveness<tether::idle_reaper>;
using connection = tether::connection<tether::line_codec, policy>;

struct closing {
  tether::close_reason reason;
  std::string detail;
  std::chrono::milliseconds after;
};
} // namespace

int main() {
  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::address_v4::loopback(), 0}};
  const tether::idle_reaper reaper{.read_idle = 150ms};
  // An idle close is graceful: the peer gets FIN at read_idle, and the close completes when the peer closes too or,
  // as with these peers that never do, after graceful_close_timeout (shortened here).
  tether::connection_context<tether::line_codec, policy> settings{
      .liveness = policy{reaper}, .options = {.graceful_close_timeout = 50ms}};
  settings.on_message = [](connection&, std::string_view) {};

  const auto started = steady::now();
  std::map<const connection*, closing> closes;
  settings.on_close = [&](connection& conn, tether::close_reason why) {
    closes[&conn] = {why, std::string{conn.close_detail()},
                     std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started)};
  };

  std::array<asio::ip::tcp::socket, 3> peers{asio::ip::tcp::socket{io}, asio::ip::tcp::socket{io},
                                             asio::ip::tcp::socket{io}};
  std::array<std::shared_ptr<connection>, 3> served;
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].connect(acceptor.local_endpoint());
    served[i] = connection::create(acceptor.accept(io), settings, wheel);
    served[i]->start();
  }
  const auto& chatty = served[0];
  const auto& trickler = served[1];
  const auto& silent = served[2];

  // Every 30 ms: peer 0 sends a whole line, peer 1 one more byte of a line it never ends, peer 2 nothing.
  asio::steady_timer pacer{io};
  std::function<void()> pace = [&] {
    std::error_code ignored;
    asio::write(peers[0], asio::buffer(std::string_view{"still here\n"}), ignored);
    if (trickler->is_open())
      asio::write(peers[1], asio::buffer(std::string_view{"x"}), ignored);
    pacer.expires_after(30ms);
    pacer.async_wait([&](std::error_code ec) {
      if (!ec && steady::now() - started < 400ms)
        pace();
    });
  };
  pace();
  io.run_for(450ms);

  for (const auto& [conn, seen] : closes)
    fmt::print("{}: {} ({}) after {} ms\n", conn == trickler.get() ? "trickler" : "silent", tether::close_reason_name(seen.reason),
               seen.detail, seen.after.count());
  check(chatty->is_open(), "a peer sending whole lines is kept");
  for (const auto& reaped : {trickler, silent}) {
    check(closes.contains(reaped.get()), "reaped");
    if (closes.contains(reaped.get())) {
      const closing& seen = closes[reaped.get()];
      check(seen.reason == tether::close_reason::idle_timeout && seen.detail == "read idle", "idle_timeout, read idle");
      check(seen.after >= reaper.read_idle, "never before read_idle");
    }
  }
  chatty->abort();
  return failures == 0 ? 0 : 1;
}

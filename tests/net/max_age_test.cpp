// Maximum connection age on a listener: each connection's age drawn within its jitter and readable by handlers,
// a goaway at that age, the peer that leaves then closing with max_age, the peer that ignores it reset after the
// grace, and a reconnecting client moving on to a fresh connection each time.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/codec/websocket_codec.hpp>
#include <tether/connector.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/max_age.hpp>

#include <asio.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::run_until;
using tether::test::scaled;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr auto age = 400ms;
constexpr auto grace = 400ms;
constexpr auto tick = 20ms;

struct served {
  clock_type::time_point accepted;
  std::chrono::milliseconds remaining_at_accept{0};
  std::optional<close_reason> reason;
  std::string detail;
  clock_type::time_point closed;
  std::chrono::milliseconds drain_window{0};  // drain deadline minus the moment of the goaway, seen at close
};

template <class Codec>
using aged_listener = tether::listener<Codec, tether::liveness<tether::max_age>>;

// Records every connection's age, close and drain deadline, keyed by the client's port.
template <class Codec>
void watch(aged_listener<Codec>& server, std::map<std::uint16_t, served>& log) {
  server.on_accept([&log](auto& conn) {
    const auto& limit = conn.template liveness_state<tether::max_age>();
    served entry;
    entry.accepted = clock_type::now();
    entry.remaining_at_accept = limit.remaining_age(entry.accepted);
    log[conn.remote().port()] = entry;
  });
  server.on_close([&log](auto& conn, close_reason why) {
    auto& entry = log[conn.remote().port()];
    const auto& limit = conn.template liveness_state<tether::max_age>();
    entry.reason = why;
    entry.detail = conn.close_detail();
    entry.closed = clock_type::now();
    if (limit.draining())
      entry.drain_window = std::chrono::duration_cast<std::chrono::milliseconds>(limit.drain_deadline - limit.leave_at);
  });
}

} // namespace

TEST_CASE("max_age: a peer that leaves on the goaway closes with max_age, one that ignores it is reset after the "
          "grace") {
  asio::io_context io;
  aged_listener<tether::line_codec> server{io, {.wheel = {.tick = tick}}, {},
                                            tether::liveness{tether::max_age{.age = age, .grace = grace}}};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  std::map<std::uint16_t, served> log;
  watch(server, log);
  REQUIRE_FALSE(server.start());

  // Twenty clients that ignore the goaway, to see the jitter, and one that leaves when asked.
  std::vector<std::unique_ptr<tether::test::raw_peer>> ignoring;
  for (int i = 0; i < 20; ++i) {
    ignoring.push_back(std::make_unique<tether::test::raw_peer>(io));
    ignoring.back()->connect(server.local_endpoint());
    ignoring.back()->start_reading();
  }
  tether::test::raw_peer polite{io};
  polite.connect(server.local_endpoint());
  polite.start_reading();
  REQUIRE(run_until(io, [&] { return log.size() == 21; }));

  // The polite one answers the goaway by closing, as a client should.
  REQUIRE(run_until(io, [&] { return polite.received.find("\x10goaway") != std::string::npos; }, scaled(2000ms)));
  polite.socket.shutdown(asio::socket_base::shutdown_send);
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }, scaled(3000ms)));

  std::vector<std::chrono::milliseconds> remaining;
  for (const auto& peer : ignoring) {
    const served& s = log.at(peer->socket.local_endpoint().port());
    remaining.push_back(s.remaining_at_accept);
    CHECK(s.remaining_at_accept >= 360ms - tick);
    CHECK(s.remaining_at_accept <= 440ms);
    REQUIRE(s.reason.has_value());
    CHECK(*s.reason == close_reason::max_age);
    CHECK(s.detail == "still open when the grace after its maximum age ran out");
    CHECK(s.drain_window >= grace);
    CHECK(s.drain_window <= grace + scaled(3 * tick));
    const auto lived = std::chrono::duration_cast<std::chrono::milliseconds>(s.closed - s.accepted);
    CHECK(lived >= 360ms + grace - tick);
    CHECK(lived <= 440ms + grace + scaled(200ms));
    // It was told: the goaway first, then a reset.
    CHECK(peer->received.find("\x10goaway") != std::string::npos);
    REQUIRE(run_until(io, [&] { return peer->closed; }));
    CHECK(peer->error == asio::error::connection_reset);
  }
  // The ages are drawn, not all the same.
  const auto [shortest, longest] = std::minmax_element(remaining.begin(), remaining.end());
  CHECK(*longest - *shortest >= 10ms);

  const served& left = log.at(polite.socket.local_endpoint().port());
  REQUIRE(left.reason.has_value());
  CHECK(*left.reason == close_reason::max_age);
  CHECK(left.detail == "asked to leave at its maximum age");
  CHECK(server.stats().closed(close_reason::max_age) == 21);
}

TEST_CASE("max_age: a reconnecting client moves to a fresh connection at every goaway and loses nothing") {
  asio::io_context io;
  aged_listener<tether::line_codec> server{io, {.wheel = {.tick = tick}}, {},
                                            tether::liveness{tether::max_age{.age = age, .grace = grace}}};
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  std::map<std::uint16_t, served> log;
  watch(server, log);
  REQUIRE_FALSE(server.start());

  tether::connector<tether::line_codec> client{
      io, {.service = std::to_string(server.local_endpoint().port()), .reconnect = true}};
  int next = 0;
  int expected = 0;
  int mismatched = 0;
  int connects = 0;
  client.on_connect([&](auto& conn) {
    ++connects;
    conn.send(std::to_string(next++));
  });
  client.on_message([&](auto& conn, std::string_view line) {
    if (line == std::to_string(expected))
      ++expected;
    else
      ++mismatched;
    if (conn.peer_going_away())
      conn.close();
    else
      conn.send(std::to_string(next++));
  });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return connects >= 4; }, scaled(5000ms)));
  client.stop();
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));

  CHECK(mismatched == 0);
  // Only the message in flight when stop() closed the last connection may be missing.
  CHECK(expected >= next - 1);
  // Every connection but the last (closed by stop) ended at its age, with the client leaving when asked.
  std::size_t aged = 0;
  for (const auto& [port, s] : log) {
    REQUIRE(s.reason.has_value());
    if (*s.reason == close_reason::max_age) {
      ++aged;
      CHECK(s.detail == "asked to leave at its maximum age");
    }
  }
  CHECK(aged >= 3);
  CHECK(server.stats().closed(close_reason::max_age) == aged);
}

TEST_CASE("max_age: over WebSocket the goaway is a closing frame saying going away (1001)") {
  asio::io_context io;
  aged_listener<tether::websocket_codec> server{io, {.wheel = {.tick = tick}}, tether::websocket_codec{.path = ""},
                                                tether::liveness{tether::max_age{.age = age, .grace = grace}}};
  std::map<std::uint16_t, served> log;
  watch(server, log);
  REQUIRE_FALSE(server.start());

  tether::connector<tether::websocket_codec> client{io, {.service = std::to_string(server.local_endpoint().port())},
                                                    tether::websocket_codec{.side = tether::websocket_codec::role::client}};
  std::optional<close_reason> client_closed;
  std::uint16_t peer_code = 0;
  client.on_close([&](auto& conn, close_reason why) {
    client_closed = why;
    peer_code = conn.codec_state().peer_close_code();
  });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return client_closed.has_value(); }, scaled(3000ms)));
  CHECK(*client_closed == close_reason::peer_closed);
  CHECK(peer_code == 1001);
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
  REQUIRE(log.size() == 1);
  CHECK(log.begin()->second.reason == close_reason::max_age);
}

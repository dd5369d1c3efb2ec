#include "catch.hpp"

#include "loopback.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/connector.hpp>
#include <tether/error.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/reconnect_hint.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::loopback;
using tether::test::make_listener;
using tether::test::scaled;
using tether::test::within_budget;

namespace {

using steady = std::chrono::steady_clock;
using line_client = tether::connector<tether::line_codec>;
using line_server_connection = tether::connection<tether::line_codec>;

const asio::ip::address second_loopback = asio::ip::make_address("127.0.0.2");

// Runs the io_context until the condition holds, the limit passes, or nothing is left to run.
template <class Condition>
bool run_until(asio::io_context& io, Condition condition, std::chrono::milliseconds limit = scaled(3000ms)) {
  const auto until = steady::now() + limit;
  while (!condition() && steady::now() < until) {
    io.restart();
    if (io.run_one_for(10ms) == 0 && io.stopped())
      break;
  }
  return condition();
}

// True when every pending operation completes and nothing schedules more: a connector that stopped trying.
bool runs_out_of_work(asio::io_context& io, std::chrono::milliseconds limit = scaled(3000ms)) {
  io.restart();
  io.run_for(limit);
  return io.stopped();
}

std::string service_of(const asio::ip::tcp::acceptor& acceptor) {
  return std::to_string(acceptor.local_endpoint().port());
}

// A listener whose accept queue is full: Linux drops further SYNs instead of refusing them, so a connect to it
// hangs in SYN_SENT, which is how an unreachable or firewalled server looks to a client, without root.
struct unresponsive_listener {
  asio::ip::tcp::acceptor acceptor;
  std::vector<asio::ip::tcp::socket> queued;
};

// Asio's blocking connect() would wait out the SYN retries, so the connect is issued on the native handle.
bool connects_within(asio::ip::tcp::socket& socket, const asio::ip::tcp::endpoint& server, int timeout_ms) {
  socket.open(asio::ip::tcp::v4());
  socket.non_blocking(true);
  if (::connect(socket.native_handle(), server.data(), static_cast<socklen_t>(server.size())) == 0)
    return true;
  pollfd writable{socket.native_handle(), POLLOUT, 0};
  return ::poll(&writable, 1, timeout_ms) == 1;
}

unresponsive_listener make_unresponsive_listener(asio::io_context& io) {
  unresponsive_listener full{asio::ip::tcp::acceptor{io}, {}};
  full.acceptor.open(asio::ip::tcp::v4());
  full.acceptor.bind({loopback, 0});
  full.acceptor.listen(0);
  bool hanging = false;
  while (!hanging && full.queued.size() < 16) {
    full.queued.emplace_back(io);
    hanging = !connects_within(full.queued.back(), full.acceptor.local_endpoint(), 200);
  }
  REQUIRE(hanging);
  return full;
}

struct connect_failure {
  std::error_code error;
  std::chrono::milliseconds next_retry;
  steady::time_point at;
  std::size_t attempts;
};

// Accepts every connection on the io_context and keeps the sockets (open unless a test closes them).
struct plain_server {
  explicit plain_server(asio::io_context& io) : acceptor(make_listener(io)) {}

  void accept_all() {
    acceptor.async_accept([this](const std::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec)
        return;
      accepted.push_back(std::move(socket));
      if (on_accept)
        on_accept(accepted.back());
      accept_all();
    });
  }

  asio::ip::tcp::acceptor acceptor;
  std::vector<asio::ip::tcp::socket> accepted;
  std::function<void(asio::ip::tcp::socket&)> on_accept;
};

// Reads until the client's FIN and then closes, so a graceful close from the client completes.
void close_after_eof(asio::ip::tcp::socket& socket, std::optional<std::error_code>& read_end) {
  auto buffer = std::make_shared<std::array<char, 256>>();
  socket.async_read_some(asio::buffer(*buffer), [&socket, &read_end, buffer](const std::error_code& ec, std::size_t) {
    if (!ec) {
      close_after_eof(socket, read_end);
      return;
    }
    read_end = ec;
    std::error_code ignored;
    socket.close(ignored);
  });
}

} // namespace

TEST_CASE("a connector connects and exchanges a line and closes") {
  asio::io_context io;
  auto listener = make_listener(io);
  asio::ip::tcp::socket served{io};
  asio::streambuf request;
  std::string received_by_server;
  std::optional<std::error_code> server_read_end;
  listener.async_accept(served, [&](const std::error_code& ec) {
    if (ec)
      return;
    asio::async_read_until(served, request, '\n', [&](const std::error_code& read_error, std::size_t length) {
      if (read_error)
        return;
      received_by_server.assign(asio::buffers_begin(request.data()), asio::buffers_begin(request.data()) + length);
      request.consume(length);
      asio::write(served, asio::buffer(std::string_view{"welcome\n"}));
      close_after_eof(served, server_read_end);
    });
  });

  line_client client{io, {.service = service_of(listener)}};
  int connects = 0;
  bool current_during_connect = false;
  std::vector<std::string> messages;
  std::optional<close_reason> closed;
  client.on_connect([&](line_client::connection_type& conn) {
    ++connects;
    current_during_connect = client.current().get() == &conn;
    conn.send("hello");
  });
  client.on_message([&](line_client::connection_type& conn, std::string_view line) {
    messages.emplace_back(line);
    conn.close();
  });
  client.on_close([&](line_client::connection_type&, close_reason why) { closed = why; });
  client.start();

  REQUIRE(run_until(io, [&] { return closed.has_value(); }));
  CHECK(connects == 1);
  CHECK(current_during_connect);
  CHECK(received_by_server == "hello\n");
  CHECK(messages == std::vector<std::string>{"welcome"});
  CHECK(*closed == close_reason::local_close);
  CHECK(client.current() == nullptr);
  CHECK(client.attempts() == 0);
  CHECK(client.stats().opened() == 1);
  CHECK(client.stats().closed(close_reason::local_close) == 1);
  CHECK(client.stats().live() == 0);

  REQUIRE(run_until(io, [&] { return server_read_end.has_value(); }));
  CHECK(*server_read_end == asio::error::eof);
  CHECK(runs_out_of_work(io));
  CHECK(connects == 1);
}

TEST_CASE("an attempt that hangs ends with timed_out at the connect timeout") {
  asio::io_context io;
  auto listener = make_unresponsive_listener(io);
  constexpr auto timeout = 300ms;
  line_client client{io, {.service = service_of(listener.acceptor), .connect_timeout = timeout}};
  std::vector<connect_failure> failures;
  client.on_connect_error([&](const std::error_code& ec, std::chrono::milliseconds next_retry) {
    failures.push_back({ec, next_retry, steady::now(), client.attempts()});
  });
  bool connected = false;
  client.on_connect([&](auto&) { connected = true; });

  const auto started = steady::now();
  client.start();
  REQUIRE(run_until(io, [&] { return !failures.empty(); }));
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(failures.front().at - started);
  INFO("the attempt ended after " << elapsed.count() << "ms");
  CHECK(failures.front().error == asio::error::timed_out);
  CHECK(elapsed >= timeout);
  CHECK(within_budget("a hanging attempt times out", elapsed, timeout + scaled(700ms)));
  CHECK(failures.front().next_retry == 0ms);
  CHECK(failures.front().attempts == 1);
  CHECK(!connected);
  CHECK(runs_out_of_work(io));
  CHECK(failures.size() == 1);
}

TEST_CASE("a refused attempt without reconnect is reported once and nothing more is tried") {
  asio::io_context io;
  asio::ip::tcp::acceptor reserved{io};
  reserved.open(asio::ip::tcp::v4());
  reserved.bind({loopback, 0});  // bound but not listening: connects are refused

  line_client client{io, {.service = service_of(reserved)}};
  std::vector<connect_failure> failures;
  client.on_connect_error([&](const std::error_code& ec, std::chrono::milliseconds next_retry) {
    failures.push_back({ec, next_retry, steady::now(), client.attempts()});
  });
  client.start();
  CHECK(runs_out_of_work(io));
  REQUIRE(failures.size() == 1);
  CHECK(failures.front().error == asio::error::connection_refused);
  CHECK(failures.front().next_retry == 0ms);
  CHECK(client.attempts() == 1);

  SECTION("start() tries again") {
    client.start();
    CHECK(runs_out_of_work(io));
    CHECK(failures.size() == 2);
    CHECK(client.attempts() == 2);
  }
}

TEST_CASE("reconnect backs off with jitter against a refused port until the server listens") {
  asio::io_context io;
  asio::ip::tcp::acceptor reserved{io};
  reserved.open(asio::ip::tcp::v4());
  reserved.bind({loopback, 0});  // bound but not listening: refused now, and the port stays ours for later

  const tether::backoff retry{.initial = 20ms, .maximum = 80ms, .multiplier = 2.0};
  line_client client{io, {.service = service_of(reserved), .reconnect = true, .retry = retry}};
  std::vector<connect_failure> failures;
  client.on_connect_error([&](const std::error_code& ec, std::chrono::milliseconds next_retry) {
    failures.push_back({ec, next_retry, steady::now(), client.attempts()});
  });
  std::size_t attempts_at_connect = 99;
  client.on_connect([&](auto&) { attempts_at_connect = client.attempts(); });

  const auto started = steady::now();
  client.start();
  constexpr std::size_t refusals = 6;
  REQUIRE(run_until(io, [&] { return failures.size() >= refusals; }));

  constexpr auto slack = 300ms;
  auto ceilings = 0ms;
  for (std::size_t i = 0; i < refusals; ++i) {
    INFO("refusal " << i);
    CHECK(failures[i].error == asio::error::connection_refused);
    CHECK(failures[i].attempts == i + 1);
    CHECK(failures[i].next_retry >= 0ms);
    CHECK(failures[i].next_retry <= retry.ceiling(i));
    if (i + 1 < refusals) {
      const auto spacing = std::chrono::duration_cast<std::chrono::milliseconds>(failures[i + 1].at - failures[i].at);
      INFO("spacing " << spacing.count() << "ms after a drawn delay of " << failures[i].next_retry.count() << "ms");
      CHECK(spacing >= failures[i].next_retry);
      CHECK(spacing <= retry.ceiling(i) + slack);
      ceilings += retry.ceiling(i);
    }
  }
  CHECK(failures[refusals - 1].at - started <= ceilings + slack);

  reserved.listen();
  asio::ip::tcp::socket served{io};
  reserved.async_accept(served, [](const std::error_code&) {});
  REQUIRE(run_until(io, [&] { return client.current() != nullptr; }));
  CHECK(attempts_at_connect == 0);
  CHECK(client.attempts() == 0);
}

TEST_CASE("the connector reconnects after the server closes the connection") {
  asio::io_context io;
  plain_server server{io};
  server.on_accept = [](asio::ip::tcp::socket& socket) { socket.close(); };
  server.accept_all();

  line_client client{io, {.service = service_of(server.acceptor), .reconnect = true,
                          .retry = {.initial = 50ms, .maximum = 200ms}}};
  int connects = 0;
  std::vector<std::size_t> attempts_at_connect;
  std::vector<close_reason> closes;
  client.on_connect([&](auto&) {
    ++connects;
    attempts_at_connect.push_back(client.attempts());
  });
  client.on_close([&](auto&, close_reason why) { closes.push_back(why); });
  client.start();

  REQUIRE(run_until(io, [&] { return connects >= 3; }));
  REQUIRE(closes.size() >= 2);
  CHECK(closes[0] == close_reason::peer_closed);
  CHECK(closes[1] == close_reason::peer_closed);
  CHECK(attempts_at_connect == std::vector<std::size_t>(attempts_at_connect.size(), 0));
  CHECK(client.stats().opened() >= 3);
  CHECK(client.stats().closed(close_reason::peer_closed) >= 2);
}

TEST_CASE("stop closes the live connection gracefully and makes no more attempts") {
  asio::io_context io;
  plain_server server{io};
  std::optional<std::error_code> server_read_end;
  server.on_accept = [&](asio::ip::tcp::socket& socket) { close_after_eof(socket, server_read_end); };
  server.accept_all();

  line_client client{io, {.service = service_of(server.acceptor), .reconnect = true, .retry = {.initial = 10ms}}};
  int connects = 0;
  std::optional<close_reason> closed;
  client.on_connect([&](auto&) { ++connects; });
  client.on_close([&](auto&, close_reason why) { closed = why; });
  client.start();
  REQUIRE(run_until(io, [&] { return client.current() != nullptr; }));

  client.stop();
  CHECK(client.current() == nullptr);
  REQUIRE(run_until(io, [&] { return closed.has_value() && server_read_end.has_value(); }));
  CHECK(*closed == close_reason::local_close);
  CHECK(*server_read_end == asio::error::eof);

  server.acceptor.close();
  CHECK(runs_out_of_work(io));
  CHECK(connects == 1);
  CHECK(server.accepted.size() == 1);
}

TEST_CASE("a goaway from a tether server makes the client reconnect right after the close") {
  asio::io_context io;
  auto listener = make_listener(io);
  tether::timer_wheel server_wheel{io};
  tether::connection_context<tether::line_codec> server_settings;
  std::vector<std::shared_ptr<line_server_connection>> served;
  std::vector<close_reason> server_closes;
  server_settings.on_close = [&](auto&, close_reason why) { server_closes.push_back(why); };
  std::function<void()> accept_next = [&] {
    listener.async_accept(io, [&](const std::error_code& ec, line_server_connection::socket_type socket) {
      if (ec)
        return;
      served.push_back(line_server_connection::create(std::move(socket), server_settings, server_wheel));
      served.back()->start();
      accept_next();
    });
  };
  accept_next();

  // With every backoff delay drawn from [0, 20s], a reconnect within a second is the goaway's doing.
  line_client client{io, {.service = service_of(listener), .reconnect = true,
                          .retry = {.initial = 20s, .maximum = 20s}}};
  int connects = 0;
  int goaways = 0;
  std::optional<close_reason> first_close;
  bool going_away_at_close = false;
  steady::time_point closed_at{};
  steady::time_point reconnected_at{};
  client.on_connect([&](auto&) {
    if (++connects == 2)
      reconnected_at = steady::now();
  });
  client.on_close([&](line_client::connection_type& conn, close_reason why) {
    if (first_close)
      return;
    first_close = why;
    going_away_at_close = conn.peer_going_away();
    closed_at = steady::now();
  });

  SECTION("the server closes after its goaway") {
    client.on_goaway([&](auto&, std::string_view) { ++goaways; });
    client.start();
    REQUIRE(run_until(io, [&] { return served.size() == 1; }));
    served.front()->send_goaway();
    served.front()->close();
    REQUIRE(run_until(io, [&] { return connects == 2 && served.size() == 2; }));
    CHECK(*first_close == close_reason::peer_closed);
  }
  SECTION("the client finishes and closes when told to go away") {
    client.on_goaway([&](line_client::connection_type& conn, std::string_view) {
      ++goaways;
      conn.close();
    });
    client.start();
    REQUIRE(run_until(io, [&] { return served.size() == 1; }));
    served.front()->send_goaway();
    REQUIRE(run_until(io, [&] { return connects == 2 && served.size() == 2 && !server_closes.empty(); }));
    CHECK(*first_close == close_reason::local_close);
    CHECK(server_closes.front() == close_reason::shutdown);
  }

  CHECK(goaways == 1);
  CHECK(going_away_at_close);
  CHECK(within_budget("reconnect after a goaway", reconnected_at - closed_at, scaled(1000ms)));
  CHECK(client.attempts() == 0);
  CHECK(served.size() == 2);
  REQUIRE(client.current() != nullptr);
  CHECK(!client.current()->peer_going_away());
}

TEST_CASE("after a goaway with a reconnect hint the connector returns within the hinted window") {
  asio::io_context io;
  tether::listener<tether::line_codec> server{io, {}};
  std::string hint_sent;
  int accepted = 0;
  server.on_accept([&](auto& conn) {
    if (++accepted == 1)
      conn.send_goaway(hint_sent);
  });
  tether::backoff retry{.initial = 20s, .maximum = 20s};
  std::chrono::milliseconds earliest{};
  std::chrono::milliseconds latest{};
  SECTION("a window the client can honour") {
    hint_sent = tether::goaway_payload({.earliest = 300ms, .latest = 400ms});
    earliest = 300ms;
    latest = 400ms;
  }
  SECTION("a window past the client's longest backoff is cut to it") {
    retry = {.initial = 10ms, .maximum = 150ms};
    hint_sent = tether::goaway_payload({.earliest = 5s, .latest = 6s});
    earliest = 150ms;
    latest = 150ms;
  }
  REQUIRE_FALSE(server.start());
  line_client client{io, {.service = std::to_string(server.local_endpoint().port()), .reconnect = true, .retry = retry}};
  std::string hint_received;
  steady::time_point closed_at{};
  steady::time_point reconnected_at{};
  int connects = 0;
  client.on_goaway([&](auto& conn, std::string_view payload) {
    hint_received = payload;
    conn.close();
  });
  client.on_close([&](auto&, close_reason) {
    if (closed_at == steady::time_point{})
      closed_at = steady::now();
  });
  client.on_connect([&](auto&) {
    if (++connects == 2)
      reconnected_at = steady::now();
  });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return connects == 2; }));
  CHECK(hint_received == hint_sent);
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(reconnected_at - closed_at);
  CHECK(waited >= earliest);
  CHECK(within_budget("reconnect within the hinted window", waited, latest + scaled(150ms)));
  client.stop();
  server.stop(0ms);
  io.restart();
  io.run_for(scaled(500ms));
}

TEST_CASE("listener stop() spreads reconnects with a hint of half its deadline") {
  asio::io_context io;
  tether::listener<tether::line_codec> server{io, {}};
  REQUIRE_FALSE(server.start());
  line_client client{io, {.service = std::to_string(server.local_endpoint().port())}};
  std::optional<tether::reconnect_hint> hint;
  client.on_goaway([&](auto& conn, std::string_view payload) {
    hint = tether::parse_reconnect_hint(payload);
    conn.close();
  });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return server.connections() == 1; }));
  server.stop(4000ms);
  REQUIRE(run_until(io, [&] { return hint.has_value(); }));
  CHECK(*hint == tether::reconnect_hint{.earliest = 0ms, .latest = 2000ms});
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
}

TEST_CASE("a heartbeat over the connector measures round trips against a tether server") {
  asio::io_context io;
  auto listener = make_listener(io);
  tether::timer_wheel server_wheel{io};
  tether::connection_context<tether::line_codec> server_settings;
  std::shared_ptr<line_server_connection> served;
  listener.async_accept(io, [&](const std::error_code& ec, line_server_connection::socket_type socket) {
    if (ec)
      return;
    served = line_server_connection::create(std::move(socket), server_settings, server_wheel);
    served->start();
  });

  using policy = tether::liveness<tether::heartbeat>;
  tether::connector<tether::line_codec, policy> client{
      io, {.service = service_of(listener), .wheel = {.tick = 10ms}}, {}, policy{tether::heartbeat{.interval = 30ms}}};
  std::vector<std::chrono::microseconds> round_trips;
  client.on_heartbeat([&](auto&, std::chrono::microseconds rtt) { round_trips.push_back(rtt); });
  client.start();

  REQUIRE(run_until(io, [&] { return round_trips.size() >= 2; }));
  CHECK(round_trips.front() > 0us);
  CHECK(client.stats().heartbeats() >= 2);
}

TEST_CASE("a heartbeat timeout closes from the timer wheel and the connector reconnects") {
  asio::io_context io;
  plain_server silent{io};  // accepts and never answers a ping
  silent.accept_all();

  using policy = tether::liveness<tether::heartbeat>;
  tether::connector<tether::line_codec, policy> client{
      io,
      {.service = service_of(silent.acceptor), .reconnect = true, .retry = {.initial = 10ms}, .wheel = {.tick = 10ms}},
      {},
      policy{tether::heartbeat{.interval = 30ms, .timeout = 60ms}}};
  int connects = 0;
  std::vector<close_reason> closes;
  client.on_connect([&](auto&) { ++connects; });
  client.on_close([&](auto&, close_reason why) { closes.push_back(why); });
  client.start();

  REQUIRE(run_until(io, [&] { return connects >= 2; }));
  REQUIRE(!closes.empty());
  CHECK(closes.front() == close_reason::heartbeat_timeout);
  CHECK(client.stats().closed(close_reason::heartbeat_timeout) >= 1);
}

TEST_CASE("after a suspension longer than the heartbeat interval the connector pings at once and stays up") {
  asio::io_context io;
  auto listener = make_listener(io);
  tether::timer_wheel server_wheel{io};
  tether::connection_context<tether::line_codec> server_settings;  // answers pings by itself
  std::shared_ptr<line_server_connection> served;
  listener.async_accept(io, [&](const std::error_code& ec, line_server_connection::socket_type socket) {
    if (ec)
      return;
    served = line_server_connection::create(std::move(socket), server_settings, server_wheel);
    served->start();
  });

  // The machine's suspended time, as the connector reads it; the test moves it as a suspension would.
  auto suspended = std::chrono::nanoseconds{0};
  using policy = tether::liveness<tether::heartbeat>;
  tether::connector<tether::line_codec, policy> client{
      io,
      {.service = service_of(listener), .wheel = {.tick = 10ms}, .resume_check = 20ms,
       .suspended_time = [&] { return suspended; }},
      {},
      policy{tether::heartbeat{.interval = 30s, .timeout = 5s}}};
  std::vector<std::chrono::microseconds> round_trips;
  std::vector<std::chrono::milliseconds> resumes;
  client.on_heartbeat([&](auto&, std::chrono::microseconds rtt) { round_trips.push_back(rtt); });
  client.on_resume([&](std::chrono::milliseconds slept) { resumes.push_back(slept); });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return client.current() != nullptr && served != nullptr; }));

  SECTION("a suspension shorter than the interval changes nothing") {
    suspended += 20s;
    io.restart();
    io.run_for(scaled(300ms));
    CHECK(resumes.empty());
    CHECK(round_trips.empty());
  }
  SECTION("a longer one: a ping at once instead of after the 30 s interval, answered, and reported") {
    suspended += 90s;
    const auto resumed_at = steady::now();
    REQUIRE(run_until(io, [&] { return !round_trips.empty(); }, scaled(2000ms)));
    CHECK(steady::now() - resumed_at < scaled(1000ms));
    REQUIRE(resumes.size() == 1);
    CHECK(resumes[0] == 90s);
    CHECK(client.current() != nullptr);
    // One probe per resume: the next ping waits out the interval again.
    io.restart();
    io.run_for(scaled(300ms));
    CHECK(round_trips.size() == 1);
  }
}

TEST_CASE("after a suspension a peer that died meanwhile is found within the heartbeat timeout, not the interval") {
  asio::io_context io;
  plain_server silent{io};  // accepts and never answers a ping, as a peer gone during the suspension
  silent.accept_all();
  auto suspended = std::chrono::nanoseconds{0};
  using policy = tether::liveness<tether::heartbeat>;
  const tether::heartbeat beat{.interval = 30s, .timeout = 300ms};
  tether::connector<tether::line_codec, policy> client{
      io,
      {.service = service_of(silent.acceptor), .wheel = {.tick = 10ms}, .resume_check = 20ms,
       .suspended_time = [&] { return suspended; }},
      {},
      policy{beat}};
  std::optional<close_reason> closed;
  client.on_close([&](auto&, close_reason why) { closed = why; });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return client.current() != nullptr; }));

  suspended += 1min;
  const auto resumed_at = steady::now();
  REQUIRE(run_until(io, [&] { return closed.has_value(); }, scaled(3000ms)));
  const auto detected = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - resumed_at);
  INFO("closed " << detected.count() << " ms after the resume");
  CHECK(*closed == close_reason::heartbeat_timeout);
  CHECK(detected >= beat.timeout);
  CHECK(detected <= beat.timeout + scaled(400ms));  // resume_check, a tick, and scheduling
}

TEST_CASE("after a suspension a reconnect waiting out its backoff is attempted at once, from the first delay") {
  asio::io_context io;
  asio::ip::tcp::acceptor reserved{io};
  reserved.open(asio::ip::tcp::v4());
  reserved.bind({loopback, 0});  // bound but not listening: every attempt is refused
  // Without the reset the next delay would come from [0, 600 s]: nine times in ten above the first ceiling.
  const tether::backoff retry{.initial = 60s, .maximum = 600s, .multiplier = 10.0};
  auto suspended = std::chrono::nanoseconds{0};
  std::vector<connect_failure> failures;
  std::vector<std::chrono::milliseconds> resumes;
  std::optional<line_client> client;
  // The first delay is drawn from [0, 60 s]; one under 3 s would hide whether the resume cut it short, so such
  // a draw is tried again with a new connector (each try has a 5 % chance of it).
  for (int tries = 0; tries < 8 && (failures.empty() || failures.front().next_retry < 3s); ++tries) {
    failures.clear();
    client.emplace(io, tether::connector_options{.service = service_of(reserved), .reconnect = true, .retry = retry,
                                                 .resume_check = 20ms, .suspended_time = [&] { return suspended; }});
    client->on_connect_error([&](const std::error_code& ec, std::chrono::milliseconds next_retry) {
      failures.push_back({ec, next_retry, steady::now(), client->attempts()});
    });
    client->on_resume([&](std::chrono::milliseconds slept) { resumes.push_back(slept); });
    REQUIRE_FALSE(client->start());
    REQUIRE(run_until(io, [&] { return !failures.empty(); }));
  }
  REQUIRE(failures.size() == 1);
  REQUIRE(failures[0].next_retry >= 3s);

  // No heartbeat in this policy: any suspension longer than resume_check counts.
  suspended += 5s;
  REQUIRE(run_until(io, [&] { return failures.size() >= 2; }, scaled(2000ms)));
  CHECK(failures[1].at - failures[0].at < scaled(1000ms));
  CHECK(failures[1].error == asio::error::connection_refused);
  CHECK(failures[1].next_retry <= retry.ceiling(0));  // drawn from the first ceiling again
  REQUIRE(resumes.size() == 1);
  CHECK(resumes[0] == 5s);
  client->stop();
}

TEST_CASE("bind_source_address binds the address and leaves the port to connect") {
  asio::io_context io;
  auto listener = make_listener(io);

  asio::ip::tcp::socket deferred{io};
  deferred.open(asio::ip::tcp::v4());
  const auto ec = tether::bind_source_address(deferred, second_loopback);
  INFO(ec.message());
  REQUIRE(!ec);
  CHECK(deferred.local_endpoint().address() == second_loopback);
  CHECK(deferred.local_endpoint().port() == 0);

  deferred.connect(listener.local_endpoint());
  CHECK(deferred.local_endpoint().address() == second_loopback);
  CHECK(deferred.local_endpoint().port() != 0);
  CHECK(listener.accept().remote_endpoint() == deferred.local_endpoint());

  SECTION("a plain bind reserves a port at once") {
    asio::ip::tcp::socket reserving{io};
    reserving.open(asio::ip::tcp::v4());
    reserving.bind({second_loopback, 0});
    CHECK(reserving.local_endpoint().port() != 0);
  }
}

TEST_CASE("a connector with a bind address connects from that address") {
  asio::io_context io;
  plain_server server{io};
  server.accept_all();

  line_client client{io, {.service = service_of(server.acceptor), .bind_address = second_loopback}};
  std::optional<asio::ip::tcp::endpoint> local;
  std::vector<connect_failure> failures;
  client.on_connect([&](line_client::connection_type& conn) { local = conn.socket().local_endpoint(); });
  client.on_connect_error([&](const std::error_code& error, std::chrono::milliseconds next_retry) {
    failures.push_back({error, next_retry, steady::now(), client.attempts()});
  });

  SECTION("the server sees the bound address") {
    client.start();
    REQUIRE(run_until(io, [&] { return local.has_value() && server.accepted.size() == 1; }));
    CHECK(local->address() == second_loopback);
    CHECK(server.accepted.front().remote_endpoint().address() == second_loopback);
    CHECK(server.accepted.front().remote_endpoint() == *local);
  }
  SECTION("destinations of the other address family are skipped") {
    const asio::ip::address other_family = asio::ip::address_v6::loopback();
    line_client mismatched{io, {.service = service_of(server.acceptor), .bind_address = other_family}};
    std::optional<std::error_code> refused;
    mismatched.on_connect_error([&](const std::error_code& error, std::chrono::milliseconds) { refused = error; });
    mismatched.start();
    REQUIRE(run_until(io, [&] { return refused.has_value(); }));
    CHECK(*refused == asio::error::address_family_not_supported);
    CHECK(server.accepted.empty());
  }
  CHECK(failures.empty());
}

TEST_CASE("destroying a connector cancels its work without running handlers") {
  asio::io_context io;
  int handler_calls = 0;

  SECTION("during an attempt that hangs") {
    auto listener = make_unresponsive_listener(io);
    {
      line_client client{io, {.service = service_of(listener.acceptor), .reconnect = true}};
      client.on_connect_error([&](auto&, auto) { ++handler_calls; });
      client.on_connect([&](auto&) { ++handler_calls; });
      client.start();
      REQUIRE(run_until(io, [&] { return client.attempts() == 1; }));
      io.restart();
      io.run_for(50ms);  // lets the resolve finish and the connect start
      REQUIRE(client.attempts() == 1);
    }
    CHECK(runs_out_of_work(io));
  }
  SECTION("while connected") {
    plain_server server{io};
    std::optional<std::error_code> server_read_end;
    server.on_accept = [&](asio::ip::tcp::socket& socket) { close_after_eof(socket, server_read_end); };
    server.accept_all();
    {
      line_client client{io, {.service = service_of(server.acceptor), .reconnect = true}};
      client.on_close([&](auto&, auto) { ++handler_calls; });
      client.start();
      REQUIRE(run_until(io, [&] { return client.current() != nullptr; }));
      CHECK(client.stats().live() == 1);
    }
    REQUIRE(run_until(io, [&] { return server_read_end.has_value(); }));
    CHECK(*server_read_end == asio::error::connection_reset);
    server.acceptor.close();
    CHECK(runs_out_of_work(io));
  }
  CHECK(handler_calls == 0);
}

TEST_CASE("a connector refuses options that cannot work and names the field") {
  asio::io_context io;
  tether::connector_options options{.service = "1"};
  std::error_code expected;
  SECTION("connect timeout") {
    options.connect_timeout = 0ms;
    expected = tether::error::connect_timeout_not_positive;
  }
  SECTION("backoff") {
    options.retry.multiplier = 0.5;
    expected = tether::error::backoff_multiplier_below_one;
  }
  SECTION("wheel") {
    options.wheel.tick = 0ms;
    expected = tether::error::wheel_tick_not_positive;
  }
  SECTION("resume check") {
    options.resume_check = -1ms;
    expected = tether::error::resume_check_negative;
  }
  line_client client{io, options};
  CHECK(client.start() == expected);
  CHECK(runs_out_of_work(io));
  CHECK(client.attempts() == 0);

  tether::connector<tether::line_codec, tether::liveness<tether::heartbeat>> bad_strategy{
      io, {.service = "1"}, {}, tether::liveness{tether::heartbeat{.interval = 0ms}}};
  CHECK(bad_strategy.start() == tether::error::heartbeat_interval_not_positive);
}

namespace {
// A tether server over the line codec on a loopback listener, serving each connection it accepts with `policy`.
template <class Policy>
struct heartbeat_server {
  using connection_type = tether::connection<tether::line_codec, Policy>;
  heartbeat_server(asio::io_context& io, Policy policy) : listener(make_listener(io)), wheel(io, {.tick = 10ms}) {
    settings.liveness = std::move(policy);
    settings.on_close = [this](connection_type&, close_reason why) { closes.push_back(why); };
    listener.async_accept(io, [this](const std::error_code& ec, typename connection_type::socket_type socket) {
      if (ec)
        return;
      served = connection_type::create(std::move(socket), settings, wheel);
      served->start();
    });
  }
  asio::ip::tcp::acceptor listener;
  tether::timer_wheel wheel;
  tether::connection_context<tether::line_codec, Policy> settings;
  std::shared_ptr<connection_type> served;
  std::vector<close_reason> closes;
};
using heartbeat_policy = tether::liveness<tether::heartbeat>;
} // namespace

TEST_CASE("a client pinging every 200 ms against a server accepting one per second slows down and stays connected") {
  asio::io_context io;
  heartbeat_server server{io, heartbeat_policy{tether::heartbeat{.interval = 30s, .timeout = 5s,
                                                                 .min_peer_ping_interval = 1s, .max_ping_strikes = 3}}};
  const tether::heartbeat eager{.interval = 200ms, .timeout = 1s};
  tether::connector<tether::line_codec, heartbeat_policy> client{
      io, {.service = service_of(server.listener), .wheel = {.tick = 10ms}}, {}, heartbeat_policy{eager}};
  std::vector<close_reason> client_closes;
  client.on_close([&](auto&, close_reason why) { client_closes.push_back(why); });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] {
    return client.current() != nullptr && client.current()->liveness_state<tether::heartbeat>().times_slowed_down() > 0;
  }, scaled(5000ms)));
  const auto& beat = client.current()->liveness_state<tether::heartbeat>();
  CHECK(beat.times_slowed_down() == 1);
  CHECK(eager.interval_of(beat) >= 1s);
  // Several of the new intervals later: still the first connection on both sides, and no more requests.
  io.restart();
  io.run_for(scaled(3500ms));
  REQUIRE(client.current() != nullptr);
  CHECK(client.current()->liveness_state<tether::heartbeat>().times_slowed_down() == 1);
  CHECK(client.current()->liveness_state<tether::heartbeat>().pings_sent() >= 5);
  CHECK(client.stats().opened() == 1);
  CHECK(client_closes.empty());
  CHECK(server.closes.empty());
  REQUIRE(server.served != nullptr);
  CHECK(server.served->is_open());
}

TEST_CASE("heartbeat negotiation: mismatched ends converge on the agreed values, a silent peer leaves the defaults") {
  asio::io_context io;
  const tether::heartbeat server_wishes{.interval = 20s, .timeout = 2s, .min_peer_ping_interval = 50ms,
                                        .negotiate = true};
  heartbeat_server server{io, heartbeat_policy{server_wishes}};
  tether::heartbeat client_wishes{.interval = 100ms, .timeout = 4s, .min_peer_ping_interval = 1s};
  SECTION("both announce") { client_wishes.negotiate = true; }
  SECTION("the client announces nothing (an older peer): each side keeps its own values") {}
  tether::connector<tether::line_codec, heartbeat_policy> client{
      io, {.service = service_of(server.listener), .wheel = {.tick = 10ms}}, {}, heartbeat_policy{client_wishes}};
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return client.current() != nullptr && server.served != nullptr; }));
  io.restart();
  io.run_for(scaled(300ms));
  REQUIRE(client.current() != nullptr);
  REQUIRE(server.served != nullptr);
  const auto& on_client = client.current()->liveness_state<tether::heartbeat>();
  const auto& on_server = server.served->liveness_state<tether::heartbeat>();
  const tether::heartbeat& client_strategy = client_wishes;
  if (client_wishes.negotiate) {
    // interval: the eager 100 ms raised to the 1 s the client itself accepts; timeout: the patient 4 s.
    for (const auto* state : {&on_client, &on_server})
      CHECK(state->agreed());
    CHECK(client_strategy.interval_of(on_client) == 1s);
    CHECK(server_wishes.interval_of(on_server) == 1s);
    CHECK(client_strategy.timeout_of(on_client) == 4s);
    CHECK(server_wishes.timeout_of(on_server) == 4s);
  } else {
    CHECK_FALSE(on_client.agreed());
    CHECK_FALSE(on_server.agreed());
    CHECK(client_strategy.interval_of(on_client) == 100ms);
    CHECK(server_wishes.interval_of(on_server) == 20s);
    // The server's announcement reached the client as an unsolicited pong, and nothing broke: pings flow.
    CHECK(on_client.pings_sent() >= 2);
  }
  CHECK(client.stats().opened() == 1);
  CHECK(server.closes.empty());
}

namespace {

// Accepts every connection and answers its pings; with refuse_after_first, closes every connection after the
// first as soon as it is accepted, as a server at its connection limit does.
struct answering_server {
  explicit answering_server(asio::io_context& io, bool refuse_after_first = false)
      : io(io), acceptor(make_listener(io)), wheel(io, {.tick = 10ms}), refusing(refuse_after_first) {
    accept_next();
  }
  void accept_next() {
    acceptor.async_accept(io, [this](const std::error_code& ec, line_server_connection::socket_type socket) {
      if (ec)
        return;
      std::erase_if(served, [](const auto& c) { return c->is_closed(); });
      served.push_back(line_server_connection::create(std::move(socket), settings, wheel));
      served.back()->start();
      if (refusing && ++accepted > 1)
        served.back()->close(close_reason::limit_exceeded);
      accept_next();
    });
  }
  asio::io_context& io;
  asio::ip::tcp::acceptor acceptor;
  tether::timer_wheel wheel;
  tether::connection_context<tether::line_codec> settings;
  std::vector<std::shared_ptr<line_server_connection>> served;
  bool refusing;
  int accepted = 0;
};

using beating_client = tether::connector<tether::line_codec, tether::liveness<tether::heartbeat>>;

struct interval_record {
  std::chrono::milliseconds interval;
  tether::interval_change why;
  bool operator==(const interval_record&) const = default;
};

beating_client adaptive_client(asio::io_context& io, const answering_server& server, bool reconnect = false) {
  return beating_client{io,
                        {.service = service_of(server.acceptor),
                         .reconnect = reconnect,
                         .retry = {.initial = 10ms},
                         .wheel = {.tick = 10ms},
                         .adaptive = tether::adaptive_heartbeat{.min = 100ms, .max = 400ms, .reverify_every = 1h,
                                                                .max_probes_per_hour = 1000}},
                        {},
                        tether::liveness{tether::heartbeat{.interval = 100ms, .timeout = scaled(500ms)}}};
}

std::ptrdiff_t open_at(const answering_server& server) {
  return std::count_if(server.served.begin(), server.served.end(), [](const auto& c) { return !c->is_closed(); });
}

std::chrono::milliseconds running_interval(const beating_client& client) {
  const auto open = client.current();
  REQUIRE(open);
  return open->context().liveness.get<tether::heartbeat>().interval_of(open->liveness_state<tether::heartbeat>());
}

} // namespace

TEST_CASE("connector adaptive heartbeat proves longer intervals on probes while the connection stays up") {
  asio::io_context io;
  answering_server server{io};
  auto client = adaptive_client(io, server);
  std::vector<interval_record> changes;
  int connects = 0;
  std::optional<close_reason> closed;
  client.on_connect([&](auto&) { ++connects; });
  client.on_close([&](auto&, close_reason why) { closed = why; });
  client.on_interval_change([&](std::chrono::milliseconds interval, tether::interval_change why) {
    changes.push_back({interval, why});
  });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return client.interval_learner() && client.interval_learner()->settled(); },
                    scaled(5000ms)));

  // Loopback forgets nothing: 200 ms, 400 ms and the 533 ms that lets the connection run at max all hold.
  using tether::interval_change;
  CHECK(changes == std::vector<interval_record>{{150ms, interval_change::proven_longer},
                                                {300ms, interval_change::proven_longer},
                                                {400ms, interval_change::proven_longer}});
  CHECK(client.interval_learner()->probes() == 3);
  CHECK(client.interval_learner()->probes_failed() == 0);
  CHECK(running_interval(client) == 400ms);
  CHECK(connects == 1);
  CHECK_FALSE(closed);
  // The probes closed gracefully at the server; only the protected connection is left.
  REQUIRE(run_until(io, [&] { return open_at(server) == 1; }));
}

TEST_CASE("connector adaptive heartbeat keeps what it learned across a reconnect and backs off when the connection is lost") {
  asio::io_context io;
  answering_server server{io};
  auto client = adaptive_client(io, server, true);
  std::vector<interval_record> changes;
  int connects = 0;
  client.on_connect([&](auto&) { ++connects; });
  client.on_interval_change([&](std::chrono::milliseconds interval, tether::interval_change why) {
    changes.push_back({interval, why});
  });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return client.interval_learner() && client.interval_learner()->settled(); },
                    scaled(5000ms)));

  client.stop();  // this side's decision says nothing about the path
  REQUIRE(run_until(io, [&] { return client.current() == nullptr; }));
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return connects == 2 && client.current() && open_at(server) == 1; }));
  CHECK(running_interval(client) == 400ms);
  CHECK(changes.size() == 3);

  // A reset after idling at 400 ms: that interval is no longer known to be safe.
  for (const auto& served : server.served)
    if (!served->is_closed())
      served->abort();
  REQUIRE(run_until(io, [&] { return connects == 3 && client.current(); }));
  REQUIRE(changes.size() >= 4);
  CHECK(changes[3] == interval_record{100ms, tether::interval_change::path_stricter});
  CHECK(running_interval(client) == 100ms);
}

TEST_CASE("connector adaptive heartbeat learns nothing from probes a server refuses at once") {
  asio::io_context io;
  answering_server server{io, true};
  auto client = adaptive_client(io, server);
  int changes = 0;
  std::optional<close_reason> closed;
  client.on_close([&](auto&, close_reason why) { closed = why; });
  client.on_interval_change([&](std::chrono::milliseconds, tether::interval_change) { ++changes; });
  REQUIRE_FALSE(client.start());
  REQUIRE(run_until(io, [&] { return server.accepted >= 4; }, scaled(5000ms)));
  CHECK(changes == 0);
  CHECK(client.interval_learner()->probes_failed() == 0);
  CHECK(client.interval_learner()->interval() == 100ms);
  CHECK(running_interval(client) == 100ms);
  CHECK_FALSE(closed);
}

TEST_CASE("connector adaptive heartbeat refuses a policy without heartbeat and bounds that cannot work") {
  asio::io_context io;
  line_client without_heartbeat{io, {.service = "1", .adaptive = tether::adaptive_heartbeat{}}};
  CHECK(without_heartbeat.start() == tether::error::adaptive_heartbeat_needs_heartbeat);
  beating_client inverted{io, {.service = "1", .adaptive = tether::adaptive_heartbeat{.min = 10s, .max = 1s}}};
  CHECK(inverted.start() == tether::error::adaptive_heartbeat_bounds_invalid);
}

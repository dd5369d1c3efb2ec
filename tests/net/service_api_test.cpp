// The API a service is written against: receiving with completion tokens, backpressure in both directions.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/peer_paced.hpp>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::raw_peer;
using tether::test::run_for;
using tether::test::run_until;
using tether::test::scaled;

namespace {

using connection_type = tether::connection<tether::line_codec>;

struct one_connection {
  explicit one_connection(asio::io_context& context, tether::connection_options options = {})
      : io(context), wheel(context, {.tick = 10ms}), acceptor(context, {tether::test::loopback, 0}) {
    ctx.options = options;
    ctx.on_close = [this](connection_type&, close_reason why) { closed = why; };
  }

  std::shared_ptr<connection_type> accept_from(raw_peer& peer) {
    peer.connect(acceptor.local_endpoint());
    peer.start_reading();
    auto conn = connection_type::create(acceptor.accept(io), ctx, wheel);
    conn->start();
    return conn;
  }

  asio::io_context& io;
  tether::timer_wheel wheel;
  asio::ip::tcp::acceptor acceptor;
  tether::connection_context<tether::line_codec> ctx;
  std::optional<close_reason> closed;
};

} // namespace

TEST_CASE("async_receive delivers one message per completion, in order, then the close reason") {
  asio::io_context io;
  one_connection server{io};
  raw_peer client{io};
  auto conn = server.accept_from(client);
  client.write("one\ntwo\nthree\n");

  SECTION("callbacks") {
    std::vector<std::string> got;
    std::error_code ended;
    std::function<void()> next = [&] {
      conn->async_receive([&](std::error_code ec, std::string message) {
        if (ec) {
          ended = ec;
          return;
        }
        got.push_back(std::move(message));
        next();
      });
    };
    next();
    REQUIRE(run_until(io, [&] { return got.size() == 3; }));
    CHECK(got == std::vector<std::string>{"one", "two", "three"});
    client.socket.shutdown(asio::socket_base::shutdown_send);
    REQUIRE(run_until(io, [&] { return bool(ended); }));
    CHECK(ended == close_reason::peer_closed);
  }
  SECTION("use_future") {
    auto first = conn->async_receive(asio::use_future);
    REQUIRE(run_until(io, [&] { return first.wait_for(0s) == std::future_status::ready; }));
    CHECK(first.get() == "one");
  }
#if defined(ASIO_HAS_CO_AWAIT)
  SECTION("use_awaitable: an echo written with co_await") {
    std::vector<std::string> got;
    std::error_code ended;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          for (;;) {
            auto [ec, message] = co_await conn->async_receive(asio::experimental::as_tuple(asio::use_awaitable));
            if (ec) {
              ended = ec;
              co_return;
            }
            got.push_back(message);
            co_await conn->async_send(message, asio::use_awaitable);
          }
        },
        asio::detached);
    REQUIRE(run_until(io, [&] { return client.received == "one\ntwo\nthree\n"; }));
    CHECK(got.size() == 3);
    client.socket.shutdown(asio::socket_base::shutdown_send);
    REQUIRE(run_until(io, [&] { return bool(ended); }));
    CHECK(ended == close_reason::peer_closed);
  }
#endif
}

TEST_CASE("with nobody receiving, a connection holds one message and stops reading instead of buffering") {
  asio::io_context io;
  one_connection server{io};
  raw_peer client{io};
  auto conn = server.accept_from(client);
  std::string flood;
  for (int i = 0; i < 20'000; ++i)
    flood += "line " + std::to_string(i) + " " + std::string(500, 'z') + "\n";  // about 10 MB
  client.write(flood);
  run_for(io, 300ms);
  CHECK(conn->counters().messages_received == 1);
  CHECK(conn->counters().bytes_received <= 64 * 1024);
  CHECK(conn->is_open());

  // Receiving takes the held message first, then reading resumes, one message per receive, in order.
  std::vector<std::string> got;
  std::function<void()> next = [&] {
    conn->async_receive([&](std::error_code ec, std::string message) {
      if (ec)
        return;
      got.push_back(message.substr(0, message.find(' ', 5)));
      if (got.size() < 5)
        next();
    });
  };
  next();
  REQUIRE(run_until(io, [&] { return got.size() == 5; }));
  CHECK(got == std::vector<std::string>{"line 0", "line 1", "line 2", "line 3", "line 4"});
  run_for(io, 100ms);
  CHECK(conn->counters().messages_received == 6);  // five received, the sixth held again
  CHECK(conn->counters().bytes_received <= 2 * 64 * 1024);
}

TEST_CASE("a pending async_receive takes the next message before on_message does") {
  asio::io_context io;
  one_connection server{io};
  std::vector<std::string> by_handler;
  server.ctx.on_message = [&](connection_type&, std::string_view line) { by_handler.emplace_back(line); };
  raw_peer client{io};
  auto conn = server.accept_from(client);
  std::optional<std::string> received;
  conn->async_receive([&](std::error_code, std::string message) { received = message; });
  client.write("first\nsecond\nthird\n");
  REQUIRE(run_until(io, [&] { return by_handler.size() == 2 && received.has_value(); }));
  CHECK(received == "first");
  CHECK(by_handler == std::vector<std::string>{"second", "third"});
  std::optional<std::error_code> refused;
  conn->async_receive([&](std::error_code ec, std::string) { refused = ec; });
  conn->async_receive([&](std::error_code ec, std::string) { refused = ec; });
  REQUIRE(run_until(io, [&] { return refused.has_value(); }));
  CHECK(*refused == tether::error::receive_pending);
}

TEST_CASE("automatic read pause: 50 MB to a slow reader arrive whole, with the queue bounded and no close") {
  asio::io_context io;
  constexpr std::size_t pause_above = 1024 * 1024;
  one_connection server{io, {.pause_reading_above = pause_above, .resume_reading_below = 256 * 1024}};
  std::size_t max_queued = 0;
  std::size_t drains = 0;
  server.ctx.on_message = [&](connection_type& conn, std::string_view line) {
    CHECK_FALSE(conn.send(line));
    max_queued = std::max(max_queued, conn.queued_bytes());
  };
  server.ctx.on_drain = [&](connection_type&) { ++drains; };

  asio::ip::tcp::socket client{io};
  client.connect(server.acceptor.local_endpoint());
  auto conn = connection_type::create(server.acceptor.accept(io), server.ctx, server.wheel);
  conn->start();

  std::string sent;
  sent.reserve(51 * 1024 * 1024);
  for (int i = 0; sent.size() < 50 * 1024 * 1024; ++i)
    sent += std::to_string(i) + " " + std::string(1000, static_cast<char>('a' + i % 26)) + "\n";
  asio::async_write(client, asio::buffer(sent), [](const std::error_code&, std::size_t) {});

  // The slow reader: 32 KiB, then a millisecond's pause.
  tether::test::slow_reader reader{client, 32 * 1024, 1ms};
  reader.start();
  REQUIRE(run_until(io, [&] { return reader.received.size() >= sent.size() || server.closed; }, scaled(120'000ms)));
  CHECK_FALSE(server.closed.has_value());
  CHECK(reader.received.size() == sent.size());
  CHECK(reader.received == sent);
  INFO("largest write queue " << max_queued << " bytes");
  CHECK(max_queued <= pause_above + 64 * 1024);
  CHECK(drains > 0);
  conn->abort();
}

TEST_CASE("a connection paused for a peer that takes nothing is closed after write_stall_timeout") {
  asio::io_context io;
  one_connection server{io, {.pause_reading_above = 64 * 1024, .resume_reading_below = 16 * 1024,
                             .write_stall_timeout = 300ms}};
  server.ctx.on_message = [](connection_type& conn, std::string_view line) { conn.send(line); };
  asio::ip::tcp::socket client{io};
  client.open(asio::ip::tcp::v4());
  tether::set_option(client, tether::sockopt::receive_buffer_size{16 * 1024});
  client.connect(server.acceptor.local_endpoint());
  auto conn = connection_type::create(server.acceptor.accept(io), server.ctx, server.wheel);
  tether::set_option(conn->socket(), tether::sockopt::send_buffer_size{16 * 1024});
  conn->start();
  const std::string flood(8 * 1024 * 1024, 'q');
  std::string lines;
  for (std::size_t at = 0; at < flood.size(); at += 1000)
    lines += flood.substr(at, 999) + "\n";
  asio::async_write(client, asio::buffer(lines), [](const std::error_code&, std::size_t) {});  // and never reads
  REQUIRE(run_until(io, [&] { return server.closed.has_value(); }, scaled(5000ms)));
  CHECK(*server.closed == close_reason::backpressure);
  CHECK(conn->close_detail() == "the peer took nothing for write_stall_timeout while reading was paused for the write queue");
}

TEST_CASE("a connection's own liveness numbers: a peer-declared keep-alive and a heartbeat interval set after accept") {
  asio::io_context io;
  using policy = tether::liveness<tether::peer_paced, tether::heartbeat>;
  using paced_connection = tether::connection<tether::line_codec, policy>;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {tether::test::loopback, 0}};
  tether::connection_context<tether::line_codec, policy> ctx{
      .liveness = policy{tether::peer_paced{.interval = 0ms, .multiplier = 1.5},
                         tether::heartbeat{.interval = 1h, .timeout = 1h}}};
  // "keepalive <ms>" declares the peer's pace, as an MQTT CONNECT does.
  ctx.on_message = [](paced_connection& conn, std::string_view line) {
    if (line.starts_with("keepalive ")) {
      const auto ms = std::stoi(std::string{line.substr(10)});
      conn.update_liveness<tether::peer_paced>([ms](tether::peer_paced::state& s) { s.declare(std::chrono::milliseconds{ms}); });
    }
  };
  std::map<const paced_connection*, std::pair<close_reason, std::chrono::steady_clock::time_point>> closes;
  ctx.on_close = [&](paced_connection& conn, close_reason why) { closes[&conn] = {why, std::chrono::steady_clock::now()}; };

  raw_peer steady{io};
  raw_peer gone{io};
  std::vector<std::shared_ptr<paced_connection>> served;
  for (raw_peer* peer : {&steady, &gone}) {
    peer->connect(acceptor.local_endpoint());
    peer->start_reading();
    served.push_back(paced_connection::create(acceptor.accept(io), ctx, wheel));
    served.back()->start();
    peer->write("keepalive 200\n");
  }
  // One heartbeat interval of its own, set on one connection after it started.
  served[0]->update_liveness<tether::heartbeat>([](tether::heartbeat::state& s) { s.set_interval(100ms); });

  const auto declared_at = std::chrono::steady_clock::now();
  asio::steady_timer pacer{io};
  std::function<void()> keep_talking = [&] {
    steady.write("still here\n");
    pacer.expires_after(150ms);
    pacer.async_wait([&](const std::error_code& ec) {
      if (!ec)
        keep_talking();
    });
  };
  keep_talking();
  run_for(io, 1000ms);
  pacer.cancel();
  CHECK(served[0]->is_open());
  // Its own 100 ms interval is shorter than the peer's 150 ms cadence: it pinged; the other, at the policy's hour,
  // never did.
  CHECK(served[0]->liveness_state<tether::heartbeat>().pings_sent() >= 3);
  CHECK(served[1]->liveness_state<tether::heartbeat>().pings_sent() == 0);
  REQUIRE(closes.contains(served[1].get()));
  CHECK(closes[served[1].get()].first == close_reason::peer_silent);
  const auto silent_for = closes[served[1].get()].second - declared_at;
  CHECK(silent_for >= 300ms);
  CHECK(tether::test::within_budget("peer_paced closes a silent peer", silent_for, 300ms + 10ms + scaled(150ms)));
}

TEST_CASE("mixed peers: heartbeat pings only the connections whose peer said it speaks them") {
  asio::io_context io;
  using policy = tether::liveness<tether::heartbeat, tether::idle_reaper>;
  using mixed_connection = tether::connection<tether::line_codec, policy>;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {tether::test::loopback, 0}};
  constexpr auto read_idle = 800ms;
  tether::connection_context<tether::line_codec, policy> ctx{
      .liveness = policy{tether::heartbeat{.interval = 100ms, .timeout = 100ms},
                         tether::idle_reaper{.read_idle = read_idle}}};
  // Plain clients are the default here; a tether client introduces itself.
  ctx.on_message = [](mixed_connection& conn, std::string_view line) {
    if (line == "hello tether")
      conn.update_liveness<tether::heartbeat>([](tether::heartbeat::state& s) { s.set_pinging(true); });
  };
  std::map<const mixed_connection*, close_reason> closes;
  ctx.on_close = [&](mixed_connection& conn, close_reason why) { closes[&conn] = why; };

  raw_peer plain{io};    // nc: never answers a ping, would print one as a line of data
  raw_peer speaker{io};  // answers pings as any tether peer does
  speaker.answer_pings = true;
  plain.close_on_eof = true;
  speaker.close_on_eof = true;
  std::vector<std::shared_ptr<mixed_connection>> served;
  for (raw_peer* peer : {&plain, &speaker}) {
    peer->connect(acceptor.local_endpoint());
    peer->start_reading();
    served.push_back(mixed_connection::create(acceptor.accept(io), ctx, wheel));
    served.back()->update_liveness<tether::heartbeat>([](tether::heartbeat::state& s) { s.set_pinging(false); });
    served.back()->start();
  }
  speaker.write("hello tether\n");

  const auto started = std::chrono::steady_clock::now();
  // Several heartbeat intervals and timeouts: the plain peer neither got a ping nor was declared dead.
  run_for(io, 500ms);
  CHECK(served[0]->is_open());
  CHECK(served[0]->liveness_state<tether::heartbeat>().pings_sent() == 0);
  CHECK(plain.received.empty());
  CHECK(served[1]->is_open());
  CHECK(served[1]->liveness_state<tether::heartbeat>().pings_sent() >= 2);
  CHECK(speaker.count("\x10ping") >= 2);

  // The silent plain peer is left to the reaper; the speaker, which goes on sending data, stays.
  while (!closes.contains(served[0].get()) && std::chrono::steady_clock::now() - started < scaled(3000ms)) {
    speaker.write("still here\n");
    run_for(io, 100ms);
  }
  REQUIRE(closes.contains(served[0].get()));
  CHECK(closes[served[0].get()] == close_reason::idle_timeout);
  CHECK(std::chrono::steady_clock::now() - started >= read_idle);
  CHECK(served[1]->is_open());
  served[1]->close();
  run_until(io, [&] { return closes.contains(served[1].get()); });
}

TEST_CASE("on_tcp_info_at_close hands over the kernel's view of the connection as it closed, before on_close") {
  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {tether::test::loopback, 0}};
  tether::connection_context<tether::line_codec> ctx;
  std::vector<std::string> order;
  std::optional<tether::sockopt::tcp_info> kernel_view;
  ctx.on_message = [](connection_type& conn, std::string_view line) { conn.send(line); };
  ctx.on_tcp_info_at_close = [&](connection_type&, close_reason why, const tether::sockopt::tcp_info& info) {
    order.push_back("tcp_info " + std::string{tether::close_reason_name(why)});
    kernel_view = info;
  };
  ctx.on_close = [&](connection_type&, close_reason why) {
    order.push_back("close " + std::string{tether::close_reason_name(why)});
  };
  raw_peer peer{io};
  peer.connect(acceptor.local_endpoint());
  peer.start_reading();
  auto conn = connection_type::create(acceptor.accept(io), ctx, wheel);
  conn->start();
  peer.write("one\ntwo\n");
  REQUIRE(run_until(io, [&] { return peer.received == "one\ntwo\n"; }));
  peer.socket.shutdown(asio::socket_base::shutdown_send);
  REQUIRE(run_until(io, [&] { return conn->is_closed(); }));
  CHECK(order == std::vector<std::string>{"tcp_info peer_closed", "close peer_closed"});
  REQUIRE(kernel_view);
  CHECK(kernel_view->rtt.count() > 0);  // measured on the echoes
  CHECK(kernel_view->unacked == 0);
  CHECK(kernel_view->state == tether::sockopt::tcp_state::close_wait);
}

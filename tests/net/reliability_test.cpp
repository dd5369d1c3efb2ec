// Closes that tell the truth: no queued byte dropped under a clean FIN, FIN rather than RST while bytes still
// arrive, no verdict based on a clock that went stale while this process stalled, and a connection reset before
// it started reported as what it was. Each was a defect found by attacking echo_server.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::raw_peer;
using tether::test::run_for;
using tether::test::run_until;
using tether::test::scaled;
using clock_type = std::chrono::steady_clock;

namespace {

using reaped_connection = tether::connection<tether::line_codec, tether::liveness<tether::idle_reaper>>;

struct close_record {
  close_reason reason;
  std::string detail;
  std::size_t discarded;
};

// A server side of one connection, reaped after `read_idle` without a whole line.
struct reaped_server {
  reaped_server(asio::io_context& context, std::chrono::milliseconds read_idle, std::chrono::milliseconds graceful)
      : io(context), wheel(context, {.tick = 10ms}), acceptor(context, {tether::test::loopback, 0}) {
    ctx.liveness = tether::liveness{tether::idle_reaper{.read_idle = read_idle}};
    ctx.options.graceful_close_timeout = graceful;
    ctx.on_message = [](reaped_connection& conn, std::string_view line) { conn.send(line); };
    ctx.on_close = [this](reaped_connection& conn, close_reason why) {
      closed = close_record{why, std::string{conn.close_detail()}, conn.discarded_bytes()};
    };
  }

  // small_buffers keeps the kernel from absorbing the answers, so that they wait in our own write queue.
  std::shared_ptr<reaped_connection> accept(bool small_buffers = false) {
    auto socket = acceptor.accept(io);
    if (small_buffers)
      tether::set_option(socket, tether::sockopt::send_buffer_size{32 * 1024});
    auto conn = reaped_connection::create(std::move(socket), ctx, wheel);
    conn->start();
    return conn;
  }

  asio::io_context& io;
  tether::timer_wheel wheel;
  asio::ip::tcp::acceptor acceptor;
  tether::connection_context<tether::line_codec, tether::liveness<tether::idle_reaper>> ctx;
  std::optional<close_record> closed;
};

// Lines a client sends without reading, so that their echoes pile up in the server's write queue.
std::string many_lines(std::size_t bytes) {
  std::string lines;
  for (int i = 0; lines.size() < bytes; ++i)
    lines += "line " + std::to_string(i) + " " + std::string(500, static_cast<char>('a' + i % 26)) + "\n";
  return lines;
}

// Reads what arrives until the stream ends and says how it ended.
struct draining_reader {
  explicit draining_reader(asio::ip::tcp::socket& s) : socket(s) {}
  void start() {
    socket.async_read_some(asio::buffer(buffer), [this](const std::error_code& ec, std::size_t n) {
      if (ec) {
        ended = ec;
        return;
      }
      received += n;
      start();
    });
  }
  asio::ip::tcp::socket& socket;
  std::array<char, 64 * 1024> buffer{};
  std::size_t received = 0;
  std::optional<std::error_code> ended;
};

} // namespace

TEST_CASE("an idle_timeout close delivers every queued answer before its FIN, or says it discarded them") {
  asio::io_context io;
  const std::string sent = many_lines(2 * 1024 * 1024);
  const auto small_peer = [&](asio::ip::tcp::socket& peer, const reaped_server& server) {
    peer.open(asio::ip::tcp::v4());
    tether::set_option(peer, tether::sockopt::receive_buffer_size{32 * 1024});
    peer.connect(server.acceptor.local_endpoint());
  };
  SECTION("the peer reads within the graceful period: every byte, then FIN") {
    reaped_server server{io, 300ms, scaled(5000ms)};
    asio::ip::tcp::socket peer{io};
    small_peer(peer, server);
    auto conn = server.accept(true);
    asio::async_write(peer, asio::buffer(sent), [](const std::error_code&, std::size_t) {});
    // Not reading: the answers fill the kernel's buffers and then our write queue, until the reaper decides.
    REQUIRE(run_until(io, [&] { return !conn->is_open(); }, scaled(5000ms)));
    CHECK(conn->queued_bytes() > 0);
    draining_reader reader{peer};
    reader.start();
    REQUIRE(run_until(io, [&] { return reader.ended.has_value(); }, scaled(10'000ms)));
    CHECK(*reader.ended == asio::error::eof);
    CHECK(reader.received == sent.size());
    peer.close();
    REQUIRE(run_until(io, [&] { return server.closed.has_value(); }));
    CHECK(server.closed->reason == close_reason::idle_timeout);
    CHECK(server.closed->discarded == 0);
  }
  SECTION("the peer reads nothing within the graceful period: RST, and the close counts what it discarded") {
    reaped_server server{io, 300ms, 300ms};
    asio::ip::tcp::socket peer{io};
    small_peer(peer, server);
    auto conn = server.accept(true);
    asio::async_write(peer, asio::buffer(sent), [](const std::error_code&, std::size_t) {});
    REQUIRE(run_until(io, [&] { return server.closed.has_value(); }, scaled(5000ms)));
    CHECK(server.closed->reason == close_reason::idle_timeout);
    CHECK(server.closed->discarded > 0);
    CHECK(server.closed->detail == "the peer did not take the queued data within graceful_close_timeout; it was discarded");
    draining_reader reader{peer};
    reader.start();
    REQUIRE(run_until(io, [&] { return reader.ended.has_value(); }, scaled(10'000ms)));
    CHECK(*reader.ended == asio::error::connection_reset);
    CHECK(reader.received < sent.size());
  }
}

TEST_CASE("bytes that keep arriving during a graceful close do not turn its FIN into a reset") {
  asio::io_context io;
  reaped_server server{io, 200ms, scaled(1000ms)};
  raw_peer trickler{io};
  trickler.connect(server.acceptor.local_endpoint());
  trickler.start_reading();
  auto conn = server.accept();

  // One byte every 5 ms of a line that never ends, on and on, through the reaper's decision and after it.
  asio::steady_timer pacer{io};
  int trickled = 0;
  std::function<void()> trickle = [&] {
    std::error_code ignored;
    asio::write(trickler.socket, asio::buffer(std::string_view{"x"}), ignored);
    ++trickled;
    pacer.expires_after(5ms);
    pacer.async_wait([&](const std::error_code& ec) {
      if (!ec && trickled < 200)
        trickle();
    });
  };
  trickle();
  REQUIRE(run_until(io, [&] { return trickler.closed; }, scaled(5000ms)));
  CHECK(trickler.error == asio::error::eof);
  run_for(io, 200ms);
  pacer.cancel();
  trickler.socket.close();
  REQUIRE(run_until(io, [&] { return server.closed.has_value(); }, scaled(5000ms)));
  CHECK(server.closed->reason == close_reason::idle_timeout);
}

TEST_CASE("a server that stalls does not reap the clients that kept talking to it meanwhile") {
  // The server runs on a thread of its own so the clients can keep sending while it stalls.
  asio::io_context server_io;
  auto guard = asio::make_work_guard(server_io);
  reaped_server server{server_io, 500ms, 1000ms};
  std::atomic<int> reaped{0};
  server.ctx.on_close = [&](reaped_connection&, close_reason why) {
    if (why == close_reason::idle_timeout)
      reaped.fetch_add(1);
  };

  constexpr int client_count = 5;
  asio::io_context client_io;
  std::vector<asio::ip::tcp::socket> clients;
  std::vector<std::shared_ptr<reaped_connection>> served;
  for (int i = 0; i < client_count; ++i) {
    clients.emplace_back(client_io);
    clients.back().connect(server.acceptor.local_endpoint());
    served.push_back(server.accept());
  }
  std::thread runner{[&] { server_io.run(); }};

  const auto talk_for = [&](std::chrono::milliseconds span) {
    const auto until = clock_type::now() + span;
    while (clock_type::now() < until) {
      for (auto& client : clients)
        asio::write(client, asio::buffer(std::string_view{"still here\n"}));
      std::this_thread::sleep_for(100ms);
    }
  };
  talk_for(300ms);
  // The server's only thread stops for three read_idle periods, as a stopped (SIGSTOP) or starved process does.
  asio::post(server_io, [] { std::this_thread::sleep_for(1500ms); });
  talk_for(2500ms);

  asio::post(server_io, [&] {
    for (const auto& conn : served)
      conn->abort();
    guard.reset();
  });
  runner.join();
  CHECK(reaped.load() == 0);
}

TEST_CASE("a connection reset before it starts is peer_reset from the address the accept returned") {
  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms}};
  asio::ip::tcp::acceptor acceptor{io, {tether::test::loopback, 0}};
  using connection_type = tether::connection<tether::line_codec, tether::liveness<tether::idle_reaper>>;
  tether::connection_context<tether::line_codec, tether::liveness<tether::idle_reaper>> ctx{
      .liveness = tether::liveness{tether::idle_reaper{.read_idle = 1s}}};
  tether::stats counted;
  ctx.stats = &counted;
  std::optional<close_reason> reason;
  ctx.on_close = [&](connection_type&, close_reason why) { reason = why; };

  asio::ip::tcp::socket client{io};
  client.connect(acceptor.local_endpoint());
  const auto client_address = client.local_endpoint();
  asio::ip::tcp::endpoint accepted_from;
  connection_type::socket_type accepted = acceptor.accept(io, accepted_from);
  tether::set_option(client, tether::sockopt::linger::abortive());
  client.close();  // the RST reaches the accepted socket before start() asks it anything
  std::this_thread::sleep_for(20ms);

  auto conn = connection_type::create(std::move(accepted), ctx, wheel, accepted_from);
  conn->start();
  REQUIRE(reason.has_value());
  CHECK(*reason == close_reason::peer_reset);
  CHECK(conn->close_detail() == "the peer reset the connection before it started");
  CHECK(conn->remote() == client_address);
  CHECK(conn->counters().bytes_received == 0);
  CHECK(counted.closed(close_reason::peer_reset) == 1);
  CHECK(counted.closed(close_reason::io_error) == 0);
}

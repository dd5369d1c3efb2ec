#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"

#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/tcp_keepalive.hpp>

#include <asio/experimental/as_tuple.hpp>
#include <asio/version.hpp>
#if ASIO_VERSION < 102400
#include <asio/experimental/deferred.hpp>
#else
#include <asio/deferred.hpp>
#endif

#include <algorithm>
#include <array>
#include <csignal>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::raw_peer;
using tether::test::run_for;
using tether::test::run_until;
using tether::test::scaled;
using tether::test::within_budget;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr auto tick = 10ms;

// One accepting side whose connections echo every data frame and record how they closed.
template <class Liveness = tether::liveness<>, class Codec = tether::line_codec>
struct echo_server {
  using connection_type = tether::connection<Codec, Liveness>;
  struct close_record {
    const connection_type* connection;
    close_reason reason;
    std::string detail;
    clock_type::time_point at;
  };

  explicit echo_server(asio::io_context& context, Liveness liveness = {}, tether::connection_options options = {},
                       Codec codec = {})
      : io(context), wheel(context, {.tick = tick}), acceptor(context, {tether::test::loopback, 0}) {
    settings.codec = codec;
    settings.liveness = liveness;
    settings.options = options;
    settings.stats = &stats;
    settings.on_message = [this](connection_type& connection, std::string_view payload) {
      REQUIRE_FALSE(closed(connection));
      messages.emplace_back(payload);
      connection.send(payload);
    };
    settings.on_close = [this](connection_type& connection, close_reason reason) {
      closes.push_back({&connection, reason, std::string{connection.close_detail()}, clock_type::now()});
    };
  }

  std::shared_ptr<connection_type> accept() {
    auto connection = connection_type::create(acceptor.accept(io), settings, wheel);
    connections.push_back(connection);
    connection->start();
    return connection;
  }

  std::shared_ptr<connection_type> accept_from(raw_peer& peer) {
    peer.connect(acceptor.local_endpoint());
    peer.start_reading();
    return accept();
  }

  const close_record* closed(const connection_type& connection) const {
    for (const auto& record : closes)
      if (record.connection == &connection)
        return &record;
    return nullptr;
  }

  asio::io_context& io;
  tether::timer_wheel wheel;
  asio::ip::tcp::acceptor acceptor;
  tether::stats stats;
  tether::connection_context<Codec, Liveness> settings;
  std::vector<std::shared_ptr<connection_type>> connections;
  std::vector<std::string> messages;
  std::vector<close_record> closes;
};

// Small socket buffers on both ends: a write of tens of kilobytes cannot complete before the peer reads.
template <class Server>
auto accept_with_small_buffers(Server& server, raw_peer& client) {
  client.socket.open(asio::ip::tcp::v4());
  tether::set_option(client.socket, tether::sockopt::receive_buffer_size{4096});
  auto connection = server.accept_from(client);
  tether::set_option(connection->socket(), tether::sockopt::send_buffer_size{4096});
  return connection;
}

std::chrono::milliseconds since(clock_type::time_point start, clock_type::time_point end) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(end - start);
}

} // namespace

TEST_CASE("data frames are echoed and control frames never reach user code") {
  asio::io_context io;
  echo_server server{io};
  raw_peer client{io};
  server.accept_from(client);

  client.write("hello\n\x10ping 42\n\x10\x10starts with DLE\nworld\r\n");
  const std::string expected = "hello\n\x10pong 42\n\x10\x10starts with DLE\nworld\n";
  REQUIRE(run_until(io, [&] { return client.received.size() >= expected.size(); }));
  CHECK(client.received == expected);
  CHECK(server.messages == std::vector<std::string>{"hello", "\x10starts with DLE", "world"});
}

TEST_CASE("a peer that closes or resets is reported as peer_closed or peer_reset exactly once") {
  asio::io_context io;
  echo_server server{io};
  raw_peer closing{io};
  raw_peer resetting{io};
  auto first = server.accept_from(closing);
  auto second = server.accept_from(resetting);

  closing.socket.shutdown(asio::socket_base::shutdown_send);
  tether::set_option(resetting.socket, tether::sockopt::linger::abortive());
  resetting.socket.close();
  REQUIRE(run_until(io, [&] { return server.closes.size() == 2; }));
  run_for(io, 50ms);
  REQUIRE(server.closes.size() == 2);
  CHECK(server.closed(*first)->reason == close_reason::peer_closed);
  CHECK(server.closed(*second)->reason == close_reason::peer_reset);
  CHECK(server.stats.closed(close_reason::peer_closed) == 1);
  CHECK(server.stats.closed(close_reason::peer_reset) == 1);
  CHECK(server.stats.live() == 0);
}

TEST_CASE("heartbeat closes a connection whose peer reads but never answers within interval plus timeout") {
  asio::io_context io;
  const tether::heartbeat policy{.interval = 200ms, .timeout = 200ms};
  echo_server server{io, tether::liveness{policy}};
  raw_peer silent{io};
  const auto start = clock_type::now();
  auto connection = server.accept_from(silent);

  REQUIRE(run_until(io, [&] { return server.closed(*connection) != nullptr; }));
  const auto detected = since(start, server.closed(*connection)->at);
  INFO("detected after " << detected.count() << " ms");
  CHECK(server.closed(*connection)->reason == close_reason::heartbeat_timeout);
  CHECK(detected >= policy.interval + policy.timeout);
  CHECK(within_budget("heartbeat detects a silent peer", detected, policy.interval + policy.timeout + tick + scaled(100ms)));
  CHECK(silent.count("\x10ping 1\n") == 1);
}

TEST_CASE("answered heartbeats keep an idle connection open and measure the round trip") {
  asio::io_context io;
  echo_server server{io, tether::liveness{tether::heartbeat{.interval = 100ms, .timeout = 100ms}}};
  std::vector<std::chrono::microseconds> rtts;
  server.settings.on_heartbeat = [&](auto&, std::chrono::microseconds rtt) { rtts.push_back(rtt); };
  raw_peer answering{io};
  answering.answer_pings = true;
  auto connection = server.accept_from(answering);

  run_for(io, 800ms);
  CHECK(connection->is_open());
  CHECK(rtts.size() >= 4);
  CHECK(server.stats.heartbeats() == rtts.size());
  const auto& heartbeat = connection->liveness_state<tether::heartbeat>();
  CHECK(heartbeat.min_rtt().count() > 0);
  CHECK(heartbeat.min_rtt() <= heartbeat.last_rtt());
}

TEST_CASE("a peer process stopped with SIGSTOP is caught by heartbeat but not by kernel keepalive") {
  asio::io_context io;
  const tether::heartbeat heartbeat_policy{.interval = 200ms, .timeout = 300ms};
  echo_server with_heartbeat{io, tether::liveness{heartbeat_policy}};
  const tether::tcp_keepalive keepalive_policy{.idle = 1s, .interval = 1s, .count = 1};
  echo_server with_keepalive{io, tether::liveness{keepalive_policy}};

  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The peer: a tether client that answers pings by itself, in its own process so it can be stopped.
    asio::io_context peer_io;
    tether::timer_wheel wheel{peer_io};
    tether::connection_context<tether::line_codec> settings;
    using peer_connection = tether::connection<tether::line_codec>;
    std::vector<std::shared_ptr<peer_connection>> peers;
    for (auto port : {with_heartbeat.acceptor.local_endpoint().port(), with_keepalive.acceptor.local_endpoint().port()}) {
      peer_connection::socket_type socket{peer_io};
      socket.connect({tether::test::loopback, port});
      peers.push_back(peer_connection::create(std::move(socket), settings, wheel));
      peers.back()->start();
    }
    peer_io.run_for(20s);
    ::_exit(0);
  }

  auto watched_by_heartbeat = with_heartbeat.accept();
  auto watched_by_keepalive = with_keepalive.accept();
  REQUIRE(run_until(io, [&] { return with_heartbeat.stats.heartbeats() >= 1; }));

  ::kill(child, SIGSTOP);
  const auto stopped = clock_type::now();
  REQUIRE(run_until(io, [&] { return with_heartbeat.closed(*watched_by_heartbeat) != nullptr; }));
  const auto detected = since(stopped, with_heartbeat.closed(*watched_by_heartbeat)->at);
  INFO("heartbeat detected the stopped peer after " << detected.count() << " ms");
  CHECK(with_heartbeat.closed(*watched_by_heartbeat)->reason == close_reason::heartbeat_timeout);
  CHECK(within_budget("heartbeat detects a SIGSTOPped peer", detected,
                      heartbeat_policy.interval + heartbeat_policy.timeout + tick + scaled(100ms)));

  // The stopped process's kernel still acknowledges keepalive probes, so keepalive sees a healthy peer even
  // well past its own detection bound (idle + interval * count).
  run_for(io, keepalive_policy.detection_bound() + 1500ms);
  CHECK(watched_by_keepalive->is_open());

  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(run_until(io, [&] { return with_keepalive.closed(*watched_by_keepalive) != nullptr; }));
}

TEST_CASE("busy connections are never pinged or reaped while idle ones are reaped within read_idle plus a tick") {
  asio::io_context io;
  const tether::idle_reaper reaper{.read_idle = 300ms};
  echo_server server{io, tether::liveness{tether::heartbeat{.interval = 200ms, .timeout = 1s}, reaper}};
  raw_peer busy{io};
  raw_peer idle{io};
  idle.answer_pings = true;
  idle.close_on_eof = true;
  const auto start = clock_type::now();
  auto busy_connection = server.accept_from(busy);
  auto idle_connection = server.accept_from(idle);

  asio::steady_timer pacer{io};
  std::function<void()> send_next = [&] {
    busy.write("tick\n");
    pacer.expires_after(50ms);
    pacer.async_wait([&](const std::error_code& ec) {
      if (!ec && busy_connection->is_open())
        send_next();
    });
  };
  send_next();

  run_for(io, 1200ms);
  pacer.cancel();
  CHECK(busy_connection->is_open());
  CHECK(busy.count("\x10ping") == 0);
  CHECK(busy.count("tick\n") >= 15);

  REQUIRE(server.closed(*idle_connection) != nullptr);
  CHECK(server.closed(*idle_connection)->reason == close_reason::idle_timeout);
  CHECK(server.closed(*idle_connection)->detail == "read idle");
  // An idle close is graceful: the peer sees our FIN when the reaper decides, and the close completes with its own.
  REQUIRE(idle.closed);
  CHECK(idle.error == asio::error::eof);
  const auto reaped = since(start, idle.closed_at);
  CHECK(reaped >= reaper.read_idle);
  CHECK(within_budget("read_idle reaps an idle peer", reaped, reaper.read_idle + tick + scaled(100ms)));
  // Heartbeats are not application activity: the pinged-and-answering idle peer was reaped all the same.
  CHECK(idle.count("\x10ping") >= 1);
}

TEST_CASE("a ping flood closes only the flooder") {
  asio::io_context io;
  echo_server server{io, tether::liveness{tether::heartbeat{.interval = 10s, .timeout = 5s,
                                                           .min_peer_ping_interval = 500ms, .max_ping_strikes = 3}}};
  raw_peer flooder{io};
  raw_peer polite{io};
  auto flooding = server.accept_from(flooder);
  auto serving = server.accept_from(polite);

  for (int i = 0; i < 10; ++i)
    flooder.write("\x10ping " + std::to_string(i) + "\n");
  REQUIRE(run_until(io, [&] { return server.closed(*flooding) != nullptr; }));
  CHECK(server.closed(*flooding)->reason == close_reason::ping_flood);

  polite.write("still here\n");
  REQUIRE(run_until(io, [&] { return polite.received == "still here\n"; }));
  CHECK(serving->is_open());
  CHECK(server.messages == std::vector<std::string>{"still here"});
}

TEST_CASE("malformed and oversized frames close with protocol_error while others keep echoing") {
  asio::io_context io;
  echo_server server{io, tether::liveness<>{}, {}, tether::line_codec{.max_line_length = 64}};
  raw_peer oversized{io};
  raw_peer garbage{io};
  raw_peer good{io};
  auto too_long = server.accept_from(oversized);
  auto unknown_control = server.accept_from(garbage);
  auto serving = server.accept_from(good);

  oversized.write(std::string(100, 'a'));  // no newline: refused before the line ends
  garbage.write("\x10reboot\n");
  good.write("fine\n");
  REQUIRE(run_until(io, [&] { return server.closes.size() == 2 && good.received == "fine\n"; }));
  CHECK(server.closed(*too_long)->reason == close_reason::protocol_error);
  CHECK(server.closed(*unknown_control)->reason == close_reason::protocol_error);
  CHECK_FALSE(server.closed(*too_long)->detail.empty());
  CHECK(serving->is_open());
  CHECK(server.messages == std::vector<std::string>{"fine"});
}

TEST_CASE("a graceful close delivers every byte queued before it") {
  asio::io_context io;
  echo_server server{io};
  raw_peer client{io};
  auto connection = server.accept_from(client);

  std::mt19937 random{42};
  std::uniform_int_distribution<int> printable{' ', '~'};
  std::string expected;
  for (int line = 0; line < 2000; ++line) {
    std::string payload(500, ' ');
    for (auto& c : payload)
      c = static_cast<char>(printable(random));
    REQUIRE_FALSE(connection->send(payload));
    expected += payload + "\n";
  }
  connection->close();
  CHECK_FALSE(connection->is_open());
  CHECK(connection->send("too late") == tether::error::connection_not_open);

  REQUIRE(run_until(io, [&] { return client.closed; }));
  CHECK(client.error == asio::error::eof);
  CHECK(client.received.size() == expected.size());
  CHECK(client.received == expected);
  // The peer's FIN completes the close.
  client.socket.shutdown(asio::socket_base::shutdown_send);
  REQUIRE(run_until(io, [&] { return server.closed(*connection) != nullptr; }));
  CHECK(server.closed(*connection)->reason == close_reason::local_close);
}

TEST_CASE("close reasons are delivered exactly once when both sides close at the same moment") {
  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = tick}};
  asio::ip::tcp::acceptor acceptor{io, {tether::test::loopback, 0}};
  using connection_type = tether::connection<tether::line_codec>;
  std::map<const connection_type*, std::vector<close_reason>> reasons;
  int messages_after_close = 0;
  tether::connection_context<tether::line_codec> settings;
  settings.on_close = [&](connection_type& c, close_reason why) { reasons[&c].push_back(why); };
  settings.on_message = [&](connection_type& c, std::string_view) { messages_after_close += reasons.count(&c) ? 1 : 0; };

  for (const bool abort_one : {false, true}) {
    reasons.clear();
    connection_type::socket_type client_socket{io};
    client_socket.connect(acceptor.local_endpoint());
    auto server_side = connection_type::create(acceptor.accept(io), settings, wheel);
    auto client_side = connection_type::create(std::move(client_socket), settings, wheel);
    server_side->start();
    client_side->start();
    client_side->send("in flight");
    server_side->send("in flight too");
    asio::post(io, [&] {
      if (abort_one)
        client_side->abort();
      else
        client_side->close();
      server_side->close();
    });
    REQUIRE(run_until(io, [&] { return reasons.size() == 2; }));
    run_for(io, 100ms);
    CHECK(reasons[server_side.get()].size() == 1);
    CHECK(reasons[client_side.get()].size() == 1);
    CHECK(reasons[client_side.get()].front() == close_reason::local_close);
    // A graceful close the peer ends with a reset does not end as a clean one: its reason says so.
    CHECK(reasons[server_side.get()].front() == (abort_one ? close_reason::peer_reset : close_reason::local_close));
    if (abort_one)
      CHECK(server_side->close_detail() == "the peer reset the connection during a graceful close");
    server_side->close();
    client_side->abort();
    CHECK(reasons[client_side.get()].size() == 1);
  }
  CHECK(messages_after_close == 0);
}

TEST_CASE("a peer that never reads trips the write queue bound") {
  asio::io_context io;
  const std::string block(64 * 1024, 'x');

  SECTION("closing with backpressure keeps memory bounded") {
    echo_server server{io, tether::liveness<>{}, {.write_high_water = 1024 * 1024}};
    raw_peer stalled{io};
    stalled.connect(server.acceptor.local_endpoint());  // connected but never reading
    auto connection = server.accept();
    std::size_t max_queued = 0;
    std::error_code ec;
    for (int i = 0; i < 10'000 && !ec; ++i) {
      ec = connection->send(block);
      max_queued = std::max(max_queued, connection->queued_bytes());
      io.poll();
    }
    CHECK(ec == tether::error::write_queue_full);
    CHECK(max_queued <= 1024 * 1024);
    REQUIRE(server.closed(*connection) != nullptr);
    CHECK(server.closed(*connection)->reason == close_reason::backpressure);
  }
  SECTION("refusing keeps the connection open and lets the caller decide") {
    echo_server server{io, tether::liveness<>{},
                       {.write_high_water = 1024 * 1024, .on_overflow = tether::connection_options::overflow::refuse}};
    raw_peer stalled{io};
    stalled.connect(server.acceptor.local_endpoint());
    auto connection = server.accept();
    std::error_code ec;
    for (int i = 0; i < 10'000 && !ec; ++i) {
      ec = connection->send(block);
      io.poll();
    }
    CHECK(ec == tether::error::write_queue_full);
    CHECK(ec == std::errc::no_buffer_space);
    CHECK(connection->is_open());
    CHECK(connection->queued_bytes() <= 1024 * 1024);
  }
}

TEST_CASE("a payload the codec cannot carry is refused without closing") {
  asio::io_context io;
  echo_server server{io};
  raw_peer client{io};
  auto connection = server.accept_from(client);
  CHECK(connection->send("two\nlines") == tether::error::frame_not_encodable);
  CHECK(connection->is_open());
  CHECK_FALSE(connection->send("one line"));
  REQUIRE(run_until(io, [&] { return client.received == "one line\n"; }));
}

TEST_CASE("async_send follows the completion-token convention") {
  asio::io_context io;
  echo_server server{io};
  raw_peer client{io};
  auto connection = accept_with_small_buffers(server, client);

  SECTION("callbacks complete in order once written, and with the close reason after a close") {
    std::vector<std::string> completed;
    for (const char* line : {"one", "two", "three"})
      connection->async_send(line, [&completed, line](std::error_code ec) { completed.push_back(ec ? ec.message() : line); });
    connection->async_send("bad\nline", [&](std::error_code ec) { completed.push_back(ec.message()); });
    REQUIRE(run_until(io, [&] { return completed.size() == 4; }));
    // The refusal is posted at once; each write completes when the kernel has taken it, which for short lines
    // is at once too, so only the order of the writes among themselves is promised.
    const auto refused = tether::make_error_code(tether::error::frame_not_encodable).message();
    CHECK(std::count(completed.begin(), completed.end(), refused) == 1);
    std::erase(completed, refused);
    CHECK(completed == std::vector<std::string>{"one", "two", "three"});
    REQUIRE(run_until(io, [&] { return client.received == "one\ntwo\nthree\n"; }));

    std::error_code after_abort;
    connection->async_send(std::string(60'000, 'x'), [&](std::error_code ec) { after_abort = ec; });
    connection->abort();
    REQUIRE(run_until(io, [&] { return bool(after_abort); }));
    CHECK(after_abort == tether::close_reason::local_close);
  }
  SECTION("use_future") {
    std::future<void> written = connection->async_send("future", asio::use_future);
    REQUIRE(run_until(io, [&] { return written.wait_for(0s) == std::future_status::ready; }));
    CHECK_NOTHROW(written.get());
  }
#if defined(ASIO_HAS_CO_AWAIT)
  SECTION("use_awaitable") {
    std::error_code result = tether::error::connection_not_open;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto [ec] = co_await connection->async_send("awaited", asio::experimental::as_tuple(asio::use_awaitable));
          result = ec;
        },
        asio::detached);
    REQUIRE(run_until(io, [&] { return client.received == "awaited\n"; }));
    REQUIRE(run_until(io, [&] { return !result; }));
  }
#else
  WARN("SKIPPED use_awaitable: this compiler and Asio 1.22 have no co_await support (the g++ build covers it)");
#endif
}

namespace {
#if ASIO_VERSION >= 102400
constexpr auto deferred_token = asio::deferred;
#else
constexpr auto deferred_token = asio::experimental::deferred;
#endif

// A payload on the heap (too long for the small-string buffer), so a dangling view would read freed memory.
std::string heap_payload(char fill) { return std::string(100, fill) + " sent as a temporary"; }

// Allocates and fills roughly what heap_payload() freed, so bytes read through a dangling view would be '#'.
void clobber_freed_memory() {
  std::vector<std::string> clobber;
  for (int i = 0; i < 8; ++i)
    clobber.emplace_back(std::string(120, '#'));
}
} // namespace

TEST_CASE("async_send never reads its payload after returning, whatever the token") {
  asio::io_context io;
  echo_server server{io};
  raw_peer client{io};
  auto connection = server.accept_from(client);
  std::optional<std::error_code> completed;
  char fill = 'x';

  SECTION("a callback") {
    fill = 'c';
    connection->async_send(heap_payload(fill), [&](std::error_code ec) { completed = ec; });
    clobber_freed_memory();
  }
  SECTION("use_future") {
    fill = 'f';
    std::future<void> done = connection->async_send(heap_payload(fill), asio::use_future);
    clobber_freed_memory();
    REQUIRE(run_until(io, [&] { return done.wait_for(0s) == std::future_status::ready; }));
    done.get();
    completed = std::error_code{};
  }
  SECTION("deferred, initiated after the payload is gone") {
    fill = 'd';
    auto operation = connection->async_send(heap_payload(fill), deferred_token);
    clobber_freed_memory();
    std::move(operation)([&](std::error_code ec) { completed = ec; });
  }
#if defined(ASIO_HAS_CO_AWAIT)
  SECTION("use_awaitable, stored and then awaited") {
    fill = 'a';
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto operation = connection->async_send(heap_payload(fill), asio::experimental::as_tuple(asio::use_awaitable));
          clobber_freed_memory();
          auto [ec] = co_await std::move(operation);
          completed = ec;
        },
        asio::detached);
  }
#endif
  REQUIRE(run_until(io, [&] { return completed.has_value(); }));
  CHECK_FALSE(*completed);
  const std::string expected = heap_payload(fill) + "\n";
  REQUIRE(run_until(io, [&] { return client.received.size() >= expected.size(); }));
  CHECK(client.received == expected);
}

TEST_CASE("a deferred async_send on a connection that closed before it was initiated reports the close") {
  asio::io_context io;
  echo_server server{io};
  raw_peer client{io};
  auto connection = accept_with_small_buffers(server, client);
  auto never_written = connection->async_send(std::string(60'000, 'x'), deferred_token);
  connection->abort();
  std::optional<std::error_code> completed;
  std::move(never_written)([&](std::error_code ec) { completed = ec; });
  REQUIRE(run_until(io, [&] { return completed.has_value(); }));
  CHECK(*completed == close_reason::local_close);
}

TEST_CASE("a half-closed peer still receives every answer before the connection closes") {
  asio::io_context io;
  echo_server server{io};
  raw_peer client{io};
  auto connection = server.accept_from(client);

  std::string sent;
  for (int line = 0; line < 200; ++line)
    sent += std::string(10'000, static_cast<char>('a' + line % 26)) + "\n";
  client.write(sent);
  REQUIRE(run_until(io, [&] { return server.messages.size() == 200; }));
  client.socket.shutdown(asio::socket_base::shutdown_send);

  REQUIRE(run_until(io, [&] { return client.closed; }, scaled(10'000ms)));
  CHECK(client.error == asio::error::eof);
  CHECK(client.received.size() == sent.size());
  CHECK(client.received == sent);
  REQUIRE(server.closed(*connection) != nullptr);
  CHECK(server.closed(*connection)->reason == close_reason::peer_closed);
}

TEST_CASE("a slowloris trickling bytes without ever finishing a line is reaped") {
  asio::io_context io;
  const tether::idle_reaper reaper{.read_idle = 500ms};
  echo_server server{io, tether::liveness{reaper}};
  raw_peer trickler{io};
  raw_peer honest{io};
  const auto start = clock_type::now();
  trickler.close_on_eof = true;
  auto trickling = server.accept_from(trickler);
  auto serving = server.accept_from(honest);

  asio::steady_timer pacer{io};
  std::function<void()> trickle = [&] {
    trickler.write("x");
    honest.write("real line\n");
    pacer.expires_after(100ms);
    pacer.async_wait([&](const std::error_code& ec) {
      if (!ec && !trickler.closed)
        trickle();
    });
  };
  trickle();
  REQUIRE(run_until(io, [&] { return server.closed(*trickling) != nullptr; }));
  pacer.cancel();
  REQUIRE(trickler.closed);
  CHECK(trickler.error == asio::error::eof);
  const auto reaped = since(start, trickler.closed_at);
  CHECK(server.closed(*trickling)->reason == close_reason::idle_timeout);
  CHECK(within_budget("read_idle reaps a slowloris", reaped, reaper.read_idle + tick + scaled(150ms)));
  CHECK(serving->is_open());
  CHECK(honest.count("real line\n") >= 4);
}

TEST_CASE("random bytes close only the connection that sent them") {
  asio::io_context io;
  echo_server server{io, tether::liveness<>{}, {}, tether::length_prefixed_codec{}};
  raw_peer noisy{io};
  raw_peer framed{io};
  auto noise = server.accept_from(noisy);
  auto serving = server.accept_from(framed);

  std::mt19937 random{7};
  std::string garbage(64 * 1024, '\0');
  for (auto& byte : garbage)
    byte = static_cast<char>(random());
  noisy.write(garbage);
  std::string frame;
  tether::length_prefixed_codec{}.encode(tether::frame_kind::data, "still framed", frame);
  framed.write(frame);

  REQUIRE(run_until(io, [&] { return server.closed(*noise) != nullptr && framed.received == frame; }));
  CHECK(server.closed(*noise)->reason == close_reason::protocol_error);
  CHECK(serving->is_open());
  CHECK(server.messages == std::vector<std::string>{"still framed"});
}

TEST_CASE("a pong waiting unread in our own receive queue is not a dead peer") {
  asio::io_context io;
  const tether::heartbeat policy{.interval = 100ms, .timeout = 100ms};
  echo_server server{io, tether::liveness{policy}};
  raw_peer peer{io};
  auto connection = server.accept_from(peer);
  REQUIRE(run_until(io, [&] { return peer.count("\x10ping 1\n") == 1; }));

  // This side stalls, as a starved process would, past the ping's timeout. When it runs again, a timer that
  // expired just before the wheel's tick answers the ping: the pong is in our receive queue when the wheel
  // decides, but no read handler has seen it yet.
  asio::steady_timer answer_late{io, 1ms};
  answer_late.async_wait([&](const std::error_code&) { asio::write(peer.socket, asio::buffer(std::string_view{"\x10pong 1\n"})); });
  std::this_thread::sleep_for(policy.interval + policy.timeout + 100ms);
  run_for(io, 30ms);
  CHECK(connection->is_open());
  CHECK(server.closed(*connection) == nullptr);
}

namespace {

// A strategy of the test's own: every `every` of silence it sends a probe ping with a payload of its choosing and
// remembers the pongs that answer it; when `patience` probes in a row go unanswered it closes with its own detail.
struct probe_strategy {
  std::chrono::milliseconds every{100};
  int patience = 2;

  struct state {
    clock_type::time_point last_probe{};
    int unanswered = 0;
    int answered = 0;
    int sent = 0;
  };
  static constexpr bool needs_control_frames = true;

  clock_type::time_point next_deadline(const state& s, const tether::activity& seen) const noexcept {
    return std::max(seen.received, s.last_probe) + every;
  }

  tether::verdict on_deadline(state& s, const tether::activity& seen, clock_type::time_point now) const noexcept {
    if (now < std::max(seen.received, s.last_probe) + every)
      return tether::verdict::none();
    if (s.unanswered >= patience)
      return tether::verdict::close(close_reason::heartbeat_timeout, "the test's probe went unanswered");
    return tether::verdict::send(tether::frame_kind::ping, "probe " + std::to_string(s.sent + 1));
  }

  void on_sent(state& s, const tether::control_frame&, std::error_code ec, clock_type::time_point now) const noexcept {
    if (ec)
      return;
    s.last_probe = now;
    ++s.sent;
    ++s.unanswered;
  }

  tether::verdict on_control(state& s, const tether::control_frame& frame, clock_type::time_point) const noexcept {
    if (frame.kind == tether::frame_kind::pong && frame.payload.starts_with("probe ")) {
      s.unanswered = 0;
      ++s.answered;
    }
    return tether::verdict::none();
  }
};

// line_codec, except that it cannot encode pings: every heartbeat ping is refused by the codec.
struct pingless_line_codec : tether::line_codec {
  bool encode(tether::frame_kind kind, std::string_view payload, std::string& out) const {
    return kind != tether::frame_kind::ping && line_codec::encode(kind, payload, out);
  }
};

} // namespace

TEST_CASE("a strategy written outside the library sends its own control frames and closes with its own verdict") {
  asio::io_context io;
  using policy = tether::liveness<probe_strategy>;
  echo_server server{io, policy{probe_strategy{}}};
  raw_peer answering{io};
  answering.answer_pings = true;
  raw_peer mute{io};
  auto kept = server.accept_from(answering);
  auto dropped = server.accept_from(mute);

  REQUIRE(run_until(io, [&] { return server.closed(*dropped) != nullptr; }, scaled(3000ms)));
  CHECK(server.closed(*dropped)->reason == close_reason::heartbeat_timeout);
  CHECK(server.closed(*dropped)->detail == "the test's probe went unanswered");
  CHECK(mute.count("\x10ping probe 1\n") == 1);
  CHECK(mute.count("\x10ping probe 2\n") == 1);
  CHECK(kept->is_open());
  const auto& probes = kept->liveness_state<probe_strategy>();
  CHECK(probes.answered >= 2);
  CHECK(probes.answered == probes.sent - probes.unanswered);
  CHECK(answering.count("\x10ping probe 1\n") == 1);
}

TEST_CASE("a ping the connection cannot queue is not waited for, so a peer whose bytes keep arriving stays") {
  asio::io_context io;
  const tether::heartbeat policy{.interval = 100ms, .timeout = 100ms};
  using server_type = echo_server<tether::liveness<tether::heartbeat>, pingless_line_codec>;
  server_type server{io, tether::liveness{policy}};
  raw_peer talking{io};
  raw_peer silent{io};
  auto kept = server.accept_from(talking);
  auto dropped = server.accept_from(silent);

  // Every 150 ms, longer than the interval: each time a ping is due and refused by the codec.
  asio::steady_timer pacer{io};
  std::function<void()> talk = [&] {
    talking.write("still here\n");
    pacer.expires_after(150ms);
    pacer.async_wait([&](const std::error_code& ec) {
      if (!ec)
        talk();
    });
  };
  talk();
  run_for(io, 1200ms);
  pacer.cancel();
  CHECK(kept->is_open());
  CHECK(kept->liveness_state<tether::heartbeat>().pings_sent() == 0);
  CHECK(talking.count("\x10ping") == 0);
  REQUIRE(server.closed(*dropped) != nullptr);
  CHECK(server.closed(*dropped)->reason == close_reason::heartbeat_timeout);
  CHECK(server.closed(*dropped)->detail == "nothing arrived within the heartbeat timeout and our ping could not be queued");
}

TEST_CASE("with overflow::refuse and a peer that does not read, heartbeat keeps a connection whose bytes arrive") {
  asio::io_context io;
  const tether::heartbeat policy{.interval = 100ms, .timeout = 100ms};
  echo_server server{io, tether::liveness{policy},
                     {.write_high_water = 256 * 1024, .on_overflow = tether::connection_options::overflow::refuse}};
  raw_peer stalled{io};
  stalled.connect(server.acceptor.local_endpoint());  // sends, never reads
  auto connection = server.accept();

  // Fill our write queue past the high-water mark: the kernel buffers fill and sends are refused.
  const std::string block(64 * 1024, 'x');
  std::error_code refused;
  for (int i = 0; i < 1000 && !refused; ++i) {
    refused = connection->send(block);
    io.poll();
  }
  REQUIRE(refused == tether::error::write_queue_full);

  asio::steady_timer pacer{io};
  std::function<void()> talk = [&] {
    stalled.write("still here\n");
    pacer.expires_after(150ms);
    pacer.async_wait([&](const std::error_code& ec) {
      if (!ec)
        talk();
    });
  };
  talk();
  run_for(io, 1200ms);
  pacer.cancel();
  CHECK(connection->is_open());
  CHECK(server.closed(*connection) == nullptr);
}

TEST_CASE("a busy connection reads into a buffer of its own and gives it back after busy_window without reads") {
  asio::io_context io;
  using reaping_late = tether::liveness<tether::idle_reaper>;
  const reaping_late policy{tether::idle_reaper{.read_idle = 1h}};
  const auto window = scaled(200ms);
  raw_peer client{io};
  const auto echoed = [&](const std::string& lines) {
    const std::size_t expected = client.received.size() + lines.size();
    client.write(lines);
    return run_until(io, [&] { return client.received.size() >= expected; });
  };

  SECTION("with a timed strategy") {
    echo_server<reaping_late> server{io, policy, {.busy_window = window}};
    auto conn = server.accept_from(client);
    run_for(io, window + scaled(50ms));
    REQUIRE(echoed("first, long after the open\n"));
    CHECK_FALSE(conn->busy());
    REQUIRE(echoed("second, at once\n"));
    CHECK_FALSE(conn->busy());
    REQUIRE(echoed("third, at once\n"));
    CHECK_FALSE(conn->busy());
    REQUIRE(echoed("fourth: the third in a row within the window\n"));
    CHECK(conn->busy());
    // Frames larger than the 4 KiB busy buffer, and several in one segment, arrive whole.
    std::string burst;
    for (int i = 0; i < 20; ++i)
      burst += std::string(static_cast<std::size_t>(100 + i * 1500), static_cast<char>('a' + i)) + "\n";
    REQUIRE(echoed(burst));
    CHECK(conn->busy());
    REQUIRE(run_until(io, [&] { return !conn->busy(); }, window + 5 * tick + scaled(200ms)));
    CHECK(conn->queued_bytes() == 0);
    REQUIRE(echoed("after giving it back\n"));
    for (const char* line : {"again\n", "and again\n"}) {
      REQUIRE(echoed(line));
      CHECK_FALSE(conn->busy());
    }
    REQUIRE(echoed("busy again\n"));
    CHECK(conn->busy());
    CHECK(client.received == "first, long after the open\nsecond, at once\nthird, at once\nfourth: the third in a "
                             "row within the window\n" +
                                 burst + "after giving it back\nagain\nand again\nbusy again\n");
    CHECK(server.closes.empty());
  }
  SECTION("a handshake's two reads followed by silence leave the connection idle") {
    echo_server<reaping_late> server{io, policy, {.busy_window = window}};
    auto conn = server.accept_from(client);
    REQUIRE(echoed("hello\n"));
    REQUIRE(echoed("finished\n"));
    CHECK_FALSE(conn->busy());
  }
  SECTION("a zero window keeps every read on the idle path") {
    echo_server<reaping_late> server{io, policy, {.busy_window = 0ms}};
    auto conn = server.accept_from(client);
    for (int i = 0; i < 5; ++i) {
      REQUIRE(echoed("line\n"));
      CHECK_FALSE(conn->busy());
    }
  }
  SECTION("a connection without a timed strategy has no wheel node to give the buffer back with: never busy") {
    echo_server server{io};
    auto conn = server.accept_from(client);
    for (int i = 0; i < 5; ++i) {
      REQUIRE(echoed("line\n"));
      CHECK_FALSE(conn->busy());
    }
  }
  SECTION("a negative window is refused, naming the field") {
    const tether::connection_options negative{.busy_window = -1ms};
    CHECK(negative.validate() == tether::error::busy_window_negative);
    CHECK(make_error_code(tether::error::busy_window_negative).message() ==
          "connection_options.busy_window must be at least 0ms");
  }
}

TEST_CASE("a busy connection delivers every byte through partial frames and read pauses") {
  asio::io_context io;
  using reaping_late = tether::liveness<tether::idle_reaper>;
  echo_server<reaping_late> server{io, reaping_late{tether::idle_reaper{.read_idle = 1h}},
                                   {.pause_reading_above = 64 * 1024, .resume_reading_below = 16 * 1024}};
  std::size_t read_while_busy = 0;
  server.settings.on_message = [&](auto& conn, std::string_view line) {
    read_while_busy += conn.busy() ? 1 : 0;
    conn.send(line);
  };
  asio::ip::tcp::socket client{io};
  client.connect(server.acceptor.local_endpoint());
  auto conn = server.accept();

  // Lines from 1 byte to 9 KB, so frames start and end anywhere in the 4 KiB reads.
  std::mt19937 random{17};
  std::uniform_int_distribution<std::size_t> length{1, 9000};
  std::string sent;
  for (int i = 0; sent.size() < 4 * 1024 * 1024; ++i)
    sent += std::string(length(random), static_cast<char>('a' + i % 26)) + "\n";
  asio::async_write(client, asio::buffer(sent), [](const std::error_code&, std::size_t) {});

  // A reader slow enough that the queue passes pause_reading_above and reading pauses again and again.
  tether::test::slow_reader reader{client, 16 * 1024, 200us};
  reader.start();
  REQUIRE(run_until(io, [&] { return reader.received.size() >= sent.size() || !server.closes.empty(); },
                    scaled(60'000ms)));
  CHECK(server.closes.empty());
  CHECK(reader.received == sent);
  CHECK(read_while_busy > 0);
  conn->abort();
}

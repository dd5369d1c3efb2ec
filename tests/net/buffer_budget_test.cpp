// A ceiling on what many connections buffer together: hoarders of partial frames and peers that never read are
// closed, largest first, with over_budget, while the others are served; a send that finds no one larger to close
// is refused or closes its own connection, as the options say.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"

#include <tether/buffer_budget.hpp>
#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/connector.hpp>
#include <tether/listener.hpp>

#include <asio.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::test::run_until;
using tether::test::scaled;

namespace {

constexpr std::size_t mib = 1024 * 1024;

// A length_prefixed_codec data frame's header announcing `length` bytes of payload.
std::string frame_header(std::uint32_t length) {
  return {static_cast<char>(length >> 24), static_cast<char>(length >> 16), static_cast<char>(length >> 8),
          static_cast<char>(length), '\0'};
}

// A client socket that writes what it is given and reads whatever comes back, noting how the stream ended.
struct raw_client {
  explicit raw_client(asio::io_context& io, std::size_t receive_buffer = 0) : socket(io) {
    socket.open(asio::ip::tcp::v4());
    if (receive_buffer != 0)
      tether::set_option(socket, tether::sockopt::receive_buffer_size{static_cast<int>(receive_buffer)});
  }
  void connect(const asio::ip::tcp::endpoint& server) { socket.connect(server); }
  void write(std::string bytes) {
    auto owned = std::make_shared<std::string>(std::move(bytes));
    ++pending;
    asio::async_write(socket, asio::buffer(*owned), [this, owned](const std::error_code& ec, std::size_t n) {
      --pending;
      written += n;
      if (ec && !ended)
        write_error = ec;
    });
  }
  void read() {
    ++pending;
    socket.async_read_some(asio::buffer(buffer), [this](const std::error_code& ec, std::size_t n) {
      --pending;
      if (ec) {
        ended = ec;
        return;
      }
      received.append(buffer.data(), n);
      read();
    });
  }
  asio::ip::tcp::socket socket;
  std::array<char, 64 * 1024> buffer{};
  std::string received;
  std::size_t written = 0;
  std::optional<std::error_code> ended;
  std::optional<std::error_code> write_error;
  int pending = 0;  // operations whose handlers still point at this client
};

struct close_record {
  close_reason reason;
  std::string detail;
  std::size_t discarded;
};

} // namespace

TEST_CASE("a buffer budget closes the connections hoarding the most partial frame first and serves the others") {
  asio::io_context io;
  constexpr std::size_t budget = 4 * mib;
  using listener_type = tether::listener<tether::length_prefixed_codec>;
  listener_type server{io, {.buffer_budget = budget}};
  server.on_message([](auto& conn, std::string_view payload) { conn.send(payload); });
  std::map<std::uint16_t, close_record> closes;  // by the client's port
  std::uint64_t most_buffered = 0;
  server.on_close([&](auto& conn, close_reason why) {
    closes[conn.remote().port()] = {why, std::string{conn.close_detail()}, conn.discarded_bytes()};
    most_buffered = std::max(most_buffered, server.stats().buffered_bytes());
  });
  REQUIRE_FALSE(server.start());

  // Twelve hoarders announce a 1 MB frame and send 680 KB of it: 8 MB together, where the 4 MB budget holds six.
  constexpr std::size_t hoarders = 12;
  constexpr std::size_t hoarded = 680 * 1024;
  std::vector<std::unique_ptr<raw_client>> hoarding;
  for (std::size_t i = 0; i < hoarders; ++i) {
    auto client = std::make_unique<raw_client>(io);
    client->connect(server.local_endpoint());
    client->read();
    client->write(frame_header(1'000'000) + std::string(hoarded, 'h'));
    REQUIRE(run_until(io, [&] { return client->written == hoarded + 5; }));
    // The server has read it all once the budget holds it, or once the client was closed for it.
    REQUIRE(run_until(io, [&] {
      return closes.size() + server.stats().buffered_bytes() / hoarded >= i + 1;
    }));
    hoarding.push_back(std::move(client));
  }
  REQUIRE(run_until(io, [&] { return closes.size() >= hoarders - budget / hoarded; }));
  CHECK(server.stats().buffered_bytes() <= budget);
  CHECK(most_buffered <= budget + 64 * 1024);
  for (const auto& [port, closed] : closes) {
    CHECK(closed.reason == close_reason::over_budget);
    CHECK(closed.detail ==
          "closed to make room in the buffer budget: it held more buffered data than the connection that needed "
          "room; what it buffered was discarded");
  }
  CHECK(server.stats().closed(close_reason::over_budget) == closes.size());
  // Each one closed was told with a reset, not a FIN that would say its frame had been taken.
  for (const auto& client : hoarding) {
    if (closes.contains(client->socket.local_endpoint().port())) {
      REQUIRE(run_until(io, [&] { return client->ended.has_value(); }));
      CHECK(*client->ended == asio::error::connection_reset);
    }
  }

  // A client with a 100 KB message gets it echoed whole, the budget being full: a hoarder makes room.
  const std::size_t closed_before = closes.size();
  raw_client honest{io};
  honest.connect(server.local_endpoint());
  honest.read();
  const std::string message(100 * 1024, 'm');
  honest.write(frame_header(static_cast<std::uint32_t>(message.size())) + message);
  REQUIRE(run_until(io, [&] { return honest.received.size() == message.size() + 5; }));
  CHECK(honest.received.substr(5) == message);
  CHECK(closes.size() > closed_before);
  CHECK_FALSE(closes.contains(honest.socket.local_endpoint().port()));

  // Everything buffered is given back as the connections go.
  for (const auto& client : hoarding)
    client->socket.close();
  honest.socket.close();
  REQUIRE(run_until(io, [&] {
    return honest.pending == 0 &&
           std::all_of(hoarding.begin(), hoarding.end(), [](const auto& client) { return client->pending == 0; });
  }));
  hoarding.clear();
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
  CHECK(server.stats().buffered_bytes() == 0);
}

TEST_CASE("a listener's shards each keep an even share of its buffer budget") {
  asio::io_context io;
  constexpr std::size_t budget = 4 * mib;
  tether::listener<tether::length_prefixed_codec> server{io, {.shards = 2, .buffer_budget = budget}};
  std::atomic<std::size_t> over_budget{0};
  server.on_close([&](auto&, close_reason why) { over_budget += why == close_reason::over_budget ? 1 : 0; });
  REQUIRE_FALSE(server.start());

  // Shard 0 deals connections out in turn: eight hoarders of 680 KB per shard, where each 2 MB share holds three.
  constexpr std::size_t hoarded = 680 * 1024;
  std::vector<std::unique_ptr<raw_client>> hoarding;
  for (int i = 0; i < 16; ++i) {
    auto client = std::make_unique<raw_client>(io);
    client->connect(server.local_endpoint());
    client->write(frame_header(1'000'000) + std::string(hoarded, 'h'));
    hoarding.push_back(std::move(client));
  }
  REQUIRE(run_until(io, [&] {
    return std::all_of(hoarding.begin(), hoarding.end(), [](const auto& c) { return c->pending == 0; });
  }));
  REQUIRE(run_until(io, [&] { return over_budget.load() == 10 && server.stats().buffered_bytes() == 6 * (hoarded + 5); }));
  CHECK(server.stats().closed(close_reason::over_budget) == 10);
  CHECK(server.connections() == 6);
  for (const auto& client : hoarding)
    client->socket.close();
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
  CHECK(server.stats().buffered_bytes() == 0);
}

TEST_CASE("a buffer budget closes a peer that does not read for a smaller one, and refuses a send no one can make "
          "room for") {
  asio::io_context io;
  constexpr std::size_t budget = 2 * mib;
  const auto overflow = GENERATE(tether::connection_options::overflow::refuse,
                                 tether::connection_options::overflow::close);
  using listener_type = tether::listener<tether::line_codec>;
  listener_type server{io, {.buffer_budget = budget}, tether::line_codec{.max_line_length = 128 * 1024}, {},
                       {.write_high_water = 16 * mib, .on_overflow = overflow}};
  std::vector<listener_type::connection_type*> served;
  server.on_accept([&](auto& conn) {
    // Small kernel buffers keep the answers in our own queue, where the budget sees them.
    tether::set_option(conn.socket(), tether::sockopt::send_buffer_size{16 * 1024});
    served.push_back(&conn);
  });
  std::map<listener_type::connection_type*, close_record> closes;
  server.on_close([&](auto& conn, close_reason why) {
    closes[&conn] = {why, std::string{conn.close_detail()}, conn.discarded_bytes()};
  });
  REQUIRE_FALSE(server.start());

  raw_client stalled{io, 16 * 1024};
  raw_client downloader{io, 16 * 1024};
  stalled.connect(server.local_endpoint());
  REQUIRE(run_until(io, [&] { return served.size() == 1; }));
  downloader.connect(server.local_endpoint());
  REQUIRE(run_until(io, [&] { return served.size() == 2; }));
  auto* const to_stalled = served[0];
  auto* const to_downloader = served[1];
  const std::string chunk(100 * 1024 - 1, 'd');

  // 1.5 MB for a peer that reads nothing: within the budget, so all of it is queued.
  for (int i = 0; i < 15; ++i)
    REQUIRE_FALSE(to_stalled->send(chunk));
  CHECK(server.stats().buffered_bytes() > mib);

  // 1 MB for another peer that does not read yet: the stalled peer holds more, so it is the one closed.
  for (int i = 0; i < 10; ++i)
    REQUIRE_FALSE(to_downloader->send(chunk));
  REQUIRE(closes.contains(to_stalled));
  CHECK(closes[to_stalled].reason == close_reason::over_budget);
  CHECK(closes[to_stalled].discarded > 0);
  stalled.read();
  REQUIRE(run_until(io, [&] { return stalled.ended.has_value(); }));
  CHECK(*stalled.ended == asio::error::connection_reset);

  // Now the downloader holds the most: a send past the budget has no one to close but its own connection.
  int queued = 10;
  std::error_code refused;
  while (!refused && queued < 40) {
    refused = to_downloader->send(chunk);
    queued += refused ? 0 : 1;
  }
  CHECK(refused == tether::error::buffer_budget_exhausted);
  CHECK(server.stats().buffered_bytes() <= budget);
  downloader.read();
  if (overflow == tether::connection_options::overflow::refuse) {
    // Refused, not closed: everything queued before the refusal arrives, line by line.
    CHECK(to_downloader->is_open());
    const std::size_t expected = static_cast<std::size_t>(queued) * (chunk.size() + 1);
    REQUIRE(run_until(io, [&] { return downloader.received.size() == expected; }, scaled(10'000ms)));
    CHECK(downloader.received == [&] {
      std::string lines;
      for (int i = 0; i < queued; ++i)
        lines.append(chunk).push_back('\n');
      return lines;
    }());
    REQUIRE(run_until(io, [&] { return server.stats().buffered_bytes() == 0; }));
    CHECK_FALSE(to_downloader->send("room again"));
  } else {
    REQUIRE(closes.contains(to_downloader));
    CHECK(closes[to_downloader].reason == close_reason::over_budget);
    CHECK(closes[to_downloader].detail ==
          "a send found the buffer budget used up by connections holding less than this one; its queue was "
          "discarded");
    CHECK(closes[to_downloader].discarded > 0);
    REQUIRE(run_until(io, [&] { return downloader.ended.has_value(); }));
    CHECK(*downloader.ended == asio::error::connection_reset);
  }
  server.stop(0ms);
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
  CHECK(server.stats().buffered_bytes() == 0);
}

TEST_CASE("connectors sharing a buffer budget close the one holding the most partial frame") {
  asio::io_context io;
  auto acceptor = tether::test::make_listener(io);
  tether::stats budget_stats;
  tether::buffer_budget budget{1 * mib, &budget_stats};
  using connector_type = tether::connector<tether::length_prefixed_codec>;
  const tether::connector_options options{.service = std::to_string(acceptor.local_endpoint().port()),
                                          .budget = &budget};
  connector_type first{io, options};
  connector_type second{io, options};
  std::map<connector_type*, close_reason> closes;
  first.on_close([&](auto&, close_reason why) { closes[&first] = why; });
  second.on_close([&](auto&, close_reason why) { closes[&second] = why; });
  std::string delivered;
  second.on_message([&](auto&, std::string_view payload) { delivered = payload; });
  const auto accept_one = [&] {
    std::optional<asio::ip::tcp::socket> accepted;
    acceptor.async_accept([&](const std::error_code& ec, asio::ip::tcp::socket s) {
      if (!ec)
        accepted.emplace(std::move(s));
    });
    REQUIRE(run_until(io, [&] { return accepted.has_value(); }));
    return std::move(*accepted);
  };

  // Written asynchronously: the peers read only while the loop runs.
  const auto write = [](asio::ip::tcp::socket& to, std::string bytes) {
    auto owned = std::make_shared<std::string>(std::move(bytes));
    asio::async_write(to, asio::buffer(*owned), [owned](const std::error_code&, std::size_t) {});
  };

  REQUIRE_FALSE(first.start());
  asio::ip::tcp::socket to_first = accept_one();
  REQUIRE_FALSE(second.start());
  asio::ip::tcp::socket to_second = accept_one();

  // 700 KB of a frame to the first, then 400 KB to the second: together past 1 MB, and the first holds more.
  write(to_first, frame_header(1'000'000) + std::string(700 * 1024, 'a'));
  REQUIRE(run_until(io, [&] { return budget.used() >= 700 * 1024; }));
  write(to_second, frame_header(1'000'000) + std::string(400 * 1024, 'b'));
  REQUIRE(run_until(io, [&] { return closes.contains(&first); }));
  CHECK(closes[&first] == close_reason::over_budget);
  CHECK_FALSE(closes.contains(&second));
  REQUIRE(run_until(io, [&] { return budget.used() >= 400 * 1024; }));
  CHECK(budget.used() <= 1 * mib);
  CHECK(budget.evictions() == 1);
  CHECK(budget_stats.buffered_bytes() == budget.used());

  // The rest of the second frame arrives and is delivered; the budget is empty again.
  write(to_second, std::string(1'000'000 - 400 * 1024, 'b'));
  REQUIRE(run_until(io, [&] { return delivered.size() == 1'000'000; }));
  CHECK(budget.used() == 0);
  CHECK(budget_stats.buffered_bytes() == 0);
  second.stop();
  first.stop();
  run_until(io, [] { return false; }, 50ms);
}

// The WebSocket codec on real sockets: tether in both roles, and raw peers that break the protocol.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"

#include <tether/codec/websocket_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>

#include <asio.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace std::string_literals;
using tether::close_reason;
using tether::test::raw_peer;
using tether::test::run_for;
using tether::test::run_until;
using tether::test::scaled;

namespace {

using policy = tether::liveness<tether::heartbeat>;
using ws_connection = tether::connection<tether::websocket_codec, policy>;

struct ws_pair {
  explicit ws_pair(asio::io_context& context, tether::heartbeat server_heartbeat = {.interval = 1h, .timeout = 1h})
      : io(context), wheel(context, {.tick = 10ms}), acceptor(context, {tether::test::loopback, 0}) {
    server_ctx.codec = tether::websocket_codec{.path = "/echo"};
    server_ctx.liveness = policy{server_heartbeat};
    server_ctx.on_message = [](ws_connection& conn, std::string_view message) {
      if (conn.received_binary())
        conn.send_binary(message);
      else
        conn.send(message);
    };
    server_ctx.on_close = [this](ws_connection& conn, close_reason why) { closes[&conn] = why; };
    client_ctx.codec = tether::websocket_codec{.side = tether::websocket_codec::role::client, .path = "/echo"};
    // The server may ping as often as it likes: the client's own heartbeat is off in effect (an hour).
    client_ctx.liveness = policy{tether::heartbeat{.interval = 1h, .timeout = 1h, .min_peer_ping_interval = 0ms}};
    client_ctx.on_message = [this](ws_connection& conn, std::string_view message) {
      echoes.push_back((conn.received_binary() ? "binary:"s : "text:"s) + std::string{message});
    };
    client_ctx.on_close = [this](ws_connection& conn, close_reason why) { closes[&conn] = why; };
  }

  void connect() {
    ws_connection::socket_type socket{io};
    socket.connect(acceptor.local_endpoint());
    client = ws_connection::create(std::move(socket), client_ctx, wheel);
    server = ws_connection::create(acceptor.accept(io), server_ctx, wheel);
    server->start();
    client->start();
  }

  asio::io_context& io;
  tether::timer_wheel wheel;
  asio::ip::tcp::acceptor acceptor;
  tether::connection_context<tether::websocket_codec, policy> server_ctx;
  tether::connection_context<tether::websocket_codec, policy> client_ctx;
  std::shared_ptr<ws_connection> server;
  std::shared_ptr<ws_connection> client;
  std::vector<std::string> echoes;
  std::map<const ws_connection*, close_reason> closes;
};

std::string masked_frame(std::uint8_t first, std::string_view payload) {
  const std::string key = "\x01\x02\x03\x04";
  std::string frame{static_cast<char>(first), static_cast<char>(0x80 | payload.size())};
  frame += key;
  for (std::size_t i = 0; i < payload.size(); ++i)
    frame += static_cast<char>(payload[i] ^ key[i % 4]);
  return frame;
}

const std::string handshake = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

// The status code of the first close frame in what an unmasked (server) stream sent, 0 if there is none.
std::uint16_t close_code_in(std::string_view received) {
  const auto start = received.find("\r\n\r\n");
  std::size_t at = start == std::string_view::npos ? 0 : start + 4;
  while (at + 2 <= received.size()) {
    const auto opcode = static_cast<std::uint8_t>(received[at]) & 0x0F;
    const std::size_t length = static_cast<std::uint8_t>(received[at + 1]) & 0x7F;
    if (opcode == 8 && length >= 2 && at + 4 <= received.size())
      return static_cast<std::uint16_t>(static_cast<std::uint8_t>(received[at + 2]) << 8 |
                                        static_cast<std::uint8_t>(received[at + 3]));
    at += 2 + length;
  }
  return 0;
}

} // namespace

TEST_CASE("websocket: tether in both roles echoes text as text and binary as binary, frames sent early wait") {
  asio::io_context io;
  ws_pair pair{io};
  pair.connect();
  // Sent before the handshake completed: held until it has, then delivered in order.
  REQUIRE_FALSE(pair.client->send("hello"));
  REQUIRE_FALSE(pair.client->send_binary("\x00\x01\xff"s));
  const std::string big(70 * 1024, 'x');
  REQUIRE_FALSE(pair.client->send(big));
  REQUIRE(run_until(io, [&] { return pair.echoes.size() == 3; }));
  CHECK(pair.echoes[0] == "text:hello");
  CHECK(pair.echoes[1] == "binary:\x00\x01\xff"s);
  CHECK(pair.echoes[2] == "text:" + big);
  CHECK(pair.server->codec_state().handshake_done());
  CHECK(pair.client->codec_state().handshake_done());
}

TEST_CASE("websocket: heartbeat pings are answered by the peer's codec, and a graceful close carries its code") {
  asio::io_context io;
  ws_pair pair{io, tether::heartbeat{.interval = 100ms, .timeout = 200ms}};
  std::vector<std::chrono::microseconds> rtts;
  pair.server_ctx.on_heartbeat = [&](ws_connection&, std::chrono::microseconds rtt) { rtts.push_back(rtt); };
  pair.connect();
  run_for(io, 700ms);
  CHECK(rtts.size() >= 3);
  CHECK(pair.server->is_open());

  SECTION("the server goes away: 1001 reaches the client, both close cleanly") {
    REQUIRE_FALSE(pair.server->send_goaway());
    REQUIRE(run_until(io, [&] { return pair.closes.size() == 2; }));
    CHECK(pair.client->codec_state().peer_close_code() == 1001);
    CHECK(pair.closes[pair.client.get()] == close_reason::peer_closed);
    CHECK(pair.closes[pair.server.get()] == close_reason::shutdown);
  }
  SECTION("the client closes: 1000 and peer_closed on the server") {
    pair.client->close();
    REQUIRE(run_until(io, [&] { return pair.closes.size() == 2; }));
    CHECK(pair.server->codec_state().peer_close_code() == 1000);
    CHECK(pair.closes[pair.server.get()] == close_reason::peer_closed);
    CHECK(pair.closes[pair.client.get()] == close_reason::local_close);
  }
}

TEST_CASE("websocket: hostile input is closed with the code and reason it calls for, others unaffected") {
  asio::io_context io;
  ws_pair pair{io};
  pair.connect();
  std::map<std::string, std::pair<std::string, std::uint16_t>> cases{
      {"unmasked", {"\x81\x02hi"s, 1002}},
      {"invalid utf-8", {masked_frame(0x81, "\xC0\xAF"s), 1007}},
      {"oversized control", {"\x89\xFE\x00\x7E\x01\x02\x03\x04"s + std::string(126, 'p'), 1002}},
      {"fragmented control", {masked_frame(0x09, "p"), 1002}},
      {"2^63 length", {"\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00"s, 1002}},
      {"too big", {"\x82\xFF\x00\x00\x00\x00\x10\x00\x00\x00"s, 1009}},
  };
  std::vector<std::unique_ptr<raw_peer>> peers;
  std::vector<std::shared_ptr<ws_connection>> served;
  for (const auto& [name, input] : cases) {
    peers.push_back(std::make_unique<raw_peer>(io));
    served.push_back(nullptr);
    auto& peer = *peers.back();
    peer.close_on_eof = true;
    peer.connect(pair.acceptor.local_endpoint());
    peer.start_reading();
    served.back() = ws_connection::create(pair.acceptor.accept(io), pair.server_ctx, pair.wheel);
    served.back()->start();
    peer.write(handshake + input.first);
  }
  REQUIRE(run_until(io, [&] {
    return std::all_of(peers.begin(), peers.end(), [](const auto& peer) { return peer->closed; }) &&
           std::all_of(served.begin(), served.end(), [&](const auto& conn) { return pair.closes.contains(conn.get()); });
  }, scaled(5000ms)));
  std::size_t i = 0;
  for (const auto& [name, input] : cases) {
    INFO(name);
    CHECK(peers[i]->received.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    CHECK(close_code_in(peers[i]->received) == input.second);
    CHECK(peers[i]->error == asio::error::eof);  // the close frame, then FIN: not a reset
    CHECK(pair.closes[served[i].get()] == close_reason::protocol_error);
    ++i;
  }
  // The well-behaved pair is untouched.
  REQUIRE_FALSE(pair.client->send("still here"));
  REQUIRE(run_until(io, [&] { return !pair.echoes.empty(); }));
  CHECK(pair.echoes.back() == "text:still here");
}

TEST_CASE("websocket: bad handshakes get their HTTP status and handshake_failed, a slow one times out") {
  asio::io_context io;
  ws_pair pair{io};
  pair.server_ctx.codec.handshake_timeout = 300ms;
  std::map<std::string, std::pair<std::string, std::string>> cases{
      {"malformed", {"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request"}},
      {"version 8", {"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
                     "HTTP/1.1 426 Upgrade Required"}},
      {"oversized", {"GET /echo HTTP/1.1\r\nX: " + std::string(10'000, 'x'), "HTTP/1.1 431 Request Header Fields Too Large"}},
      {"slowloris", {"GET /echo HTTP/1.1\r\nHost:", ""}},
  };
  std::vector<std::unique_ptr<raw_peer>> peers;
  std::vector<std::shared_ptr<ws_connection>> served;
  for (const auto& [name, input] : cases) {
    peers.push_back(std::make_unique<raw_peer>(io));
    auto& peer = *peers.back();
    peer.close_on_eof = true;
    peer.connect(pair.acceptor.local_endpoint());
    peer.start_reading();
    served.push_back(ws_connection::create(pair.acceptor.accept(io), pair.server_ctx, pair.wheel));
    served.back()->start();
    peer.write(input.first);
  }
  REQUIRE(run_until(io, [&] {
    return std::all_of(served.begin(), served.end(), [&](const auto& conn) { return pair.closes.contains(conn.get()); });
  }, scaled(5000ms)));
  std::size_t i = 0;
  for (const auto& [name, input] : cases) {
    INFO(name);
    CHECK(pair.closes[served[i].get()] == close_reason::handshake_failed);
    if (!input.second.empty())
      CHECK(peers[i]->received.starts_with(input.second + "\r\n"));
    else
      CHECK(std::string{served[i]->close_detail()} == "the handshake did not complete within handshake_timeout");
    ++i;
  }
}

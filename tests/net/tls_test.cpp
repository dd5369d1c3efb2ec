// TLS under the codecs (tether/tls.hpp) on loopback, with certificates the test makes itself: tether in both
// roles, liveness unchanged over TLS, and the peers TLS must refuse.
#include "catch.hpp"

#include "loopback.hpp"
#include "peers.hpp"
#include "test_certificates.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/codec/websocket_codec.hpp>
#include <tether/connection.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/tls.hpp>

#include <asio.hpp>

#include <map>
#include <memory>
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

template <class Inner>
struct tls_pair {
  using policy = tether::liveness<tether::heartbeat, tether::idle_reaper>;
  using codec_type = tether::tls_codec<Inner>;
  using connection_type = tether::connection<codec_type, policy>;

  tls_pair(asio::io_context& context, const tether::test::test_certificates& files, Inner server_inner,
           Inner client_inner, std::string server_name = "localhost", std::string server_certificate = {},
           std::string ca = {})
      : io(context), wheel(context, {.tick = 10ms}), acceptor(context, {tether::test::loopback, 0}) {
    std::error_code ec;
    auto server_context = tether::tls_server_context(
        server_certificate.empty() ? files.server_certificate_file() : server_certificate, files.server_key_file(), ec);
    REQUIRE(server_context);
    auto client_context = tether::tls_client_context(ca.empty() ? files.ca_file() : ca, ec);
    REQUIRE(client_context);
    server_ctx.codec = codec_type{.inner = std::move(server_inner), .context = server_context,
                                  .handshake_timeout = scaled(2000ms)};
    client_ctx.codec = codec_type{.inner = std::move(client_inner), .context = client_context,
                                  .side = tether::tls_role::client, .server_name = std::move(server_name)};
    const tether::heartbeat quiet{.interval = 1h, .timeout = 1h, .min_peer_ping_interval = 0ms};
    server_ctx.liveness = policy{quiet, tether::idle_reaper{}};
    client_ctx.liveness = policy{quiet, tether::idle_reaper{}};
    server_ctx.on_message = [](connection_type& conn, std::string_view message) {
      if (conn.received_binary())
        conn.send_binary(message);
      else
        conn.send(message);
    };
    client_ctx.on_message = [this](connection_type&, std::string_view message) { echoes.emplace_back(message); };
    for (auto* ctx : {&server_ctx, &client_ctx})
      ctx->on_close = [this](connection_type& conn, close_reason why) {
        closes[&conn] = {why, std::string{conn.close_detail()}};
      };
  }

  void connect() {
    typename connection_type::socket_type socket{io};
    socket.connect(acceptor.local_endpoint());
    client = connection_type::create(std::move(socket), client_ctx, wheel);
    server = connection_type::create(acceptor.accept(io), server_ctx, wheel);
    server->start();
    client->start();
  }

  bool both_closed() const { return closes.size() == 2; }

  asio::io_context& io;
  tether::timer_wheel wheel;
  asio::ip::tcp::acceptor acceptor;
  tether::connection_context<codec_type, policy> server_ctx;
  tether::connection_context<codec_type, policy> client_ctx;
  std::shared_ptr<connection_type> server;
  std::shared_ptr<connection_type> client;
  std::vector<std::string> echoes;
  std::map<const connection_type*, std::pair<close_reason, std::string>> closes;
};

} // namespace

TEST_CASE("tls: the line codec over TLS in both roles, heartbeat pinging inside it, close_notify on close") {
  asio::io_context io;
  const tether::test::test_certificates files;
  tls_pair<tether::line_codec> pair{io, files, {}, {}};
  pair.server_ctx.liveness = decltype(pair)::policy{tether::heartbeat{.interval = 100ms, .timeout = 300ms},
                                                    tether::idle_reaper{}};
  std::vector<std::chrono::microseconds> rtts;
  pair.server_ctx.on_heartbeat = [&](auto&, std::chrono::microseconds rtt) { rtts.push_back(rtt); };
  pair.connect();
  // Before the handshake: held, then sent in order once TLS is up.
  REQUIRE_FALSE(pair.client->send("first"));
  REQUIRE_FALSE(pair.client->send(std::string(100'000, 'x').substr(0, 60'000)));
  REQUIRE(run_until(io, [&] { return pair.echoes.size() == 2; }));
  CHECK(pair.echoes[0] == "first");
  CHECK(pair.echoes[1].size() == 60'000);
  CHECK(pair.client->codec_state().version() == "TLSv1.3");
  CHECK(pair.server->codec_state().tls_established());

  run_for(io, 700ms);  // idle: the server's heartbeat pings, encrypted, and the client answers them
  CHECK(rtts.size() >= 3);
  CHECK(pair.server->is_open());
  CHECK(pair.server->counters().bytes_received > pair.server->counters().messages_received);

  pair.client->close();
  REQUIRE(run_until(io, [&] { return pair.both_closed(); }));
  CHECK(pair.closes[pair.client.get()].first == close_reason::local_close);
  CHECK(pair.closes[pair.server.get()].first == close_reason::peer_closed);
}

TEST_CASE("tls: WebSocket over TLS (wss) in both roles echoes text and binary and closes with its codes") {
  asio::io_context io;
  const tether::test::test_certificates files;
  tls_pair<tether::websocket_codec> pair{io, files, tether::websocket_codec{.path = ""},
                                         tether::websocket_codec{.side = tether::websocket_codec::role::client}};
  pair.connect();
  REQUIRE_FALSE(pair.client->send("über TLS"));
  REQUIRE_FALSE(pair.client->send_binary("\x00\x01\x02"s));
  REQUIRE(run_until(io, [&] { return pair.echoes.size() == 2; }));
  CHECK(pair.echoes[0] == "über TLS");
  CHECK(pair.echoes[1] == "\x00\x01\x02"s);
  CHECK(pair.server->codec_state().inner().handshake_done());
  REQUIRE_FALSE(pair.server->send_goaway());
  REQUIRE(run_until(io, [&] { return pair.both_closed(); }));
  CHECK(pair.client->codec_state().inner().peer_close_code() == 1001);
  CHECK(pair.closes[pair.client.get()].first == close_reason::peer_closed);
  CHECK(pair.closes[pair.server.get()].first == close_reason::shutdown);
}

TEST_CASE("tls: a silent peer is caught by heartbeat and an idle one reaped, as over plain TCP") {
  asio::io_context io;
  const tether::test::test_certificates files;
  tls_pair<tether::line_codec> pair{io, files, {}, {}};
  SECTION("heartbeat") {
    pair.server_ctx.liveness = decltype(pair)::policy{tether::heartbeat{.interval = 100ms, .timeout = 100ms},
                                                      tether::idle_reaper{}};
    // The client answers nothing: its own codec's pongs are what a heartbeat needs, so it must not run at all.
    pair.connect();
    REQUIRE(run_until(io, [&] { return pair.echoes.empty() && pair.server->codec_state().tls_established(); }));
    pair.client->pause_reading();  // a hung peer: its kernel acknowledges, nothing answers
    REQUIRE(run_until(io, [&] { return pair.closes.contains(pair.server.get()); }, scaled(3000ms)));
    CHECK(pair.closes[pair.server.get()].first == close_reason::heartbeat_timeout);
  }
  SECTION("idle reaper") {
    pair.server_ctx.liveness = decltype(pair)::policy{tether::heartbeat{.interval = 1h, .timeout = 1h},
                                                      tether::idle_reaper{.read_idle = 200ms}};
    pair.connect();
    REQUIRE(run_until(io, [&] { return pair.both_closed(); }, scaled(3000ms)));
    CHECK(pair.closes[pair.server.get()].first == close_reason::idle_timeout);
    CHECK(pair.closes[pair.client.get()].first == close_reason::peer_closed);
  }
}

TEST_CASE("tls: peers TLS must refuse are closed with a reason saying why, within the handshake timeout") {
  asio::io_context io;
  const tether::test::test_certificates files;
  using pair_type = tls_pair<tether::line_codec>;

  SECTION("a plaintext client on the TLS port") {
    pair_type pair{io, files, {}, {}};
    raw_peer plain{io};
    plain.close_on_eof = true;
    plain.connect(pair.acceptor.local_endpoint());
    plain.start_reading();
    auto served = pair_type::connection_type::create(pair.acceptor.accept(io), pair.server_ctx, pair.wheel);
    served->start();
    plain.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    REQUIRE(run_until(io, [&] { return pair.closes.contains(served.get()); }, scaled(3000ms)));
    CHECK(pair.closes[served.get()].first == close_reason::handshake_failed);
    INFO(pair.closes[served.get()].second);
    CHECK(pair.closes[served.get()].second == "http request");
  }
  SECTION("a handshake that never starts (slowloris before TLS)") {
    pair_type pair{io, files, {}, {}};
    pair.server_ctx.codec.handshake_timeout = 300ms;
    raw_peer mute{io};
    mute.connect(pair.acceptor.local_endpoint());
    mute.start_reading();
    auto served = pair_type::connection_type::create(pair.acceptor.accept(io), pair.server_ctx, pair.wheel);
    const auto started = std::chrono::steady_clock::now();
    served->start();
    REQUIRE(run_until(io, [&] { return pair.closes.contains(served.get()); }, scaled(3000ms)));
    CHECK(pair.closes[served.get()].first == close_reason::handshake_failed);
    CHECK(pair.closes[served.get()].second == "the handshake did not complete within handshake_timeout");
    CHECK(std::chrono::steady_clock::now() - started >= 300ms);
  }
  const auto client_refuses = [&](pair_type& pair, const std::string& expected) {
    pair.connect();
    REQUIRE(run_until(io, [&] { return pair.closes.contains(pair.client.get()); }, scaled(3000ms)));
    CHECK(pair.closes[pair.client.get()].first == close_reason::handshake_failed);
    CHECK(pair.closes[pair.client.get()].second == expected);
  };
  SECTION("a server whose certificate another CA signed") {
    pair_type pair{io, files, {}, {}, "localhost", {}, files.other_ca_file()};
    client_refuses(pair, "unable to get local issuer certificate");
  }
  SECTION("an expired server certificate") {
    pair_type pair{io, files, {}, {}, "localhost", files.expired_certificate_file()};
    client_refuses(pair, "certificate has expired");
  }
  SECTION("a certificate for another host") {
    pair_type pair{io, files, {}, {}, "wrong.example"};
    client_refuses(pair, "hostname mismatch");
  }
  SECTION("an address the certificate does not carry, and one it does") {
    pair_type wrong{io, files, {}, {}, "127.0.0.2"};
    client_refuses(wrong, "IP address mismatch");
    pair_type right{io, files, {}, {}, "127.0.0.1"};
    right.connect();
    REQUIRE_FALSE(right.client->send("by address"));
    REQUIRE(run_until(io, [&] { return right.echoes.size() == 1; }));
  }
}

TEST_CASE("tls: a listener keeps its limits over TLS, serves others while a handshake stalls, and stops gracefully") {
  using codec_type = tether::tls_codec<tether::line_codec>;
  using connection_type = tether::connection<codec_type>;
  asio::io_context io;
  const tether::test::test_certificates files;
  std::error_code ec;
  const auto server_context = tether::tls_server_context(files.server_certificate_file(), files.server_key_file(), ec);
  const auto client_context = tether::tls_client_context(files.ca_file(), ec);
  REQUIRE(server_context);
  REQUIRE(client_context);
  constexpr auto handshake_timeout = scaled(1000ms);

  tether::listener<codec_type> server{io, {.max_connections = 2},
                                      codec_type{.context = server_context, .handshake_timeout = handshake_timeout}};
  std::vector<close_reason> server_closes;
  std::vector<std::string> rejections;
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  server.on_close([&](auto&, close_reason why) { server_closes.push_back(why); });
  server.on_reject([&](const auto&, close_reason why, std::string_view detail) {
    CHECK(why == close_reason::limit_exceeded);
    rejections.emplace_back(detail);
  });
  REQUIRE_FALSE(server.start());

  tether::timer_wheel wheel{io, {.tick = 10ms}};
  tether::connection_context<codec_type> client_ctx;
  client_ctx.codec = codec_type{.context = client_context, .side = tether::tls_role::client, .server_name = "localhost"};
  std::vector<std::string> echoes;
  std::map<const connection_type*, close_reason> client_closes;
  std::size_t goaways = 0;
  constexpr std::size_t expected_echoes = 201;
  // What a polite client does after a goaway: take every answer it is owed, then leave.
  client_ctx.on_message = [&](connection_type& conn, std::string_view line) {
    echoes.emplace_back(line);
    if (goaways > 0 && echoes.size() == expected_echoes)
      conn.close();
  };
  client_ctx.on_close = [&](connection_type& conn, close_reason why) { client_closes[&conn] = why; };
  client_ctx.on_goaway = [&](connection_type& conn, std::string_view) {
    if (++goaways == 1 && echoes.size() == expected_echoes)
      conn.close();
  };
  const auto tls_client = [&] {
    connection_type::socket_type socket{io};
    socket.connect(server.local_endpoint());
    auto client = connection_type::create(std::move(socket), client_ctx, wheel);
    client->start();
    return client;
  };

  // A connection that never says a word of TLS holds one of the two places until its handshake times out.
  raw_peer mute{io};
  mute.close_on_eof = true;
  mute.connect(server.local_endpoint());
  mute.start_reading();
  REQUIRE(run_until(io, [&] { return server.connections() == 1; }));
  const auto mute_since = std::chrono::steady_clock::now();

  auto served = tls_client();
  REQUIRE_FALSE(served->send("while another handshake stalls"));
  REQUIRE(run_until(io, [&] { return echoes.size() == 1; }));
  CHECK(std::chrono::steady_clock::now() - mute_since < handshake_timeout);
  CHECK(server_closes.empty());

  auto refused = tls_client();
  REQUIRE(run_until(io, [&] { return client_closes.contains(refused.get()); }));
  CHECK(rejections == std::vector<std::string>{"over max_connections"});
  CHECK(server.stats().refused(tether::connection_limit::max_connections) == 1);
  CHECK(client_closes[refused.get()] == close_reason::peer_reset);

  REQUIRE(run_until(io, [&] { return mute.closed; }, handshake_timeout + scaled(2000ms)));
  CHECK(server_closes == std::vector<close_reason>{close_reason::handshake_failed});
  CHECK(server.connections() == 1);

  // Lines in flight when the stop begins all come back before the polite client leaves.
  for (int line = 0; line < 200; ++line)
    REQUIRE_FALSE(served->send(std::string(500, static_cast<char>('a' + line % 26))));
  server.stop(scaled(3000ms));
  REQUIRE(run_until(io, [&] { return client_closes.contains(served.get()) && server.connections() == 0; }));
  CHECK(goaways == 1);
  CHECK(echoes.size() == expected_echoes);
  CHECK(client_closes[served.get()] == close_reason::local_close);
  CHECK(server_closes.back() == close_reason::shutdown);
}

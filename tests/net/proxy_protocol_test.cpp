// A listener behind a balancer that speaks the PROXY protocol, with the balancer played by raw sockets bound to
// loopback addresses of their own (127.0.0.2 trusted, 127.0.0.3 not).
#include "catch.hpp"

#include "peers.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/detail/proxy_header.hpp>
#include <tether/listener.hpp>

#include <asio.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using namespace std::string_literals;
using tether::close_reason;
using tether::test::raw_peer;
using tether::test::run_for;
using tether::test::run_until;
using tether::test::scaled;

namespace {

const auto balancer_address = asio::ip::make_address("127.0.0.2");
const auto stranger_address = asio::ip::make_address("127.0.0.3");

using server_type = tether::listener<tether::line_codec>;
using connection_type = server_type::connection_type;

struct observed {
  std::map<std::string, const connection_type*> accepted;  // by remote() text
  std::vector<std::string> accepted_order;
  std::map<std::string, std::string> proxy_of;  // remote() text -> the balancer's address, or "local"
  std::vector<std::pair<close_reason, std::string>> rejected;
  std::vector<std::string> rejected_from;
  std::map<std::string, close_reason> closed;
  std::map<std::string, std::string> close_detail;
};

std::string text(const asio::ip::tcp::endpoint& e) { return fmt::format("{}:{}", e.address().to_string(), e.port()); }

void observe(server_type& server, observed& seen) {
  server.on_message([](connection_type& conn, std::string_view line) { conn.send(line); });
  server.on_accept([&seen](connection_type& conn) {
    const auto remote = text(conn.remote());
    seen.accepted[remote] = &conn;
    seen.accepted_order.push_back(remote);
    if (const auto* via = conn.proxy())
      seen.proxy_of[remote] = via->local ? std::string{"local"} : via->proxy.address().to_string();
  });
  server.on_reject([&seen](const asio::ip::tcp::endpoint& from, close_reason why, std::string_view detail) {
    seen.rejected.emplace_back(why, detail);
    seen.rejected_from.push_back(from.address().to_string());
  });
  server.on_close([&seen](connection_type& conn, close_reason why) {
    seen.closed[text(conn.remote())] = why;
    seen.close_detail[text(conn.remote())] = std::string{conn.close_detail()};
  });
}

// A peer connecting from one of loopback's other addresses.
std::unique_ptr<raw_peer> peer_from(asio::io_context& io, const asio::ip::address& source,
                                    const asio::ip::tcp::endpoint& server) {
  auto peer = std::make_unique<raw_peer>(io);
  peer->socket.open(asio::ip::tcp::v4());
  peer->socket.bind({source, 0});
  peer->connect(server);
  peer->close_on_eof = true;
  peer->start_reading();
  return peer;
}

std::string v1(const char* client, std::uint16_t client_port, std::uint16_t server_port) {
  return fmt::format("PROXY TCP4 {} 127.0.0.1 {} {}\r\n", client, client_port, server_port);
}

std::string v2_tcp4(std::array<unsigned char, 4> client, std::uint16_t client_port, std::uint16_t server_port) {
  std::string header{tether::detail::proxy_v2_signature};
  header += "\x21\x11\x00\x0c"s;
  header.append(reinterpret_cast<const char*>(client.data()), 4);
  header += "\x7f\x00\x00\x01"s;
  header += static_cast<char>(client_port >> 8);
  header += static_cast<char>(client_port & 0xFF);
  header += static_cast<char>(server_port >> 8);
  header += static_cast<char>(server_port & 0xFF);
  return header;
}

tether::listener_options behind_balancer(std::size_t max_per_address) {
  std::error_code ec;
  return {.max_per_address = max_per_address,
          .proxy_protocol = {.trusted = {tether::ip_network::parse("127.0.0.2/32", ec)},
                             .header_timeout = scaled(400ms)}};
}

} // namespace

TEST_CASE("proxy protocol: a trusted balancer's clients are known and limited by their own addresses") {
  asio::io_context io;
  server_type server{io, behind_balancer(1)};
  observed seen;
  observe(server, seen);
  REQUIRE_FALSE(server.start());
  const auto at = server.local_endpoint();

  // v1 and v2 headers, each in the same segment as the client's first line: the codec sees only the line.
  auto first = peer_from(io, balancer_address, at);
  first->write(v1("198.51.100.1", 40001, at.port()) + "hello from one\n");
  auto second = peer_from(io, balancer_address, at);
  second->write(v2_tcp4({198, 51, 100, 2}, 40002, at.port()) + "hello from two\n");
  REQUIRE(run_until(io, [&] {
    return first->received == "hello from one\n" && second->received == "hello from two\n";
  }));
  CHECK(seen.proxy_of == std::map<std::string, std::string>{{"198.51.100.1:40001", "127.0.0.2"},
                                                            {"198.51.100.2:40002", "127.0.0.2"}});
  const auto* one = seen.accepted.at("198.51.100.1:40001");
  REQUIRE(one->proxy());
  CHECK(one->proxy()->version == 1);
  CHECK(one->proxy()->destination.port() == at.port());
  CHECK(one->proxy()->proxy.address() == balancer_address);
  CHECK(seen.accepted.at("198.51.100.2:40002")->proxy()->version == 2);

  // max_per_address = 1 counts the client, not the balancer all three come through.
  auto again = peer_from(io, balancer_address, at);
  again->write(v1("198.51.100.1", 40003, at.port()));
  REQUIRE(run_until(io, [&] { return !seen.rejected.empty() && again->closed; }));
  CHECK(seen.rejected.front() == std::pair{close_reason::limit_exceeded, std::string{"over max_per_address"}});
  CHECK(seen.rejected_from.front() == "198.51.100.1");
  CHECK(server.stats().refused(tether::connection_limit::max_per_address) == 1);

  // A header that arrives a few bytes at a time is waited for; no byte of it reaches the codec.
  auto slow = peer_from(io, balancer_address, at);
  const auto header = v1("198.51.100.3", 40004, at.port());
  for (std::size_t offset = 0; offset < header.size(); offset += 7) {
    slow->write(header.substr(offset, 7));
    run_for(io, 10ms);
  }
  slow->write("slow but complete\n");
  REQUIRE(run_until(io, [&] { return slow->received == "slow but complete\n"; }));
  CHECK(seen.accepted.contains("198.51.100.3:40004"));

  // The balancer's own health check (v2 LOCAL) is served under the balancer's address.
  auto check = peer_from(io, balancer_address, at);
  std::string local{tether::detail::proxy_v2_signature};
  local += "\x20\x00\x00\x00"s;
  check->write(local + "are you there\n");
  REQUIRE(run_until(io, [&] { return check->received == "are you there\n"; }));
  const auto check_remote = text(check->socket.local_endpoint());
  CHECK(seen.proxy_of.at(check_remote) == "local");
  CHECK(server.connections() == 4);

  // Closing a client gives its place back: the same client address is admitted again.
  first->socket.shutdown(asio::socket_base::shutdown_send);
  REQUIRE(run_until(io, [&] { return seen.closed.contains("198.51.100.1:40001"); }));
  CHECK(seen.closed.at("198.51.100.1:40001") == close_reason::peer_closed);
  auto back = peer_from(io, balancer_address, at);
  back->write(v1("198.51.100.1", 40005, at.port()) + "back again\n");
  REQUIRE(run_until(io, [&] { return back->received == "back again\n"; }));
  CHECK(seen.rejected.size() == 1);

  server.stop(scaled(1000ms));
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
}

TEST_CASE("proxy protocol: a trusted balancer without a valid header is refused with the reason, others served") {
  asio::io_context io;
  server_type server{io, behind_balancer(0)};
  observed seen;
  observe(server, seen);
  REQUIRE_FALSE(server.start());
  const auto at = server.local_endpoint();
  const auto started = std::chrono::steady_clock::now();

  auto garbage = peer_from(io, balancer_address, at);
  garbage->write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  auto bad_port = peer_from(io, balancer_address, at);
  bad_port->write("PROXY TCP4 198.51.100.1 127.0.0.1 70000 1\r\n");
  auto udp = peer_from(io, balancer_address, at);
  udp->write(std::string{tether::detail::proxy_v2_signature} + "\x21\x12\x00\x0c"s + std::string(12, '\0'));
  auto silent = peer_from(io, balancer_address, at);
  auto quitter = peer_from(io, balancer_address, at);
  quitter->write("PROXY TCP4 198.51");
  run_for(io, 20ms);
  quitter->socket.shutdown(asio::socket_base::shutdown_send);
  auto good = peer_from(io, balancer_address, at);
  good->write(v1("198.51.100.9", 40009, at.port()) + "served meanwhile\n");

  REQUIRE(run_until(io, [&] { return seen.rejected.size() == 5; }, scaled(3000ms)));
  CHECK(good->received == "served meanwhile\n");
  const auto reason_of = [&](std::string_view detail_part) {
    for (const auto& [why, detail] : seen.rejected) {
      if (detail.find(detail_part) != std::string::npos)
        return why;
    }
    FAIL("no refusal whose detail has: " << detail_part);
    return close_reason::local_close;
  };
  CHECK(reason_of("no PROXY protocol header where one was required") == close_reason::protocol_error);
  CHECK(reason_of("port that is not a number") == close_reason::protocol_error);
  CHECK(reason_of("transport other than TCP") == close_reason::protocol_error);
  CHECK(reason_of("ended before its PROXY protocol header") == close_reason::peer_closed);
  CHECK(reason_of("within header_timeout") == close_reason::handshake_failed);
  CHECK(std::chrono::steady_clock::now() - started >= 400ms);
  for (const auto& from : seen.rejected_from)
    CHECK(from == "127.0.0.2");
  const std::vector<raw_peer*> refused{garbage.get(), bad_port.get(), udp.get(), silent.get(), quitter.get()};
  CHECK(run_until(io, [&] { return std::all_of(refused.begin(), refused.end(), [](auto* p) { return p->closed; }); }));
  CHECK(seen.accepted_order == std::vector<std::string>{"198.51.100.9:40009"});
  CHECK(server.stats().closed(close_reason::protocol_error) == 3);

  // A stop refuses a header still awaited and ends the listener.
  auto late = peer_from(io, balancer_address, at);
  run_for(io, 20ms);
  server.stop(scaled(1000ms));
  REQUIRE(run_until(io, [&] { return late->closed && server.connections() == 0; }));
  CHECK(seen.rejected.back() == std::pair{close_reason::shutdown, std::string{"the listener is stopping"}});
}

TEST_CASE("proxy protocol: a source that is not trusted is served at once and may not send a header") {
  asio::io_context io;
  server_type server{io, behind_balancer(0)};
  observed seen;
  observe(server, seen);
  REQUIRE_FALSE(server.start());
  const auto at = server.local_endpoint();

  auto plain = peer_from(io, stranger_address, at);
  plain->write("just a client\n");
  // A strict prefix of a signature waits for the bytes that tell; then the codec gets all of them.
  auto prefix = peer_from(io, stranger_address, at);
  prefix->write("PRO");
  run_for(io, 30ms);
  CHECK(prefix->received.empty());
  prefix->write("FILE me\n");
  auto forger = peer_from(io, stranger_address, at);
  const auto forger_remote = text(forger->socket.local_endpoint());
  forger->write(v1("198.51.100.66", 40066, at.port()) + "let me in as someone else\n");

  REQUIRE(run_until(io, [&] {
    return plain->received == "just a client\n" && prefix->received == "PROFILE me\n" &&
           seen.closed.contains(forger_remote);
  }));
  CHECK(seen.closed.at(forger_remote) == close_reason::protocol_error);
  CHECK(seen.close_detail.at(forger_remote) == "a PROXY protocol header from a source that is not trusted to send one");
  CHECK(forger->received.empty());
  CHECK(seen.accepted.contains(text(plain->socket.local_endpoint())));
  CHECK(seen.proxy_of.empty());
  CHECK(seen.rejected.empty());
  server.stop(scaled(1000ms));
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }));
}

TEST_CASE("proxy protocol: options are validated by start()") {
  asio::io_context io;
  auto options = behind_balancer(0);
  options.proxy_protocol.max_header_size = 100;
  server_type server{io, options};
  CHECK(server.start() == tether::error::proxy_max_header_size_too_small);
}

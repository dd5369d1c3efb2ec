#include "catch.hpp"

#include "loopback.hpp"

#include <tether/format.hpp>
#include <tether/socket_options.hpp>

#include <algorithm>

using namespace std::chrono_literals;
namespace sockopt = tether::sockopt;
using tether::test::connect_pair;
using tether::test::make_listener;

namespace {

template <class Value>
Value read_back(auto& socket) {
  Value value{};
  const auto ec = tether::get_option(socket, value);
  INFO(ec.message());
  REQUIRE_FALSE(ec);
  return value;
}

template <class Value>
void require_set(auto& socket, const Value& value) {
  const auto ec = tether::set_option(socket, value);
  INFO(fmt::format("{}: {}", value, ec.message()));
  REQUIRE_FALSE(ec);
}

} // namespace

TEST_CASE("keepalive is applied and read back from the kernel") {
  asio::io_context io;
  auto listener = make_listener(io);
  auto pair = connect_pair(io, listener);

  const sockopt::keepalive fresh = read_back<sockopt::keepalive>(pair.client);
  CHECK_FALSE(fresh.enabled);

  const sockopt::keepalive wanted{.idle = 60s, .interval = 10s, .count = 3};
  require_set(pair.client, wanted);
  CHECK(read_back<sockopt::keepalive>(pair.client) == wanted);
  CHECK(fmt::format("{}", wanted) == "keepalive{idle=60s interval=10s count=3}");

  SECTION("a native handle works as well as an Asio socket") {
    const int handle = pair.client.native_handle();
    require_set(handle, sockopt::keepalive{.idle = 5s, .interval = 1s, .count = 127});
    CHECK(read_back<sockopt::keepalive>(handle) == sockopt::keepalive{.idle = 5s, .interval = 1s, .count = 127});
  }
  SECTION("durations are rounded up to whole seconds, never shortened") {
    require_set(pair.client, sockopt::keepalive{.idle = 1500ms, .interval = 1ms, .count = 1});
    CHECK(read_back<sockopt::keepalive>(pair.client) == sockopt::keepalive{.idle = 2s, .interval = 1s, .count = 1});
  }
  SECTION("disabling clears SO_KEEPALIVE and keeps the timings") {
    require_set(pair.client, sockopt::keepalive{.enabled = false});
    const auto now = read_back<sockopt::keepalive>(pair.client);
    CHECK_FALSE(now.enabled);
    CHECK(now.idle == 60s);
    CHECK(fmt::format("{}", sockopt::keepalive{.enabled = false}) == "keepalive{off}");
  }
}

TEST_CASE("out-of-range keepalive values are refused with the range and leave the socket unchanged") {
  asio::io_context io;
  auto listener = make_listener(io);
  auto pair = connect_pair(io, listener);
  const sockopt::keepalive before{.idle = 60s, .interval = 10s, .count = 3};
  require_set(pair.client, before);

  struct refused {
    sockopt::keepalive value;
    tether::error code;
    const char* range;
  };
  for (const auto& [value, code, range] : {
           refused{{.idle = 0s, .interval = 10s, .count = 3}, tether::error::keepalive_idle_out_of_range, "1s..32767s"},
           refused{{.idle = 32768s, .interval = 10s, .count = 3}, tether::error::keepalive_idle_out_of_range, "1s..32767s"},
           refused{{.idle = 60s, .interval = 0s, .count = 3}, tether::error::keepalive_interval_out_of_range, "1s..32767s"},
           refused{{.idle = 60s, .interval = 40000s, .count = 3}, tether::error::keepalive_interval_out_of_range, "1s..32767s"},
           refused{{.idle = 61s, .interval = 11s, .count = 0}, tether::error::keepalive_count_out_of_range, "1..127"},
           refused{{.idle = 61s, .interval = 11s, .count = 128}, tether::error::keepalive_count_out_of_range, "1..127"},
       }) {
    const auto ec = tether::set_option(pair.client, value);
    INFO(fmt::format("{} -> {}", value, ec.message()));
    CHECK(ec == code);
    CHECK(ec == std::errc::invalid_argument);
    CHECK(ec.message().find(range) != std::string::npos);
    CHECK(ec.message().find("Linux") != std::string::npos);
    CHECK(read_back<sockopt::keepalive>(pair.client) == before);
  }
}

TEST_CASE("user timeout is applied in milliseconds and bounded by INT_MAX") {
  asio::io_context io;
  auto listener = make_listener(io);
  auto pair = connect_pair(io, listener);

  CHECK(read_back<sockopt::user_timeout>(pair.client).timeout == 0ms);
  require_set(pair.client, sockopt::user_timeout{30s});
  CHECK(read_back<sockopt::user_timeout>(pair.client).timeout == 30s);
  require_set(pair.client, sockopt::user_timeout{1500ms});
  CHECK(read_back<sockopt::user_timeout>(pair.client).timeout == 1500ms);
  CHECK(fmt::format("{}", sockopt::user_timeout{1500ms}) == "user_timeout{1500ms}");

  const auto ec = tether::set_option(pair.client, sockopt::user_timeout{std::chrono::milliseconds{2147483648LL}});
  CHECK(ec == tether::error::user_timeout_out_of_range);
  CHECK(ec.message().find("0ms..2147483647ms") != std::string::npos);
  CHECK(read_back<sockopt::user_timeout>(pair.client).timeout == 1500ms);

  require_set(pair.client, sockopt::user_timeout{0ms});
  CHECK(read_back<sockopt::user_timeout>(pair.client).timeout == 0ms);
}

TEST_CASE("linger modes round-trip and a bad timed linger is refused") {
  asio::io_context io;
  asio::ip::tcp::socket socket{io, asio::ip::tcp::v4()};

  CHECK(read_back<sockopt::linger>(socket) == sockopt::linger::graceful());
  for (const auto mode : {sockopt::linger::abortive(), sockopt::linger::timed(5s), sockopt::linger::graceful()}) {
    require_set(socket, mode);
    CHECK(read_back<sockopt::linger>(socket) == mode);
  }
  require_set(socket, sockopt::linger::timed(7s));
  const auto ec = tether::set_option(socket, sockopt::linger::timed(-1s));
  CHECK(ec == tether::error::linger_out_of_range);
  CHECK(read_back<sockopt::linger>(socket) == sockopt::linger::timed(7s));
  CHECK(fmt::format("{}", sockopt::linger::timed(7s)) == "linger{timed 7s}");
}

TEST_CASE("boolean options and buffer sizes round-trip") {
  asio::io_context io;
  asio::ip::tcp::socket socket{io, asio::ip::tcp::v4()};

  for (const bool on : {true, false}) {
    require_set(socket, sockopt::no_delay{on});
    CHECK(read_back<sockopt::no_delay>(socket).enabled == on);
    require_set(socket, sockopt::reuse_address{on});
    CHECK(read_back<sockopt::reuse_address>(socket).enabled == on);
    require_set(socket, sockopt::reuse_port{on});
    CHECK(read_back<sockopt::reuse_port>(socket).enabled == on);
  }
  CHECK(fmt::format("{}", sockopt::reuse_port{true}) == "reuse_port{on}");

  // Linux doubles the request to account for its own bookkeeping; the getter reports what the kernel holds.
  require_set(socket, sockopt::send_buffer_size{64 * 1024});
  CHECK(read_back<sockopt::send_buffer_size>(socket).bytes == 2 * 64 * 1024);
  require_set(socket, sockopt::receive_buffer_size{32 * 1024});
  CHECK(read_back<sockopt::receive_buffer_size>(socket).bytes == 2 * 32 * 1024);

  const auto ec = tether::set_option(socket, sockopt::send_buffer_size{0});
  CHECK(ec == tether::error::buffer_size_out_of_range);
  CHECK(read_back<sockopt::send_buffer_size>(socket).bytes == 2 * 64 * 1024);
}

TEST_CASE("an abortive close resets the peer without TIME_WAIT while a graceful close leaves TIME_WAIT") {
  asio::io_context io;
  auto listener = make_listener(io);

  SECTION("abortive") {
    auto pair = connect_pair(io, listener);
    const auto port = pair.client.local_endpoint().port();
    const auto server_port = listener.local_endpoint().port();
    require_set(pair.client, sockopt::linger::abortive());
    pair.client.close();

    char byte = 0;
    asio::error_code ec;
    pair.server.read_some(asio::buffer(&byte, 1), ec);
    CHECK(ec == asio::error::connection_reset);
    const auto states = tether::test::tcp_states_of(port, server_port);
    CHECK(std::count(states.begin(), states.end(), tether::test::tcp_time_wait) == 0);
  }
  SECTION("graceful") {
    auto pair = connect_pair(io, listener);
    const auto port = pair.client.local_endpoint().port();
    const auto server_port = listener.local_endpoint().port();
    pair.client.close();

    char byte = 0;
    asio::error_code ec;
    pair.server.read_some(asio::buffer(&byte, 1), ec);
    CHECK(ec == asio::error::eof);
    pair.server.close();
    CHECK(tether::test::eventually([&] {
      const auto states = tether::test::tcp_states_of(port, server_port);
      return std::count(states.begin(), states.end(), tether::test::tcp_time_wait) == 1;
    }));
  }
}

TEST_CASE("reuse_address lets a listener rebind at once over TIME_WAIT and without it bind fails") {
  asio::io_context io;
  std::uint16_t port = 0;
  std::uint16_t client_port = 0;
  {
    // Linux lets a bind pass a TIME_WAIT entry only when both the new socket and the one that left the entry
    // (inherited from the old listener) set SO_REUSEADDR, as a restarted server would.
    asio::ip::tcp::acceptor listener{io, asio::ip::tcp::v4()};
    require_set(listener, sockopt::reuse_address{true});
    listener.bind({tether::test::loopback, 0});
    listener.listen();
    port = listener.local_endpoint().port();
    auto pair = connect_pair(io, listener);
    client_port = pair.client.local_endpoint().port();
    // The server closes first, so the server side of the connection holds the listening port in TIME_WAIT.
    pair.server.close();
    char byte = 0;
    asio::error_code ignored;
    pair.client.read_some(asio::buffer(&byte, 1), ignored);
    pair.client.close();
  }
  REQUIRE(tether::test::eventually([&] {
    const auto states = tether::test::tcp_states_of(port, client_port);
    return std::count(states.begin(), states.end(), tether::test::tcp_time_wait) == 1;
  }));

  asio::ip::tcp::acceptor without{io, asio::ip::tcp::v4()};
  asio::error_code ec;
  without.bind({tether::test::loopback, port}, ec);
  CHECK(ec == asio::error::address_in_use);

  asio::ip::tcp::acceptor with{io, asio::ip::tcp::v4()};
  require_set(with, sockopt::reuse_address{true});
  with.bind({tether::test::loopback, port}, ec);
  CHECK_FALSE(ec);
}

TEST_CASE("reuse_port lets two listeners share a port and both accept") {
  asio::io_context io;
  auto open_sharing_listener = [&](std::uint16_t port) {
    asio::ip::tcp::acceptor acceptor{io, asio::ip::tcp::v4()};
    require_set(acceptor, sockopt::reuse_port{true});
    acceptor.bind({tether::test::loopback, port});
    acceptor.listen();
    acceptor.non_blocking(true);
    return acceptor;
  };
  auto first = open_sharing_listener(0);
  const auto port = first.local_endpoint().port();
  auto second = open_sharing_listener(port);

  asio::ip::tcp::acceptor outsider{io, asio::ip::tcp::v4()};
  asio::error_code ec;
  outsider.bind({tether::test::loopback, port}, ec);
  CHECK(ec == asio::error::address_in_use);

  constexpr int clients = 64;
  std::vector<asio::ip::tcp::socket> connected;
  for (int i = 0; i < clients; ++i) {
    connected.emplace_back(io);
    connected.back().connect({tether::test::loopback, port});
  }
  int accepted_first = 0;
  int accepted_second = 0;
  std::vector<asio::ip::tcp::socket> accepted;
  tether::test::eventually([&] {
    for (auto [acceptor, count] : {std::pair{&first, &accepted_first}, std::pair{&second, &accepted_second}}) {
      for (;;) {
        asio::error_code accept_error;
        auto socket = acceptor->accept(accept_error);
        if (accept_error)
          break;
        accepted.push_back(std::move(socket));
        ++*count;
      }
    }
    return accepted_first + accepted_second == clients;
  });
  CHECK(accepted_first + accepted_second == clients);
  CHECK(accepted_first > 0);
  CHECK(accepted_second > 0);
}

TEST_CASE("TCP_INFO reports the established state, an RTT after traffic, the bytes acknowledged and a growing idle "
          "time") {
  asio::io_context io;
  auto listener = make_listener(io);
  auto pair = connect_pair(io, listener);

  const char ping[] = "ping";
  char received[sizeof ping] = {};
  for (int round = 0; round < 10; ++round) {
    asio::write(pair.client, asio::buffer(ping));
    asio::read(pair.server, asio::buffer(received));
    asio::write(pair.server, asio::buffer(received));
    asio::read(pair.client, asio::buffer(received));
  }
  const auto first = read_back<sockopt::tcp_info>(pair.client);
  CHECK(first.state == sockopt::tcp_state::established);
  CHECK(first.rtt > 0us);
  CHECK(first.unacked == 0);
  // Ten rounds of five bytes each way: all of ours acknowledged, nothing left unsent. Linux counts the
  // connecting side's SYN as one acknowledged byte.
  REQUIRE(first.progress_counted);
  CHECK(first.bytes_acked == 10 * sizeof ping + 1);
  CHECK(first.notsent_bytes == 0);

  std::this_thread::sleep_for(300ms);
  const auto later = read_back<sockopt::tcp_info>(pair.client);
  CHECK(later.last_data_recv >= first.last_data_recv + 250ms);
  CHECK(fmt::format("{}", later).find("state=established") != std::string::npos);
}

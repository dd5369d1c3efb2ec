// Failures that loopback never shows, on the real Linux stack: a three-namespace network whose router is a
// conntrack firewall (see network.hpp). Each scenario asserts the outcome and the detection time against the
// strategy's configured bound, and prints "DETECTION | scenario | bound | measured" for the record.
#include "catch.hpp"

#include "network.hpp"
#include "peers.hpp"
#include "skip_or_fail.hpp"

#include <tether/check.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/format.hpp>
#include <tether/liveness/ack_progress.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <sys/wait.h>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::fault::netns_scope;
using tether::test::run_for;
using tether::test::run_until;
using tether::test::scaled;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr auto tick = 20ms;

bool fault_tests_can_run() {
  return tether::fault::can_run_or_skip("fault tests", tether::fault::missing_privileges());
}

bool finds(const std::vector<tether::diagnostic>& found, tether::finding what) {
  return std::any_of(found.begin(), found.end(), [what](const tether::diagnostic& d) { return d.what == what; });
}

std::size_t errors_in(const std::vector<tether::diagnostic>& found) {
  return static_cast<std::size_t>(std::count_if(found.begin(), found.end(), [](const tether::diagnostic& d) {
    return d.level == tether::severity::error;
  }));
}

void report(std::string_view scenario, std::chrono::milliseconds bound, std::chrono::milliseconds measured) {
  fmt::print("DETECTION | {} | bound {} ms | measured {} ms\n", scenario, bound.count(), measured.count());
}

// A client in the client namespace talking through the firewall to an echo server in the server namespace.
template <class ClientLiveness, class ServerLiveness = tether::liveness<>>
struct client_and_server {
  using client_connection = tether::connection<tether::line_codec, ClientLiveness>;
  using server_connection = tether::connection<tether::line_codec, ServerLiveness>;

  client_and_server(tether::fault::network& net, ClientLiveness liveness, ServerLiveness server_liveness = {})
      : acceptor(io) {
    {
      netns_scope inside{net.server};
      acceptor.open(asio::ip::tcp::v4());
      acceptor.bind({asio::ip::make_address(tether::fault::network::server_address), 0});
      acceptor.listen();
    }
    typename client_connection::socket_type socket{io};
    {
      netns_scope inside{net.client};
      socket.open(asio::ip::tcp::v4());
    }
    socket.connect(net.server_endpoint(acceptor.local_endpoint().port()));

    server_settings.liveness = server_liveness;
    server_settings.on_message = [](server_connection& c, std::string_view line) { c.send(line); };
    server_settings.on_close = [this](server_connection&, close_reason why) { server_closed = why; };
    client_settings.liveness = liveness;
    client_settings.on_message = [this](client_connection&, std::string_view line) { echoes.emplace_back(line); };
    client_settings.on_close = [this](client_connection&, close_reason why) {
      closed = why;
      closed_at = clock_type::now();
    };
    server = server_connection::create(acceptor.accept(io), server_settings, wheel);
    client = client_connection::create(std::move(socket), client_settings, wheel);
    server->start();
    client->start();
  }

  bool echoed(const std::string& message, std::chrono::milliseconds limit = scaled(5000ms)) {
    const auto before = echoes.size();
    if (client->send(message))
      return false;
    return run_until(io, [&] { return echoes.size() > before || closed; }, limit) && echoes.size() > before &&
           echoes.back() == message;
  }

  std::chrono::milliseconds detection_since(clock_type::time_point start) {
    run_until(io, [&] { return closed.has_value(); }, scaled(30'000ms));
    REQUIRE(closed.has_value());
    return std::chrono::duration_cast<std::chrono::milliseconds>(closed_at - start);
  }

  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = tick}};
  asio::ip::tcp::acceptor acceptor;
  tether::connection_context<tether::line_codec, ServerLiveness> server_settings;
  tether::connection_context<tether::line_codec, ClientLiveness> client_settings;
  std::shared_ptr<server_connection> server;
  std::shared_ptr<client_connection> client;
  std::vector<std::string> echoes;
  std::optional<close_reason> closed;
  std::optional<close_reason> server_closed;
  clock_type::time_point closed_at;
};

} // namespace

TEST_CASE("fault: a firewall that forgets idle flows resets the next message unless liveness keeps it warm") {
  if (!fault_tests_can_run())
    return;
  tether::fault::network net;
  constexpr auto firewall_timeout = 2s;
  constexpr auto idle_gap = 5s;  // two and a half firewall timeouts
  net.forget_idle_flows_after(firewall_timeout);
  // tether::check, told of this firewall, must predict each outcome below.
  const tether::path_hints path{.middlebox = {.name = "the test's firewall", .idle_timeout = firewall_timeout},
                                .tick = tick};

  SECTION("without liveness the message after the gap meets a reset") {
    CHECK(finds(tether::check(tether::liveness<>{}, path), tether::finding::nothing_keeps_path_open));
    client_and_server pair{net, tether::liveness<>{}};
    REQUIRE(pair.echoed("before the gap"));
    run_for(pair.io, idle_gap);
    CHECK_FALSE(pair.echoed("after the gap"));
    REQUIRE(pair.closed);
    CHECK(*pair.closed == close_reason::peer_reset);
  }
  SECTION("tcp_keepalive above the firewall timeout loses the flow, as the check says") {
    const tether::liveness late{tether::tcp_keepalive{.idle = 3s, .interval = 1s, .count = 3}};
    CHECK(finds(tether::check(late, path), tether::finding::keepalive_idle_too_long));
    client_and_server pair{net, late};
    REQUIRE(pair.echoed("before the gap"));
    run_for(pair.io, idle_gap);
    CHECK_FALSE(pair.echoed("after the gap"));
    REQUIRE(pair.closed);
    CHECK(*pair.closed == close_reason::peer_reset);
  }
  SECTION("tcp_keepalive below the firewall timeout keeps the flow") {
    const tether::liveness warm{tether::tcp_keepalive{.idle = 1s, .interval = 1s, .count = 3}};
    CHECK(errors_in(tether::check(warm, path)) == 0);
    client_and_server pair{net, warm};
    for (int gap = 0; gap < 2; ++gap) {
      REQUIRE(pair.echoed("message " + std::to_string(gap)));
      run_for(pair.io, idle_gap);
    }
    CHECK(pair.echoed("last"));
    CHECK(pair.client->is_open());
  }
  SECTION("heartbeat below the firewall timeout keeps the flow") {
    const tether::liveness warm{tether::heartbeat{.interval = 1s, .timeout = 1s}};
    CHECK(tether::check(warm, path).empty());
    client_and_server pair{net, warm};
    for (int gap = 0; gap < 2; ++gap) {
      REQUIRE(pair.echoed("message " + std::to_string(gap)));
      run_for(pair.io, idle_gap);
    }
    CHECK(pair.echoed("last"));
    CHECK(pair.client->is_open());
  }
}

TEST_CASE("fault: a path that goes silent while idle is detected within each strategy's bound") {
  if (!fault_tests_can_run())
    return;
  tether::fault::network net;

  SECTION("heartbeat within interval plus timeout") {
    const tether::heartbeat policy{.interval = 1s, .timeout = 1s};
    client_and_server pair{net, tether::liveness{policy}};
    REQUIRE(pair.echoed("hello"));
    net.blackhole(true);
    const auto detected = pair.detection_since(clock_type::now());
    report("blackhole while idle, heartbeat 1s,1s", policy.interval + policy.timeout, detected);
    CHECK(*pair.closed == close_reason::heartbeat_timeout);
    CHECK(detected <= policy.interval + policy.timeout + tick + scaled(300ms));
  }
  SECTION("tcp_keepalive within idle plus interval times count") {
    const tether::tcp_keepalive policy{.idle = 1s, .interval = 1s, .count = 2};
    client_and_server pair{net, tether::liveness{policy}};
    REQUIRE(pair.echoed("hello"));
    net.blackhole(true);
    const auto detected = pair.detection_since(clock_type::now());
    report("blackhole while idle, tcp_keepalive 1s,1s,2", policy.detection_bound(), detected);
    CHECK(*pair.closed == close_reason::keepalive_timeout);
    CHECK(detected <= policy.detection_bound() + scaled(500ms));
  }
  SECTION("a user timeout below keepalive's bound cuts its probes short, as the check says") {
    // Bound 5 s; the user timeout of 2.5 s ends it at the keepalive run after it: idle + 2 intervals = 3 s.
    const tether::tcp_keepalive keepalive{.idle = 1s, .interval = 1s, .count = 4};
    const tether::liveness policy{keepalive, tether::user_timeout{2500ms}};
    const auto found = tether::check(policy, {.tick = tick});
    REQUIRE(found.size() == 1);
    REQUIRE(found[0].what == tether::finding::user_timeout_cuts_keepalive);
    CHECK(found[0].message.find("after 2 unanswered probes instead of 4") != std::string::npos);
    client_and_server pair{net, policy};
    REQUIRE(pair.echoed("hello"));
    // The kernel counts from the last segment received, the echo's, not from the end of the nft commands.
    const auto last_received = clock_type::now();
    net.blackhole(true);
    const auto detected = pair.detection_since(last_received);
    report("blackhole while idle, tcp_keepalive 1s,1s,4 with user_timeout 2500ms", 3s, detected);
    CHECK(*pair.closed == close_reason::keepalive_timeout);
    CHECK(detected >= 3s - 100ms);
    CHECK(detected <= 3s + scaled(500ms));
  }
}

TEST_CASE("fault: data stuck unacknowledged defeats keepalive but not user_timeout") {
  if (!fault_tests_can_run())
    return;
  tether::fault::network net;
  const tether::tcp_keepalive keepalive{.idle = 1s, .interval = 1s, .count = 2};

  SECTION("tcp_keepalive alone stays blind while data is in flight") {
    client_and_server pair{net, tether::liveness{keepalive}};
    REQUIRE(pair.echoed("hello"));
    net.blackhole(true);
    REQUIRE_FALSE(pair.client->send("stuck in flight"));
    // Linux sends no keepalive probe while data is unacknowledged (tcp_keepalive_timer reschedules), and
    // retransmissions alone would take ~15 minutes to give up.
    run_for(pair.io, 2 * keepalive.detection_bound());
    CHECK(pair.client->is_open());
    CHECK_FALSE(pair.closed);
  }
  SECTION("user_timeout bounds it") {
    const tether::user_timeout bound{2s};
    client_and_server pair{net, tether::liveness{keepalive, bound}};
    REQUIRE(pair.echoed("hello"));
    net.blackhole(true);
    const auto start = clock_type::now();
    REQUIRE_FALSE(pair.client->send("stuck in flight"));
    const auto detected = pair.detection_since(start);
    report("blackhole with data in flight, user_timeout 2s", bound.timeout, detected);
    CHECK(*pair.closed == close_reason::user_timeout);
    CHECK(detected >= bound.timeout - 100ms);
    CHECK(detected <= bound.timeout + scaled(700ms));
  }
}

TEST_CASE("fault: a transfer slower than the heartbeat timeout stays up with ack_progress, a stalled one is closed") {
  if (!fault_tests_can_run())
    return;
  tether::fault::network net;

  // The server's heartbeat pings after 1s without the client's bytes; its ping waits behind the megabyte.
  const tether::heartbeat beat{.interval = 1s, .timeout = 1s};
  const std::string line(999, 'x');
  constexpr std::size_t lines = 1000;  // 1 MB with the newlines: about 8.4 s at 1 Mbit/s
  const auto transfer = [&](auto& pair) {
    REQUIRE(pair.echoed("hello"));
    for (std::size_t i = 0; i < lines; ++i)
      REQUIRE_FALSE(pair.server->send(line));
    run_until(pair.io, [&] { return pair.echoes.size() == lines + 1 || pair.server_closed.has_value(); },
              scaled(30'000ms));
    return static_cast<std::size_t>(std::count(pair.echoes.begin() + 1, pair.echoes.end(), line));
  };
  SECTION("1 MB at 1 Mbit/s behind a 1s,1s heartbeat without ack_progress: a false heartbeat_timeout") {
    net.limit_rate_towards_clients("1mbit");
    client_and_server pair{net, tether::liveness<>{}, tether::liveness{beat}};
    const auto whole_lines = transfer(pair);
    REQUIRE(pair.server_closed.has_value());
    CHECK(*pair.server_closed == close_reason::heartbeat_timeout);
    CHECK(whole_lines < lines);
  }
  SECTION("the same with ack_progress: delivered whole, no close") {
    net.limit_rate_towards_clients("1mbit");
    client_and_server pair{net, tether::liveness<>{}, tether::liveness{beat, tether::ack_progress{}}};
    const auto started = clock_type::now();
    const auto whole_lines = transfer(pair);
    fmt::print("PROGRESS | 1 MB at 1 Mbit/s behind heartbeat 1s,1s with ack_progress | {} ms | {} of {} lines\n",
               std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started).count(),
               whole_lines, lines);
    CHECK_FALSE(pair.server_closed);
    CHECK(whole_lines == lines);
    CHECK(pair.server->is_open());
  }
  SECTION("a blackhole with bytes in flight closes as send_stalled within 1.25 x stall_timeout") {
    const tether::ack_progress stall{.stall_timeout = 2s};
    client_and_server pair{net, tether::liveness{stall}};
    REQUIRE(pair.echoed("hello"));
    run_for(pair.io, 1s);  // the counters are read after the echo: nothing is in flight any more
    net.blackhole(true);
    const auto start = clock_type::now();
    REQUIRE_FALSE(pair.client->send("stuck in flight"));
    const auto detected = pair.detection_since(start);
    report("blackhole with data in flight, ack_progress stall_timeout 2s", stall.stall_timeout, detected);
    CHECK(*pair.closed == close_reason::send_stalled);
    CHECK(detected >= stall.stall_timeout);
    CHECK(detected <= stall.stall_timeout * 5 / 4 + scaled(700ms));
  }
}

TEST_CASE("fault: a vanished peer host or a crashed peer process is detected with the right reason") {
  if (!fault_tests_can_run())
    return;
  tether::fault::network net;

  SECTION("the server host's link disappears: heartbeat") {
    const tether::heartbeat policy{.interval = 1s, .timeout = 1s};
    client_and_server pair{net, tether::liveness{policy}};
    REQUIRE(pair.echoed("hello"));
    net.remove_server_link();
    const auto detected = pair.detection_since(clock_type::now());
    report("peer host vanished, heartbeat 1s,1s", policy.interval + policy.timeout, detected);
    CHECK(*pair.closed == close_reason::heartbeat_timeout);
    CHECK(detected <= policy.interval + policy.timeout + tick + scaled(300ms));
  }
  SECTION("the server process is killed: its kernel closes the connection") {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor{io};
    {
      netns_scope inside{net.server};
      acceptor.open(asio::ip::tcp::v4());
      acceptor.bind({asio::ip::make_address(tether::fault::network::server_address), 0});
      acceptor.listen();
    }
    const auto port = acceptor.local_endpoint().port();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // A fresh io_context: the parent's epoll instance is shared across fork and must not be used here.
      asio::io_context child_io;
      asio::ip::tcp::acceptor child_acceptor{child_io, asio::ip::tcp::v4(), ::dup(acceptor.native_handle())};
      tether::timer_wheel wheel{child_io};
      tether::connection_context<tether::line_codec> settings;
      settings.on_message = [](auto& c, std::string_view line) { c.send(line); };
      std::shared_ptr<tether::connection<tether::line_codec>> served;
      child_acceptor.async_accept(child_io, [&](std::error_code ec, tether::connection<tether::line_codec>::socket_type socket) {
        if (ec)
          return;
        served = tether::connection<tether::line_codec>::create(std::move(socket), settings, wheel);
        served->start();
      });
      child_io.run_for(20s);
      ::_exit(0);
    }
    // Whatever happens to the test, the child does not outlive it.
    struct reaper {
      pid_t pid;
      ~reaper() {
        if (pid > 0) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
      }
    } child_guard{child};
    acceptor.close();
    tether::timer_wheel wheel{io, {.tick = tick}};
    using client_connection = tether::connection<tether::line_codec, tether::liveness<tether::heartbeat>>;
    tether::connection_context<tether::line_codec, tether::liveness<tether::heartbeat>> settings;
    settings.liveness = tether::liveness{tether::heartbeat{.interval = 1s, .timeout = 1s}};
    std::vector<std::string> echoes;
    std::optional<close_reason> closed;
    clock_type::time_point closed_at;
    settings.on_message = [&](auto&, std::string_view line) { echoes.emplace_back(line); };
    settings.on_close = [&](auto&, close_reason why) {
      closed = why;
      closed_at = clock_type::now();
    };
    client_connection::socket_type socket{io};
    {
      netns_scope inside{net.client};
      socket.open(asio::ip::tcp::v4());
    }
    socket.connect(net.server_endpoint(port));
    auto client = client_connection::create(std::move(socket), settings, wheel);
    client->start();
    client->send("hello");
    REQUIRE(run_until(io, [&] { return echoes.size() == 1; }));

    ::kill(child, SIGKILL);
    const auto killed = clock_type::now();
    ::waitpid(child, nullptr, 0);
    child_guard.pid = -1;
    REQUIRE(run_until(io, [&] { return closed.has_value(); }, scaled(5000ms)));
    const auto detected = std::chrono::duration_cast<std::chrono::milliseconds>(closed_at - killed);
    report("peer process killed (SIGKILL)", 0ms, detected);
    CHECK((*closed == close_reason::peer_closed || *closed == close_reason::peer_reset));
    CHECK(detected <= scaled(1000ms));
  }
}

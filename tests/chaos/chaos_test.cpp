// The chaos run: a few hundred connections with heartbeat, kernel keepalive and the idle reaper, from client
// processes in their own network namespace through a conntrack firewall, while faults are injected at random
// times for a bounded time: blackholed paths, paths that answer with resets, random loss, a rate-limited
// uplink, client processes stopped for good or for a moment, and stalls of the server's own event loop. At the
// end every close must have the reason its fault implies, no connection on a path that stayed up may have been
// closed or lost a message, and the server's descriptors and heap must be back where they started.
//
// Each group of connections comes from a client address of its own, so that a fault can be given to one group
// and every close attributed to one. The server is this process; each group's clients are a forked process.
#include "catch.hpp"

#include "network.hpp"
#include "peers.hpp"
#include "process_usage.hpp"
#include "skip_or_fail.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/format.hpp>
#include <tether/listener.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/tcp_keepalive.hpp>

#include <asio.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using tether::close_reason;
using tether::fault::netns_scope;
using tether::test::heap_in_use;
using tether::test::open_descriptors;
using tether::test::run_until;
using tether::test::scaled;
using clock_type = std::chrono::steady_clock;

namespace {

// What happens to a group, and so what its closes must say.
enum class fault {
  none,        // the path stays up: no close, no message lost
  loss,        // 3 % of its packets dropped both ways: TCP retransmits, nothing closes, nothing is lost
  hiccup,      // its process stopped for 400 ms, three times: shorter than every bound, nothing closes
  blackhole,   // its path goes silent for good: heartbeat_timeout (or keepalive_timeout) on both ends
  reset,       // the router answers its packets with resets: peer_reset on both ends
  stopped,     // its process stopped for good: the kernel still ACKs, only the heartbeat notices
  idle,        // it sends one message and then only answers pings: the reaper closes it (idle_timeout)
};

struct group {
  const char* name;
  fault what;
  std::string address;
};

const std::array<group, 7> groups{{
    {"steady", fault::none, "198.18.1.10"},
    {"lossy", fault::loss, "198.18.1.11"},
    {"hiccup", fault::hiccup, "198.18.1.12"},
    {"blackholed", fault::blackhole, "198.18.1.13"},
    {"reset", fault::reset, "198.18.1.14"},
    {"stopped", fault::stopped, "198.18.1.15"},
    {"idle", fault::idle, "198.18.1.16"},
}};

constexpr std::size_t per_group = 40;
constexpr auto run_length = 12s;           // the clients' lives; faults come in its first part
constexpr auto last_send = run_length - 2s;  // then the clients wait for their last echoes
constexpr auto send_every = 200ms;

// The server's policy: a dead path is caught by the heartbeat within 2 s, an idle client reaped after 4 s.
const tether::heartbeat server_heartbeat{.interval = 1s, .timeout = 1s};
const tether::tcp_keepalive server_keepalive{.idle = 1s, .interval = 1s, .count = 2};
const tether::idle_reaper server_reaper{.read_idle = 4s};
// The clients' heartbeat is slower than the longest server stall, which must not cost a connection.
const tether::heartbeat client_heartbeat{.interval = 2s, .timeout = 3s};
constexpr auto server_stall = 800ms;

bool chaos_can_run() {
  std::string missing = tether::fault::missing_privileges();
  if (missing.empty() && tether::fault::shell("command -v tc") != 0)
    missing = "tc (iproute2) is missing";
  return tether::fault::can_run_or_skip("the chaos run", missing);
}

// What a client process saw, sent back to the server process as one line.
struct client_report {
  std::size_t open = 0;
  std::size_t sent = 0;
  std::size_t echoed = 0;
  std::size_t mismatched = 0;  // an echo out of order, duplicated or altered
  std::map<std::string, std::size_t> closed;

  std::size_t closed_with(const std::string& reason) const {
    const auto found = closed.find(reason);
    return found == closed.end() ? 0 : found->second;
  }
  std::string closes() const {
    std::string text;
    for (const auto& [reason, count] : closed)
      text += fmt::format(" {}={}", reason, count);
    return text.empty() ? " none" : text;
  }
  std::string line() const {
    return fmt::format("{} {} {} {}{}", open, sent, echoed, mismatched, closed.empty() ? "" : closes());
  }
  static client_report parse(const std::string& text) {
    client_report r;
    std::istringstream fields{text};
    fields >> r.open >> r.sent >> r.echoed >> r.mismatched;
    for (std::string pair; fields >> pair;) {
      const auto at = pair.find('=');
      r.closed[pair.substr(0, at)] = std::stoul(pair.substr(at + 1));
    }
    return r;
  }
};

struct peer_slot {
  std::size_t index = 0;
};

// The body of one client process: per_group connections from the group's address, each sending a sequence
// number every 200 ms (the idle group: once) and checking that the echoes come back in order, unaltered.
[[noreturn]] void run_clients(const std::string& client_ns, const group& g, const asio::ip::tcp::endpoint& server,
                              int report_fd) {
  client_report report;
  try {
    const netns_scope inside{client_ns};
    asio::io_context io;
    tether::timer_wheel wheel{io, {.tick = 20ms}};
    using connection_type = tether::connection<tether::line_codec, tether::liveness<tether::heartbeat>, peer_slot>;
    struct peer {
      std::shared_ptr<connection_type> conn;
      std::uint64_t next = 0;
      std::uint64_t expected = 0;
      std::unique_ptr<asio::steady_timer> timer;
    };
    std::vector<peer> peers(per_group);
    tether::connection_context<tether::line_codec, tether::liveness<tether::heartbeat>, peer_slot> context;
    context.liveness = tether::liveness{client_heartbeat};
    context.on_message = [&](connection_type& conn, std::string_view line) {
      peer& p = peers[conn.user_data().index];
      if (line == std::to_string(p.expected)) {
        ++p.expected;
        ++report.echoed;
      } else {
        ++report.mismatched;
      }
    };
    context.on_close = [&](connection_type& conn, close_reason why) {
      ++report.closed[std::string{tether::close_reason_name(why)}];
      peers[conn.user_data().index].timer->cancel();
    };
    const auto started = clock_type::now();
    std::function<void(peer&)> send_next = [&](peer& p) {
      if (!p.conn->is_open() || clock_type::now() - started >= last_send)
        return;
      if (!p.conn->send(std::to_string(p.next)))
        ++p.next, ++report.sent;
      if (g.what == fault::idle)
        return;
      p.timer->expires_after(send_every);
      p.timer->async_wait([&](const std::error_code& ec) {
        if (!ec)
          send_next(p);
      });
    };
    for (std::size_t i = 0; i < per_group; ++i) {
      connection_type::socket_type socket{io};
      socket.open(asio::ip::tcp::v4());
      socket.bind({asio::ip::make_address(g.address), 0});
      socket.connect(server);
      peers[i].conn = connection_type::create(std::move(socket), context, wheel);
      peers[i].conn->user_data().index = i;
      peers[i].timer = std::make_unique<asio::steady_timer>(io);
      peers[i].conn->start();
      send_next(peers[i]);
    }
    // Bounded by the clock rather than by work: the connections would keep the loop busy for ever.
    const auto deadline = started + run_length;
    while (clock_type::now() < deadline)
      io.run_one_until(deadline);
    // A process stopped past its deadline takes in, first, what happened to its sockets meanwhile.
    io.restart();
    io.run_for(300ms);
    for (const auto& p : peers)
      report.open += p.conn->is_open() ? 1 : 0;
  } catch (const std::exception& e) {
    report.mismatched = static_cast<std::size_t>(-1);
    report.closed[std::string{"exception:"} + e.what()] = 1;
  }
  const std::string line = report.line() + "\n";
  [[maybe_unused]] const auto written = ::write(report_fd, line.data(), line.size());
  ::_exit(0);
}

struct server_close {
  std::size_t group;
  close_reason reason;
  clock_type::time_point at;
};

} // namespace

TEST_CASE("chaos: random faults over a few hundred connections end with true reasons, no loss and no leak") {
  if (!chaos_can_run())
    return;
  tether::fault::network net;
  for (const auto& g : groups)
    net.add_client_address(g.address);

  // Declared before the listener, whose destructor may still report closes into them.
  std::map<std::string, std::size_t> group_of;
  for (std::size_t i = 0; i < groups.size(); ++i)
    group_of[groups[i].address] = i;
  std::vector<server_close> closes;
  std::size_t accepted = 0;

  asio::io_context io;
  using policy_type = tether::liveness<tether::tcp_keepalive, tether::heartbeat, tether::idle_reaper>;
  tether::listener<tether::line_codec, policy_type> server{
      io,
      {.address = asio::ip::make_address(tether::fault::network::server_address), .wheel = {.tick = 20ms}},
      tether::line_codec{},
      tether::liveness{server_keepalive, server_heartbeat, server_reaper}};
  server.on_accept([&](auto&) { ++accepted; });
  server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
  server.on_close([&](auto& conn, close_reason why) {
    closes.push_back({group_of.at(conn.remote().address().to_string()), why, clock_type::now()});
  });
  {
    const netns_scope inside{net.server};
    REQUIRE_FALSE(server.start());
  }
  const auto server_endpoint = net.server_endpoint(server.local_endpoint().port());
  // Descriptors and heap before any client: where they must return.
  run_until(io, [] { return false; }, 50ms);
  const std::size_t descriptors_before = open_descriptors();
  const std::size_t heap_before = heap_in_use();

  const auto seed = static_cast<std::uint32_t>(std::random_device{}());
  std::mt19937 random{seed};
  const auto at_random = [&](std::chrono::milliseconds from, std::chrono::milliseconds to) {
    return std::chrono::milliseconds{std::uniform_int_distribution<std::int64_t>{from.count(), to.count()}(random)};
  };
  fmt::print("CHAOS | seed {} | {} groups x {} connections | run {} s\n", seed, groups.size(), per_group,
             std::chrono::duration_cast<std::chrono::seconds>(run_length).count());

  // One process per group, forked before this process holds any connection it could inherit.
  std::vector<pid_t> children(groups.size(), -1);
  std::vector<int> reports(groups.size(), -1);
  struct reaper {
    std::vector<pid_t>& pids;
    ~reaper() {
      for (const pid_t pid : pids) {
        if (pid > 0) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
      }
    }
  } child_guard{children};
  for (std::size_t i = 0; i < groups.size(); ++i) {
    int pipe_ends[2];
    REQUIRE(::pipe(pipe_ends) == 0);
    std::fflush(stdout);  // a child must not inherit, and perhaps repeat, what this process has yet to print
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(pipe_ends[0]);
      run_clients(net.client, groups[i], server_endpoint, pipe_ends[1]);
    }
    ::close(pipe_ends[1]);
    children[i] = child;
    reports[i] = pipe_ends[0];
  }
  const auto started = clock_type::now();
  REQUIRE(run_until(io, [&] { return accepted == groups.size() * per_group; }, scaled(10'000ms)));

  // The timeline of faults, drawn at random within bounds every detection fits in.
  const auto index_of = [](fault what) {
    return static_cast<std::size_t>(
        std::find_if(groups.begin(), groups.end(), [&](const group& g) { return g.what == what; }) - groups.begin());
  };
  struct event {
    std::chrono::milliseconds at;
    std::string what;
    std::function<void()> act;
  };
  std::vector<event> timeline;
  std::map<std::size_t, clock_type::time_point> struck;  // when each fatal fault hit its group
  const auto strike = [&](fault what, std::function<void()> act) {
    return [&, what, act = std::move(act)] {
      act();
      struck[index_of(what)] = clock_type::now();
    };
  };
  net.limit_rate_towards_clients("8mbit");
  timeline.push_back({at_random(300ms, 1000ms), "3 % loss on lossy",
                      [&] { net.afflict(groups[index_of(fault::loss)].address, tether::fault::network::fate::lossy, 3); }});
  timeline.push_back({at_random(1000ms, 4000ms), "blackhole blackholed", strike(fault::blackhole, [&] {
                        net.afflict(groups[index_of(fault::blackhole)].address, tether::fault::network::fate::blackholed);
                      })});
  timeline.push_back({at_random(1000ms, 4000ms), "resets for reset", strike(fault::reset, [&] {
                        net.afflict(groups[index_of(fault::reset)].address, tether::fault::network::fate::reset);
                      })});
  timeline.push_back({at_random(1000ms, 4000ms), "SIGSTOP stopped",
                      strike(fault::stopped, [&] { ::kill(children[index_of(fault::stopped)], SIGSTOP); })});
  for (int i = 0; i < 3; ++i) {
    const auto at = at_random(1000ms + i * 2500ms, 2500ms + i * 2500ms);
    const pid_t hiccup = children[index_of(fault::hiccup)];
    timeline.push_back({at, "SIGSTOP hiccup", [hiccup] { ::kill(hiccup, SIGSTOP); }});
    timeline.push_back({at + 400ms, "SIGCONT hiccup", [hiccup] { ::kill(hiccup, SIGCONT); }});
  }
  for (int i = 0; i < 2; ++i) {
    timeline.push_back({at_random(2000ms + i * 3500ms, 5000ms + i * 3500ms), "server stall",
                        [&] { asio::post(io, [] { std::this_thread::sleep_for(server_stall); }); }});
  }
  std::sort(timeline.begin(), timeline.end(), [](const event& a, const event& b) { return a.at < b.at; });
  for (const auto& e : timeline) {
    run_until(io, [&] { return clock_type::now() >= started + e.at; }, e.at + 1s);
    fmt::print("CHAOS | {:>5} ms | {}\n", e.at.count(), e.what);
    e.act();
  }
  // Until the clients stop sending: every fault has been detected by then, and no close may be missing yet.
  run_until(io, [&] { return clock_type::now() >= started + last_send; }, run_length);
  const auto closes_while_running = closes;

  // The stopped process resumes once its deadline has passed, and reports like the others.
  ::kill(children[index_of(fault::stopped)], SIGCONT);
  std::vector<client_report> client_reports(groups.size());
  for (std::size_t i = 0; i < groups.size(); ++i) {
    std::string line;
    std::array<char, 4096> buffer{};
    bool exited = false;  // waitpid reaps once: the predicate must remember it
    REQUIRE(run_until(io, [&] { return exited = exited || ::waitpid(children[i], nullptr, WNOHANG) == children[i]; },
                      run_length + scaled(10'000ms)));
    children[i] = -1;
    for (ssize_t n; (n = ::read(reports[i], buffer.data(), buffer.size())) > 0;)
      line.append(buffer.data(), static_cast<std::size_t>(n));
    ::close(reports[i]);
    client_reports[i] = client_report::parse(line);
  }

  // The server's view: per group, the closes while the faults ran, and how long detection took.
  for (std::size_t i = 0; i < groups.size(); ++i) {
    std::map<close_reason, std::size_t> reasons;
    std::chrono::milliseconds slowest{0};
    for (const auto& c : closes_while_running) {
      if (c.group != i)
        continue;
      ++reasons[c.reason];
      if (struck.contains(i))
        slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(c.at - struck[i]));
    }
    std::string by_reason;
    for (const auto& [reason, count] : reasons)
      by_reason += fmt::format(" {}={}", reason, count);
    const std::uint64_t afflicted = net.afflicted_packets(groups[i].address);
    const auto& r = client_reports[i];
    fmt::print("CHAOS | {:<10} | packets dropped or reset {} | server closes:{} | slowest detection {} | client "
               "open {} sent {} echoed {} mismatched {} | client closes:{}\n",
               groups[i].name, afflicted, by_reason.empty() ? " none" : by_reason,
               struck.contains(i) ? fmt::format("{} ms", slowest.count()) : std::string{"-"}, r.open, r.sent, r.echoed,
               r.mismatched, r.closes());

    std::size_t total = 0;
    for (const auto& [reason, count] : reasons)
      total += count;
    switch (groups[i].what) {
    case fault::loss:
      CHECK(afflicted > 0);
      [[fallthrough]];
    case fault::none:
    case fault::hiccup:
      CHECK(total == 0);
      CHECK(r.open == per_group);
      CHECK(r.mismatched == 0);
      CHECK(r.sent > 0);
      CHECK(r.echoed == r.sent);
      break;
    case fault::blackhole:
      CHECK(reasons[close_reason::heartbeat_timeout] + reasons[close_reason::keepalive_timeout] == per_group);
      CHECK(r.closed_with("heartbeat_timeout") == per_group);
      break;
    case fault::reset:
      CHECK(reasons[close_reason::peer_reset] == per_group);
      CHECK(r.closed_with("peer_reset") == per_group);
      break;
    case fault::stopped:
      CHECK(reasons[close_reason::heartbeat_timeout] == per_group);
      CHECK(r.open == 0);
      break;
    case fault::idle:
      CHECK(reasons[close_reason::idle_timeout] == per_group);
      CHECK(r.closed_with("peer_closed") == per_group);
      break;
    }
    if (struck.contains(i)) {
      // The heartbeat's bound, a tick, and the longest server stall that may have come in between.
      CHECK(slowest <= server_heartbeat.interval + server_heartbeat.timeout + server_stall + scaled(500ms));
    }
  }

  // Every client is gone: the server holds nothing more of them.
  REQUIRE(run_until(io, [&] { return server.connections() == 0; }, scaled(10'000ms)));
  run_until(io, [] { return false; }, 100ms);
  const std::size_t descriptors_after = open_descriptors();
  const std::size_t heap_after = heap_in_use();
  fmt::print("CHAOS | server descriptors {} -> {} | heap {} -> {} B | {} closes in all\n", descriptors_before,
             descriptors_after, heap_before, heap_after, closes.size());
  CHECK(descriptors_after == descriptors_before);
  CHECK(heap_after <= heap_before + 256 * 1024);
  server.stop(0ms);
  run_until(io, [] { return false; }, 50ms);
}

// The adaptive heartbeat against real middleboxes that forget idle flows, in network namespaces (see
// ../fault/network.hpp): the router's conntrack firewall, and HAProxy with `timeout client/server`. Each run
// asserts that the learned interval ends within [50 %, 100 %) of the middlebox's timeout after a bounded number
// of probes, that the protected connection stays up throughout, and that a shorter timeout mid-run makes the
// interval back off. About 30 s each, so they run in one configuration only (TETHER_CHAOS_TESTS).
#include "catch.hpp"

#include "loopback.hpp"
#include "namespaced_echo_server.hpp"
#include "network.hpp"
#include "peers.hpp"
#include "skip_or_fail.hpp"

#include <tether/codec/line_codec.hpp>
#include <tether/connection.hpp>
#include <tether/connector.hpp>
#include <tether/format.hpp>
#include <tether/idle_interval_learner.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sys/wait.h>
#include <string_view>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using tether::close_reason;
using tether::interval_change;
using tether::fault::netns_scope;
using tether::test::run_until;
using clock_type = std::chrono::steady_clock;

namespace {

bool adaptive_tests_can_run(bool needs_haproxy) {
  std::string missing = tether::fault::missing_privileges();
  if (missing.empty() && needs_haproxy && tether::fault::shell("command -v haproxy") != 0)
    missing = "needs haproxy (scripts/install-deps)";
  return tether::fault::can_run_or_skip("adaptive heartbeat tests", missing);
}

using policy = tether::liveness<tether::heartbeat>;
using adaptive_client = tether::connector<tether::line_codec, policy>;

// A client in the client namespace that learns, and records what happens to the connection it protects.
struct learning_client {
  learning_client(asio::io_context& io, const std::string& host, std::uint16_t port)
      : connector(io,
                  {.host = host,
                   .service = std::to_string(port),
                   .wheel = {.tick = 20ms},
                   .adaptive = tether::adaptive_heartbeat{.min = 1s, .max = 20s, .reverify_every = 500ms,
                                                          .max_probes_per_hour = 120}},
                  {}, policy{tether::heartbeat{.interval = 1s, .timeout = 1s}}) {
    connector.on_connect([this](adaptive_client::connection_type&) { ++connects; });
    connector.on_close([this](adaptive_client::connection_type&, close_reason why) { closed = why; });
    connector.on_interval_change([this](milliseconds interval, interval_change why) {
      changes.push_back({interval, why});
      fmt::print("ADAPTIVE | interval {} ms ({}) after {} probes, {} failed\n", interval.count(),
                 tether::interval_change_name(why), learner().probes(), learner().probes_failed());
    });
  }
  const tether::idle_interval_learner& learner() const { return *connector.interval_learner(); }
  bool settled() const { return connector.interval_learner() && learner().settled(); }
  bool backed_off() const {
    return std::any_of(changes.begin(), changes.end(), [](const change& c) { return c.why == interval_change::path_stricter; });
  }

  struct change {
    milliseconds interval;
    interval_change why;
  };
  adaptive_client connector;
  int connects = 0;
  std::optional<close_reason> closed;
  std::vector<change> changes;
};

// Runs until the learner settles (or the protected connection closes), prints what it learned and how, and
// requires it within [50 %, 100 %) of the path's timeout after at most 8 probes more than `probes_before`.
void learns_within(asio::io_context& io, learning_client& client, std::string_view path, milliseconds timeout,
                   unsigned probes_before = 0) {
  const auto start = clock_type::now();
  run_until(io, [&] { return client.settled() || client.closed.has_value(); }, 90s);
  const auto took = std::chrono::duration_cast<milliseconds>(clock_type::now() - start);
  REQUIRE_FALSE(client.closed.has_value());
  REQUIRE(client.settled());
  const auto& learner = client.learner();
  fmt::print("ADAPTIVE | {} {} ms | learned {} ms | {} probes, {} failed | {} ms\n", path, timeout.count(),
             learner.interval().count(), learner.probes() - probes_before, learner.probes_failed(), took.count());
  CHECK(learner.interval() >= timeout / 2);
  CHECK(learner.interval() < timeout);
  CHECK(learner.probes() <= probes_before + 8);
}

// After the path's timeout shortened: the interval drops back at a failed probe, then is learned again.
void backs_off_and_learns_again(asio::io_context& io, learning_client& client, std::string_view path,
                                milliseconds timeout) {
  const auto probes_before = client.learner().probes();
  REQUIRE(run_until(io, [&] { return client.backed_off() || client.closed.has_value(); }, 30s));
  learns_within(io, client, path, timeout, probes_before);
  CHECK(client.connects == 1);  // the protected connection is the first one still
  CHECK_FALSE(client.closed.has_value());
  CHECK(client.connector.current() != nullptr);
}

// HAProxy in the router namespace, between the client and the server; a reload starts a new process that takes
// the new connections while the old one keeps the ones it has, with the old timeouts.
class haproxy_in_router {
public:
  haproxy_in_router(const tether::fault::network& net, std::uint16_t server_port)
      : net_(net), config_("/tmp/tether-adaptive-haproxy-" + std::to_string(::getpid()) + ".cfg"),
        server_port_(server_port) {}
  ~haproxy_in_router() {
    for (const pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::remove(config_.c_str());
  }
  haproxy_in_router(const haproxy_in_router&) = delete;
  haproxy_in_router& operator=(const haproxy_in_router&) = delete;

  static constexpr const char* address = "198.18.1.1";
  static constexpr std::uint16_t port = 7443;

  // Starts (or reloads into) a process whose idle timeout on both sides is `idle_timeout`.
  void run_with(milliseconds idle_timeout) {
    std::ofstream{config_} << "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client " << idle_timeout.count()
                           << "ms\n  timeout server " << idle_timeout.count() << "ms\nfrontend front\n  bind "
                           << address << ":" << port << "\n  default_backend back\nbackend back\n  server s "
                           << tether::fault::network::server_address << ":" << server_port_ << "\n";
    const std::string previous = pids_.empty() ? "" : std::to_string(pids_.back());
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (previous.empty())
        ::execlp("ip", "ip", "netns", "exec", net_.router.c_str(), "haproxy", "-q", "-db", "-f", config_.c_str(),
                 static_cast<char*>(nullptr));
      else
        ::execlp("ip", "ip", "netns", "exec", net_.router.c_str(), "haproxy", "-q", "-db", "-f", config_.c_str(),
                 "-sf", previous.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    pids_.push_back(pid);
  }
  bool listening() const {
    return tether::fault::shell("ip netns exec " + net_.router + " ss -Hltn 'sport = :" + std::to_string(port) +
                                "' | grep -q LISTEN") == 0;
  }

private:
  const tether::fault::network& net_;
  std::string config_;
  std::uint16_t server_port_;
  std::vector<pid_t> pids_;
};

} // namespace

TEST_CASE("adaptive: the heartbeat learns a firewall's idle timeout on probes and backs off when it shortens") {
  if (!adaptive_tests_can_run(false))
    return;
  tether::fault::network net;
  net.forget_idle_flows_after(4s);
  asio::io_context io;
  tether::fault::namespaced_echo_server server{io, net};
  netns_scope inside{net.client};
  learning_client client{io, tether::fault::network::server_address, server.port()};
  REQUIRE_FALSE(client.connector.start());

  learns_within(io, client, "firewall forgets after", 4s);
  for (const auto& change : client.changes)
    CHECK(change.why == interval_change::proven_longer);

  net.forget_idle_flows_after(3s);
  backs_off_and_learns_again(io, client, "firewall forgets after", 3s);
}

TEST_CASE("adaptive: the heartbeat learns HAProxy's timeout client on probes and backs off after a reload") {
  if (!adaptive_tests_can_run(true))
    return;
  tether::fault::network net;
  asio::io_context io;
  tether::fault::namespaced_echo_server server{io, net};
  haproxy_in_router proxy{net, server.port()};
  proxy.run_with(4500ms);
  REQUIRE(tether::test::eventually([&] { return proxy.listening(); }, 10s));
  netns_scope inside{net.client};
  learning_client client{io, haproxy_in_router::address, haproxy_in_router::port};
  REQUIRE_FALSE(client.connector.start());

  learns_within(io, client, "haproxy timeout client", 4500ms);

  // The protected connection stays with the old process and its old timeout; the probes meet the new one.
  proxy.run_with(3200ms);
  backs_off_and_learns_again(io, client, "haproxy timeout client", 3200ms);
}

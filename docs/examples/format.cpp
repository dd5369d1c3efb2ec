// fmt formatters for tether's value types: each prints in one readable form and takes no format spec.
#include <tether/format.hpp>
#include <tether/version.hpp>

#include <fmt/core.h>

#include <string_view>

using namespace std::chrono_literals;
namespace sockopt = tether::sockopt;

namespace {
int failures = 0;
void expect(std::string_view printed, std::string_view wanted) {
  fmt::print("{}\n", printed);
  if (printed != wanted) {
    ++failures;
    fmt::print("FAILED: expected {}\n", wanted);
  }
}
} // namespace

int main() {
  fmt::print("tether {}.{}.{} (TETHER_VERSION {})\n", TETHER_VERSION_MAJOR, TETHER_VERSION_MINOR,
             TETHER_VERSION_PATCH, TETHER_VERSION);

  expect(fmt::format("{}", sockopt::keepalive{.idle = 60s, .interval = 10s, .count = 3}),
         "keepalive{idle=60s interval=10s count=3}");
  expect(fmt::format("{}", sockopt::keepalive{.enabled = false}), "keepalive{off}");
  expect(fmt::format("{}", sockopt::user_timeout{1500ms}), "user_timeout{1500ms}");
  expect(fmt::format("{}", sockopt::user_timeout{}), "user_timeout{system default}");
  expect(fmt::format("{}", sockopt::linger::timed(5s)), "linger{timed 5s}");
  expect(fmt::format("{}", sockopt::linger::abortive()), "linger{abortive}");
  expect(fmt::format("{}", sockopt::reuse_port{true}), "reuse_port{on}");
  expect(fmt::format("{}", sockopt::no_delay{false}), "no_delay{off}");
  expect(fmt::format("{}", sockopt::receive_buffer_size{4096}), "receive_buffer_size{4096 bytes}");
  expect(fmt::format("{}", sockopt::tcp_state::close_wait), "close_wait");
  expect(fmt::format("{}", sockopt::tcp_info{.state = sockopt::tcp_state::established, .rtt = 35us}),
         "tcp_info{state=established rtt=35us rttvar=0s retransmits=0 probes=0 unacked=0 last_data_recv=0s "
         "last_ack_recv=0s}");
  expect(fmt::format("{}", tether::close_reason::heartbeat_timeout), "heartbeat_timeout");

  tether::stats counters;
  counters.record_open();
  counters.record_open();
  counters.record_close(tether::close_reason::idle_timeout);
  counters.record_heartbeat_rtt(80us);
  expect(fmt::format("{}", counters), "stats{live=1 opened=2 idle_timeout=1 heartbeats=1 min_rtt=80us}");
  return failures == 0 ? 0 : 1;
}

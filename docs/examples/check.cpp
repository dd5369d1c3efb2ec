// tether::check: a policy read against the path before any connection opens. Behind an AWS ALB (60 s, and a
// proxy, so keepalive probes do not count there), keepalive alone cannot keep a connection; a heartbeat under
// 60 s can. The findings are sentences a service can log at start.
#include <tether/check.hpp>

#include <fmt/core.h>

#include <chrono>
#include <string_view>

using namespace std::chrono_literals;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}
} // namespace

int main() {
  const tether::path_hints behind_alb{.middlebox = tether::middleboxes::aws_alb};

  const tether::liveness kernel_only{tether::tcp_keepalive{.idle = 30s, .interval = 5s, .count = 3}};
  const auto found = tether::check(kernel_only, behind_alb);
  for (const tether::diagnostic& d : found)
    fmt::print("{} {}: {}\n", tether::severity_name(d.level), tether::finding_name(d.what), d.message);
  check(found.size() == 1 && found[0].what == tether::finding::keepalive_ends_at_proxy &&
            found[0].level == tether::severity::error,
        "keepalive alone cannot keep an ALB's connection");

  const tether::liveness with_heartbeat{tether::tcp_keepalive{.idle = 30s, .interval = 5s, .count = 3},
                                        tether::heartbeat{.interval = 45s, .timeout = 10s}};
  check(tether::check(with_heartbeat, behind_alb).empty(), "a 45 s heartbeat keeps it");

  // Without a middlebox the numbers are still checked against one another and the wheel's tick.
  const tether::liveness tight{tether::heartbeat{.interval = 1s, .timeout = 150ms}};
  const auto ticks = tether::check(tight, {.tick = 100ms});
  check(ticks.size() == 1 && ticks[0].what == tether::finding::heartbeat_timeout_within_ticks,
        "a 150 ms timeout on a 100 ms tick leaves the peer 50 ms");
  return failures == 0 ? 0 : 1;
}

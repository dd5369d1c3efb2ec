// The liveness policy the overhead and memory benchmarks run tether with: all four strategies active, with
// bounds far beyond any run, so that their bookkeeping costs what it costs in production while no ping, probe
// or idle close ever reaches the measurement.
#pragma once

#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>

#include <chrono>

namespace bench {

inline auto all_four_strategies() {
  using namespace std::chrono_literals;
  return tether::liveness{tether::tcp_keepalive{.idle = 600s, .interval = 10s, .count = 3}, tether::user_timeout{30s},
                          tether::heartbeat{.interval = 1h, .timeout = 10s}, tether::idle_reaper{.read_idle = 1h}};
}

using all_four_strategies_type = decltype(all_four_strategies());

} // namespace bench

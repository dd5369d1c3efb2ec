// tether::check: reads a liveness policy against the path and the peers it will meet, before any connection
// opens, and says in sentences with the numbers what will go wrong.
//
//   for (const tether::diagnostic& d : tether::check(policy, {.middlebox = tether::middleboxes::aws_alb}))
//     log(d.message);
//
// validate() refuses numbers that cannot work on their own (a negative interval); check() finds numbers that
// each look fine but do not fit the path or one another: a keepalive idle at or above the middlebox's idle
// timeout, a heartbeat timeout the wheel's tick eats, an idle reaper that closes a connection before the
// heartbeat could tell that its peer was dead. It knows the built-in strategies; a strategy of your own adds no
// findings. It never blocks anything: what to do with an error is the caller's decision.
#pragma once

#include <tether/detail/duration_text.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/peer_paced.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>
#include <tether/socket_options.hpp>
#include <tether/timer_wheel.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether {

// A device on the path that forgets flows idle for longer than its timeout: a NAT, a firewall, a load balancer.
struct middlebox {
  std::string_view name{};
  std::chrono::milliseconds idle_timeout{0};  // 0: none known, nothing is checked against it
  // A proxy ends TCP at itself (an HTTP load balancer, HAProxy, nginx's stream proxy). Keepalive probes reach
  // its kernel only and carry no data, so they do not reset its idle timer: only data, such as heartbeats, does.
  bool terminates_tcp = false;
};

// The published defaults; each is configurable on the device, so declare yours where it differs.
namespace middleboxes {
inline constexpr middlebox aws_alb{"AWS ALB", std::chrono::seconds{60}, true};
inline constexpr middlebox aws_nlb{"AWS NLB", std::chrono::seconds{350}, false};
inline constexpr middlebox azure_load_balancer{"Azure Load Balancer", std::chrono::minutes{4}, false};
inline constexpr middlebox gcp_cloud_nat{"GCP Cloud NAT", std::chrono::minutes{20}, false};
// RFC 5382 REQ-5: the shortest established-flow timeout a NAT may have, 2 h 4 min.
inline constexpr middlebox rfc5382_nat{"a NAT at RFC 5382's minimum", std::chrono::minutes{124}, false};
} // namespace middleboxes

// What the configuration must cope with. Every field may stay unknown.
struct path_hints {
  tether::middlebox middlebox{};  // the device on the path with the shortest idle timeout
  std::chrono::milliseconds tick = timer_wheel_options{}.tick;  // the wheel the connections run on
  // How often the peers send at least a ping when they have nothing else to say (their heartbeat interval, or
  // the keep-alive they declare); 0: unknown.
  std::chrono::milliseconds peer_ping_interval{0};
};

enum class severity : std::uint8_t {
  warning,  // works, but not as the numbers suggest
  error,    // connections will be lost or closed although the peer is alive
};

enum class finding : std::uint8_t {
  nothing_keeps_path_open,        // no strategy sends on an idle connection, and the middlebox forgets idle flows
  keepalive_idle_too_long,        // keepalive's first probe comes at or after the middlebox's timeout
  keepalive_ends_at_proxy,        // the middlebox terminates TCP: keepalive probes do not count there
  heartbeat_interval_too_long,    // the ping comes at or after the middlebox's timeout
  keepalive_lost_probe_fatal,     // idle + interval reaches the timeout: one lost probe loses the flow
  user_timeout_cuts_keepalive,    // shorter than keepalive's bound: on Linux it replaces keepalive's count
  heartbeat_timeout_within_ticks, // under two ticks: the peer has at most one tick to answer
  idle_reaper_before_heartbeat,   // a dead peer is reaped as idle before the heartbeat can tell
  peer_paced_too_short,           // peers pinging at their pace are closed as silent
  peers_ping_too_often,           // the peers' pace is faster than min_peer_ping_interval: ping_flood
  heartbeat_faster_than_accepted, // a peer configured like this side would be closed with ping_flood
};

constexpr std::string_view finding_name(finding what) noexcept {
  switch (what) {
  case finding::nothing_keeps_path_open: return "nothing_keeps_path_open";
  case finding::keepalive_idle_too_long: return "keepalive_idle_too_long";
  case finding::keepalive_ends_at_proxy: return "keepalive_ends_at_proxy";
  case finding::heartbeat_interval_too_long: return "heartbeat_interval_too_long";
  case finding::keepalive_lost_probe_fatal: return "keepalive_lost_probe_fatal";
  case finding::user_timeout_cuts_keepalive: return "user_timeout_cuts_keepalive";
  case finding::heartbeat_timeout_within_ticks: return "heartbeat_timeout_within_ticks";
  case finding::idle_reaper_before_heartbeat: return "idle_reaper_before_heartbeat";
  case finding::peer_paced_too_short: return "peer_paced_too_short";
  case finding::peers_ping_too_often: return "peers_ping_too_often";
  case finding::heartbeat_faster_than_accepted: return "heartbeat_faster_than_accepted";
  }
  return "unknown";
}

constexpr std::string_view severity_name(severity level) noexcept {
  return level == severity::error ? "error" : "warning";
}

struct diagnostic {
  finding what;
  severity level;
  std::string message;  // one sentence with the numbers that cause it and what follows from them
};

namespace detail {

inline std::string concat(std::initializer_list<std::string_view> parts) {
  std::string text;
  for (const std::string_view part : parts)
    text += part;
  return text;
}

inline std::string number_text(double value) {
  std::array<char, 32> text{};
  const auto end = std::to_chars(text.data(), text.data() + text.size(), value).ptr;
  return {text.data(), end};
}

// What the kernel will run: keepalive durations rounded up to its unit, as apply() sets them.
inline std::chrono::milliseconds effective_keepalive(std::chrono::milliseconds value) noexcept {
  using unit = platform::keepalive_unit;
  return from_kernel_units<unit>(to_kernel_units<unit>(value));
}

// The idle reaper's shortest bound that is on (every bound counts only data, which a dead peer sends none of).
inline std::chrono::milliseconds shortest_reaper_bound(const idle_reaper& reaper) noexcept {
  auto shortest = std::chrono::milliseconds::max();
  for (const auto bound : {reaper.read_idle, reaper.write_idle, reaper.all_idle})
    if (bound.count() > 0)
      shortest = std::min(shortest, bound);
  return shortest;
}

} // namespace detail

template <class... Strategies>
std::vector<diagnostic> check(const liveness<Strategies...>& policy, const path_hints& path = {}) {
  using policy_type = liveness<Strategies...>;
  using detail::concat;
  using detail::duration_text;
  std::vector<diagnostic> found;
  const auto report = [&found](finding what, severity level, std::string message) {
    found.push_back({what, level, std::move(message)});
  };
  const std::string tick = duration_text(path.tick);

  // Keeping the flow open: it is enough that one mechanism puts a packet on the path before the timeout, or
  // that the reaper closes an idle connection before the middlebox forgets it.
  const middlebox& box = path.middlebox;
  if (box.idle_timeout.count() > 0) {
    const std::string_view box_name = box.name.empty() ? std::string_view{"the middlebox"} : box.name;
    const std::string box_timeout = concat({box_name, "'s idle timeout of ", duration_text(box.idle_timeout)});
    std::vector<diagnostic> why_not;  // reported only when nothing else keeps the flow open
    bool kept_by_traffic_or_reaper = false;
    bool kept_by_keepalive = false;
    std::optional<diagnostic> lost_probe;
    if constexpr (policy_type::template has<tcp_keepalive>) {
      const tcp_keepalive& keepalive = policy.template get<tcp_keepalive>();
      const auto idle = detail::effective_keepalive(keepalive.idle);
      const auto interval = detail::effective_keepalive(keepalive.interval);
      if (box.terminates_tcp) {
        why_not.push_back({finding::keepalive_ends_at_proxy, severity::error,
                           concat({"keepalive cannot keep ", box_name, " open: it terminates TCP, so its idle timer "
                                   "counts data only and the probes end at its kernel; use heartbeat with an "
                                   "interval below ", duration_text(box.idle_timeout)})});
      } else if (idle >= box.idle_timeout) {
        why_not.push_back({finding::keepalive_idle_too_long, severity::error,
                           concat({"keepalive idle ", duration_text(idle), " is not below ", box_timeout,
                                   ": an idle flow is forgotten before the first probe, and the next packet is reset "
                                   "or lost"})});
      } else {
        kept_by_keepalive = true;
        if (idle + interval >= box.idle_timeout)
          lost_probe = diagnostic{finding::keepalive_lost_probe_fatal, severity::warning,
                                  concat({"keepalive idle ", duration_text(idle), " plus interval ",
                                          duration_text(interval), " reaches ", box_timeout,
                                          ": one lost probe and the flow is forgotten before the next"})};
      }
    }
    if constexpr (policy_type::template has<heartbeat>) {
      const heartbeat& beat = policy.template get<heartbeat>();
      // A ping leaves at the first tick after the interval.
      if (beat.interval + path.tick >= box.idle_timeout)
        why_not.push_back({finding::heartbeat_interval_too_long, severity::error,
                           concat({"heartbeat interval ", duration_text(beat.interval), " plus one tick (", tick,
                                   ") is not below ", box_timeout, ": an idle flow is forgotten before the ping"})});
      else
        kept_by_traffic_or_reaper = true;
    }
    if constexpr (policy_type::template has<idle_reaper>) {
      const auto reaped = detail::shortest_reaper_bound(policy.template get<idle_reaper>());
      if (reaped != std::chrono::milliseconds::max() && reaped + path.tick < box.idle_timeout)
        kept_by_traffic_or_reaper = true;
    }
    // The peers' own pings cross the path as well.
    if (path.peer_ping_interval.count() > 0 && path.peer_ping_interval + path.tick < box.idle_timeout)
      kept_by_traffic_or_reaper = true;
    // Traffic every heartbeat interval means keepalive never probes, so its margin no longer matters.
    if (!kept_by_traffic_or_reaper && kept_by_keepalive && lost_probe) {
      found.push_back(std::move(*lost_probe));
    } else if (!kept_by_traffic_or_reaper && !kept_by_keepalive) {
      if (why_not.empty())
        report(finding::nothing_keeps_path_open, severity::error,
               concat({"nothing is sent on an idle connection (no tcp_keepalive, no heartbeat) and nothing closes it "
                       "first: ", box_timeout, " drops it silently"}));
      found.insert(found.end(), why_not.begin(), why_not.end());
    }
  }

  if constexpr (policy_type::template has<tcp_keepalive> && policy_type::template has<user_timeout>) {
    const tcp_keepalive& keepalive = policy.template get<tcp_keepalive>();
    const auto idle = detail::effective_keepalive(keepalive.idle);
    const auto interval = detail::effective_keepalive(keepalive.interval);
    const auto bound = idle + interval * keepalive.count;
    const auto timeout = policy.template get<user_timeout>().timeout;
    // Linux's keepalive timer, once a user timeout is set, ignores the count and gives up at its first run at or
    // after the user timeout with a probe outstanding; it runs at idle and then every interval.
    // An interval of zero is validate()'s to refuse; there is no probe count to speak of then.
    const auto probes = timeout <= idle + interval || interval.count() <= 0
                            ? 1
                            : static_cast<int>((timeout - idle + interval - std::chrono::milliseconds{1}) / interval);
    if (interval.count() > 0 && timeout < bound && probes < keepalive.count) {
      report(finding::user_timeout_cuts_keepalive, severity::warning,
             concat({"user timeout ", duration_text(timeout), " is shorter than keepalive's bound ", duration_text(bound),
                     " (", duration_text(idle), " + ", std::to_string(keepalive.count), " x ", duration_text(interval),
                     "): on Linux it replaces keepalive's count, so an idle peer is dropped after ",
                     std::to_string(probes), " unanswered probe", probes == 1 ? "" : "s", " instead of ",
                     std::to_string(keepalive.count), "; use tether::user_timeout_for(keepalive)"}));
    }
  }

  if constexpr (policy_type::template has<heartbeat>) {
    const heartbeat& beat = policy.template get<heartbeat>();
    if (beat.timeout < 2 * path.tick) {
      const auto left = beat.timeout - path.tick;
      report(finding::heartbeat_timeout_within_ticks, left.count() <= 0 ? severity::error : severity::warning,
             concat({"heartbeat timeout ", duration_text(beat.timeout), " is under two ticks of ", tick,
                     ": the ping leaves up to a tick after it was due and the timeout counts from then, so the peer "
                     "may have ",
                     left.count() <= 0 ? std::string{"no time at all"} : "only " + duration_text(left),
                     " to answer; use a timeout of several ticks or a smaller tick"}));
    }
    if (beat.min_peer_ping_interval.count() > 0) {
      if (path.peer_ping_interval.count() > 0 && path.peer_ping_interval < beat.min_peer_ping_interval)
        report(finding::peers_ping_too_often, severity::error,
               concat({"the peers ping every ", duration_text(path.peer_ping_interval), ", faster than min_peer_ping_"
                       "interval ", duration_text(beat.min_peer_ping_interval), " accepts: each is closed with "
                       "ping_flood once its ", std::to_string(beat.max_ping_strikes), " strikes are spent"}));
      else if (path.peer_ping_interval.count() == 0 && beat.interval < beat.min_peer_ping_interval)
        report(finding::heartbeat_faster_than_accepted, severity::warning,
               concat({"heartbeat interval ", duration_text(beat.interval), " is below min_peer_ping_interval ",
                       duration_text(beat.min_peer_ping_interval), ": a peer configured like this side pings faster "
                       "than this side accepts and is closed with ping_flood"}));
    }
    if constexpr (policy_type::template has<idle_reaper>) {
      const auto reaped = detail::shortest_reaper_bound(policy.template get<idle_reaper>());
      const auto detected = beat.interval + beat.timeout;
      if (reaped < detected)
        report(finding::idle_reaper_before_heartbeat, severity::warning,
               concat({"the idle reaper closes a connection without data after ", duration_text(reaped),
                       ", before heartbeat's ", duration_text(beat.interval), " + ", duration_text(beat.timeout),
                       " can find a dead peer: dead peers close as idle_timeout, never heartbeat_timeout",
                       reaped <= beat.interval ? ", and an idle connection is never pinged" : ""}));
    }
  }

  if constexpr (policy_type::template has<peer_paced>) {
    const peer_paced& paced = policy.template get<peer_paced>();
    const auto pace = path.peer_ping_interval.count() > 0 ? path.peer_ping_interval : paced.interval;
    const auto allowed = paced.allowed_silence(typename peer_paced::state{});
    if (pace.count() > 0 && allowed.count() > 0 && allowed < pace + path.tick) {
      const bool below = allowed < pace;
      report(finding::peer_paced_too_short, below ? severity::error : severity::warning,
             concat({"peer_paced allows ", duration_text(allowed), " of silence (", duration_text(paced.interval),
                     " x ", detail::number_text(paced.multiplier), ") until a peer declares its own interval, for peers "
                     "that send every ",
                     duration_text(pace),
                     below ? ": healthy peers are closed with peer_silent"
                           : ": no room for network delay or the tick; a peer on time can be closed with peer_silent",
                     "; raise the multiplier (MQTT uses 1.5)"}));
    }
  }
  return found;
}

} // namespace tether

// tether::idle_interval_learner: finds the longest idle period a path (a NAT, a firewall, a proxy) keeps a TCP
// flow through, without ever risking the connection it protects. The connector runs it when
// connector_options::adaptive is set; it is public so that a client of another shape can run the same search.
//
// The search: the protected connection starts at `min` (or a value remembered for the destination). Candidate
// idle periods are tried on probe connections, each of which idles for the candidate and then pings. The
// candidate doubles until a probe fails, then bisects between the longest period that held and the shortest
// that failed, until the two are within `precision` of each other: it is then settled. The protected
// connection only ever moves to a proven period less the safety `margin`, clamped to [min, max]. A probe that
// fails at or below the proven period, or the protected connection lost after idling, means the path got
// stricter: the interval goes back to `min` at once and the search starts again below the failure. Settled,
// the learner re-verifies every `reverify_every`, alternately the proven period (a stricter path shows here
// before it costs the protected connection) and the failed one (a looser path lets the interval grow).
//
// Cost: at most `max_probes_per_hour` probes (a token bucket holding that many, refilled evenly over an hour),
// each one TCP handshake, one ping and its pong, and a close, with one socket held while it idles. Learning
// from the minimum to a timeout T takes about log2(T / min) doublings plus log2(1 / precision) bisections.
#pragma once

#include <tether/error.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string_view>
#include <system_error>

namespace tether {

struct adaptive_heartbeat {
  std::chrono::milliseconds min{std::chrono::seconds{15}};  // the heartbeat interval known to be safe
  std::chrono::milliseconds max{std::chrono::minutes{5}};   // never idle the protected connection longer
  double margin = 0.25;     // the protected connection idles at most (1 - margin) of the longest proven period
  double precision = 0.1;   // settled once the shortest failure is within this fraction above the proof
  std::chrono::milliseconds reverify_every{std::chrono::minutes{30}};  // settled: one re-check this often
  int max_probes_per_hour = 12;

  std::error_code validate() const noexcept {
    if (min.count() <= 0 || max < min)
      return error::adaptive_heartbeat_bounds_invalid;
    if (!(margin >= 0.0 && margin < 1.0) || !(precision > 0.0 && precision <= 1.0))
      return error::adaptive_heartbeat_fraction_out_of_range;
    if (reverify_every.count() < 0)
      return error::adaptive_heartbeat_reverify_negative;
    if (max_probes_per_hour <= 0)
      return error::adaptive_heartbeat_probe_budget_not_positive;
    return {};
  }
};

enum class interval_change {
  proven_longer,  // a probe held for longer than the proof so far: the interval grew
  path_stricter,  // a probe failed at or below the proof, or the protected connection was lost: back to min
};

constexpr std::string_view interval_change_name(interval_change why) noexcept {
  return why == interval_change::proven_longer ? "proven_longer" : "path_stricter";
}

class idle_interval_learner {
public:
  using clock = std::chrono::steady_clock;
  using milliseconds = std::chrono::milliseconds;

  // `remembered`: a period proven on an earlier connection to the same destination, to start from.
  idle_interval_learner(adaptive_heartbeat options, clock::time_point now, milliseconds remembered = milliseconds{0})
      : options_(options), refill_(std::chrono::duration_cast<clock::duration>(std::chrono::hours{1}) /
                                   std::max(options.max_probes_per_hour, 1)),
        budget_empty_at_(now - refill_ * std::max(options.max_probes_per_hour, 1)), proven_(remembered) {
    note_settling(now);
  }

  // The interval the protected connection runs with.
  milliseconds interval() const noexcept {
    if (proven_ >= ceiling())
      return options_.max;
    const auto kept = milliseconds{static_cast<milliseconds::rep>(static_cast<double>(proven_.count()) *
                                                                  (1.0 - options_.margin))};
    return std::clamp(kept, options_.min, options_.max);
  }
  // The longest idle period a probe survived (zero: none yet), and the shortest one that failed above it (zero:
  // none).
  milliseconds proven() const noexcept { return proven_; }
  milliseconds failed() const noexcept { return failed_; }
  // Nothing left to learn until the next re-verification.
  bool settled() const noexcept {
    if (proven_ >= ceiling())
      return true;
    if (failed_.count() == 0)
      return false;
    const auto floor = std::max(proven_, options_.min);  // a failure at or below min leaves nothing to search
    return static_cast<double>((failed_ - floor).count()) <= options_.precision * static_cast<double>(floor.count());
  }
  const adaptive_heartbeat& options() const noexcept { return options_; }
  unsigned probes() const noexcept { return probes_; }
  unsigned probes_failed() const noexcept { return probes_failed_; }

  struct probe_plan {
    milliseconds idle;       // how long the probe connection stays idle before it pings
    clock::time_point start;  // not before: the probe budget, or the re-verification period, says when
  };
  probe_plan next_probe(clock::time_point now) const noexcept {
    const auto budget_ready = budget_empty_at_ + refill_;
    if (!settled())
      return {candidate(), std::max(now, budget_ready)};
    const auto idle = (reverifications_ % 2 == 0 || failed_.count() == 0) ? std::max(proven_, options_.min) : failed_;
    return {idle, std::max({now, budget_ready, settled_at_ + options_.reverify_every})};
  }

  void probe_started(clock::time_point now) noexcept {
    budget_empty_at_ = std::max(budget_empty_at_, now - refill_ * std::max(options_.max_probes_per_hour, 1)) + refill_;
    ++probes_;
    if (settled())
      ++reverifications_;
  }

  // The probe stayed up through `idle` and its ping was answered.
  std::optional<interval_change> probe_held(milliseconds idle, clock::time_point now) noexcept {
    const auto before = interval();
    if (idle > proven_)
      proven_ = idle;
    if (failed_ <= proven_)
      failed_ = milliseconds{0};  // a looser path: what failed before holds now
    note_settling(now);
    return interval() > before ? std::optional{interval_change::proven_longer} : std::nullopt;
  }

  // The probe was reset, closed or left unanswered after idling `idle`.
  std::optional<interval_change> probe_failed(milliseconds idle, clock::time_point now) noexcept {
    ++probes_failed_;
    return failure(idle, now);
  }

  // The protected connection was lost after running with interval(): that period is no longer safe.
  std::optional<interval_change> connection_lost(clock::time_point now) noexcept { return failure(interval(), now); }

private:
  // The longest period worth proving: the one that lets the protected connection run at max.
  milliseconds ceiling() const noexcept {
    return milliseconds{static_cast<milliseconds::rep>(static_cast<double>(options_.max.count()) /
                                                       (1.0 - options_.margin))};
  }
  milliseconds candidate() const noexcept {
    const auto floor = std::max(proven_, options_.min);
    if (failed_.count() == 0)
      return std::min(floor * 2, ceiling());
    return floor + (failed_ - floor) / 2;
  }

  std::optional<interval_change> failure(milliseconds idle, clock::time_point now) noexcept {
    const auto before = interval();
    if (idle <= proven_)
      proven_ = milliseconds{0};  // what held before fails now: nothing above min is proven any more
    failed_ = failed_.count() == 0 ? idle : std::min(failed_, idle);
    note_settling(now);
    return interval() < before ? std::optional{interval_change::path_stricter} : std::nullopt;
  }

  // Settled, the next re-verification waits a whole period from the last verdict.
  void note_settling(clock::time_point now) noexcept {
    if (settled())
      settled_at_ = now;
    else
      reverifications_ = 0;
  }

  adaptive_heartbeat options_;
  clock::duration refill_;
  clock::time_point budget_empty_at_;  // the token bucket, as the time at which it held no token
  clock::time_point settled_at_{};
  milliseconds proven_{0};
  milliseconds failed_{0};
  unsigned probes_ = 0;
  unsigned probes_failed_ = 0;
  unsigned reverifications_ = 0;
};

} // namespace tether

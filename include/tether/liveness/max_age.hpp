// Maximum connection age: a connection older than `age` is asked to leave with a goaway, and reset if it is
// still open `grace` later; both close with max_age. Long-lived connections otherwise stay on the servers that
// were up when they connected, so a fleet that scales out never spreads its load again (gRPC's
// MAX_CONNECTION_AGE and MAX_CONNECTION_AGE_GRACE). Each connection's age is drawn with +-jitter, so that
// clients that connected together do not all leave, and reconnect, together.
//
// Where the codec has no control frames (raw_codec) the goaway is a graceful close (FIN), and where its goaway
// ends the stream (WebSocket: a closing frame with 1001, going away) it is that graceful close; either is
// bounded by the connection's graceful_close_timeout instead of `grace`. An age of zero is off.
//
// Handlers read a connection's remaining age and, once it was asked to leave, its drain deadline from
// connection::liveness_state<max_age>().
#pragma once

#include <tether/detail/random_bytes.hpp>
#include <tether/error.hpp>
#include <tether/liveness/strategy.hpp>

#include <algorithm>
#include <chrono>
#include <random>

namespace tether {

struct max_age {
  std::chrono::milliseconds age{0};  // 0 = off
  std::chrono::milliseconds grace{std::chrono::seconds{30}};
  double jitter = 0.1;  // each connection's age is drawn uniformly from age x [1 - jitter, 1 + jitter]

  struct state {
    // When the connection is asked to leave; time_point::max() when the strategy is off.
    liveness_clock::time_point leave_at = liveness_clock::time_point::max();
    // Once it was asked: when it is reset if still open; time_point::max() before.
    liveness_clock::time_point drain_deadline = liveness_clock::time_point::max();

    bool draining() const noexcept { return drain_deadline != liveness_clock::time_point::max(); }
    // Zero once the connection was asked to leave.
    std::chrono::milliseconds remaining_age(liveness_clock::time_point now) const noexcept {
      if (leave_at == liveness_clock::time_point::max())
        return std::chrono::milliseconds::max();
      return std::max(std::chrono::milliseconds{0},
                      std::chrono::duration_cast<std::chrono::milliseconds>(leave_at - now));
    }
  };
  static constexpr bool needs_control_frames = false;

  std::error_code validate() const noexcept {
    if (age.count() < 0)
      return error::max_age_negative;
    if (grace.count() < 0)
      return error::max_age_grace_negative;
    if (!(jitter >= 0.0 && jitter <= 0.5))
      return error::max_age_jitter_out_of_range;
    return {};
  }

  void on_open(state& s, liveness_clock::time_point now) const noexcept {
    if (age.count() <= 0)
      return;
    std::uniform_real_distribution<double> factor{1.0 - jitter, 1.0 + jitter};
    const auto drawn = std::chrono::duration<double, std::milli>{static_cast<double>(age.count()) *
                                                                 factor(detail::random_engine())};
    s.leave_at = now + std::chrono::duration_cast<liveness_clock::duration>(drawn);
  }

  liveness_clock::time_point next_deadline(const state& s, const activity&) const noexcept {
    return s.draining() ? s.drain_deadline : s.leave_at;
  }

  verdict on_deadline(state& s, const activity&, liveness_clock::time_point now) const noexcept {
    if (s.draining()) {
      if (now >= s.drain_deadline)
        return verdict::close(close_reason::max_age, "still open when the grace after its maximum age ran out");
      return verdict::none();
    }
    if (now < s.leave_at)
      return verdict::none();
    s.drain_deadline = now + grace;
    return verdict::goaway(close_reason::max_age, "asked to leave at its maximum age");
  }
};

} // namespace tether

// tether::timer_wheel: many deadlines on one asio::steady_timer. Each owner embeds a wheel_node; a busy owner
// records its activity with wheel.now() (read once per tick) instead of moving its node, and when the node
// fires it either re-files itself for the remainder or acts. This is how connections run their liveness checks.
#include <tether/timer_wheel.hpp>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/core.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string_view>

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

// Expires after `limit` without activity.
struct session : tether::wheel_node {
  session(tether::timer_wheel& wheel, std::chrono::milliseconds limit)
      : wheel_node(&on_deadline), wheel(wheel), limit(limit), last_active(wheel.now()) {
    wheel.schedule(*this, last_active + limit);
  }
  ~session() { wheel.cancel(*this); }  // a scheduled node must not be destroyed

  void touch() { last_active = wheel.now(); }  // O(1) and no timer work at all

  static void on_deadline(tether::wheel_node& node) noexcept {
    auto& self = static_cast<session&>(node);
    const auto due = self.last_active + self.limit;
    if (self.wheel.now() < due) {
      self.wheel.schedule(self, due);  // active meanwhile: wait for the remainder
      ++self.refiled;
      return;
    }
    self.expired_at = steady::now();
  }

  tether::timer_wheel& wheel;
  std::chrono::milliseconds limit;
  steady::time_point last_active;
  std::optional<steady::time_point> expired_at;
  int refiled = 0;
};
} // namespace

int main() {
  asio::io_context io;
  tether::timer_wheel wheel{io, {.tick = 10ms, .slots = 256}};
  const auto started = steady::now();
  session quiet{wheel, 100ms};
  session busy{wheel, 100ms};
  check(wheel.size() == 2, "two nodes filed");

  // The busy session is touched every 20 ms for 200 ms, then left alone.
  asio::steady_timer pacer{io};
  int touches = 0;
  std::function<void()> keep_busy = [&] {
    busy.touch();
    if (++touches == 10)
      return;
    pacer.expires_after(20ms);
    pacer.async_wait([&](std::error_code ec) {
      if (!ec)
        keep_busy();
    });
  };
  keep_busy();

  io.run();  // returns once both have expired: an empty wheel stops its timer

  const auto after = [&](const session& s) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(*s.expired_at - started);
  };
  check(quiet.expired_at && busy.expired_at, "both expired");
  if (quiet.expired_at && busy.expired_at) {
    fmt::print("quiet expired after {} ms, busy after {} ms (re-filed {} times)\n", after(quiet).count(),
               after(busy).count(), busy.refiled);
    check(after(quiet) >= 100ms, "never early");
    check(after(busy) >= 280ms, "activity postponed the busy one");
    check(busy.refiled >= 1 && busy.refiled < touches, "re-filed per deadline, not per touch");
  }
  check(wheel.size() == 0, "wheel empty");
  return failures == 0 ? 0 : 1;
}

// Counters a server or client exposes for monitoring: opens, closes per reason, live connections and
// heartbeat round-trip times. Updated with relaxed atomics so one stats object can serve every thread
// of a listener; readers get a consistent-enough view for dashboards, not a transaction.
#pragma once

#include <tether/close_reason.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string_view>

namespace tether {

// The listener limits a refused connection was over.
// descriptors: refused for want of a descriptor (listener_options::out_of_descriptors = refuse).
enum class connection_limit : std::uint8_t { max_connections, max_per_address, descriptors };

constexpr std::string_view connection_limit_name(connection_limit limit) noexcept {
  switch (limit) {
  case connection_limit::max_connections:
    return "max_connections";
  case connection_limit::max_per_address:
    return "max_per_address";
  case connection_limit::descriptors:
    return "descriptors";
  }
  return "unknown";
}

class stats {
public:
  void record_open() noexcept {
    opened_.fetch_add(1, std::memory_order_relaxed);
    live_.fetch_add(1, std::memory_order_relaxed);
  }

  void record_close(close_reason reason) noexcept {
    closed_[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
    live_.fetch_sub(1, std::memory_order_relaxed);
  }

  // A connection refused before it reached user code (over a limit): counted, never live.
  void record_rejected(close_reason reason) noexcept {
    closed_[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  }

  // A connection refused over a limit: counted under limit_exceeded and under the limit it was over.
  void record_refused(connection_limit limit) noexcept {
    record_rejected(close_reason::limit_exceeded);
    refused_[static_cast<std::size_t>(limit)].fetch_add(1, std::memory_order_relaxed);
  }

  // Bytes that connections with a buffer_budget now buffer, changed by `delta`.
  void record_buffered(std::int64_t delta) noexcept { buffered_.fetch_add(delta, std::memory_order_relaxed); }

  void record_heartbeat_rtt(std::chrono::microseconds rtt) noexcept {
    heartbeats_.fetch_add(1, std::memory_order_relaxed);
    last_rtt_us_.store(rtt.count(), std::memory_order_relaxed);
    auto min = min_rtt_us_.load(std::memory_order_relaxed);
    while (rtt.count() < min && !min_rtt_us_.compare_exchange_weak(min, rtt.count(), std::memory_order_relaxed)) {
    }
  }

  std::uint64_t opened() const noexcept { return opened_.load(std::memory_order_relaxed); }
  std::int64_t live() const noexcept { return live_.load(std::memory_order_relaxed); }
  std::uint64_t closed(close_reason reason) const noexcept {
    return closed_[static_cast<std::size_t>(reason)].load(std::memory_order_relaxed);
  }
  std::uint64_t closed_total() const noexcept {
    std::uint64_t total = 0;
    for (const auto& count : closed_)
      total += count.load(std::memory_order_relaxed);
    return total;
  }
  std::uint64_t refused(connection_limit limit) const noexcept {
    return refused_[static_cast<std::size_t>(limit)].load(std::memory_order_relaxed);
  }
  // Partial frames and queued output of the connections under a buffer_budget (tether/buffer_budget.hpp);
  // zero where no budget is set, since only a budget counts them.
  std::uint64_t buffered_bytes() const noexcept {
    return static_cast<std::uint64_t>(buffered_.load(std::memory_order_relaxed));
  }
  std::uint64_t heartbeats() const noexcept { return heartbeats_.load(std::memory_order_relaxed); }
  std::chrono::microseconds last_heartbeat_rtt() const noexcept {
    return std::chrono::microseconds{last_rtt_us_.load(std::memory_order_relaxed)};
  }
  // Zero until the first heartbeat round trip.
  std::chrono::microseconds min_heartbeat_rtt() const noexcept {
    const auto min = min_rtt_us_.load(std::memory_order_relaxed);
    return std::chrono::microseconds{min == no_rtt_yet ? 0 : min};
  }

private:
  static constexpr std::int64_t no_rtt_yet = std::numeric_limits<std::int64_t>::max();
  std::atomic<std::uint64_t> opened_{0};
  std::atomic<std::int64_t> live_{0};
  std::array<std::atomic<std::uint64_t>, close_reason_count> closed_{};
  std::array<std::atomic<std::uint64_t>, 3> refused_{};
  std::atomic<std::int64_t> buffered_{0};
  std::atomic<std::uint64_t> heartbeats_{0};
  std::atomic<std::int64_t> last_rtt_us_{0};
  std::atomic<std::int64_t> min_rtt_us_{no_rtt_yet};
};

} // namespace tether

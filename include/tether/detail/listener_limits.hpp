// The connection limits a listener enforces across all of its shards: a global count and a count per remote
// address. Admission and release happen once per connection on the accept and close paths, never on the data
// path, so the per-address map sits behind a plain mutex.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/stats.hpp>

#include <asio/ip/address.hpp>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace tether::detail {

class connection_limits {
public:
  // Zero means unlimited.
  connection_limits(std::size_t max_total, std::size_t max_per_address) noexcept
      : max_total_(max_total), max_per_address_(max_per_address) {}

  connection_limits(const connection_limits&) = delete;
  connection_limits& operator=(const connection_limits&) = delete;

  // Reserves a place for one more connection from `address`, or says which limit that would pass. Two shards
  // admitting at once can never both take the last place: each sees the other's increment.
  std::optional<connection_limit> try_admit(const asio::ip::address& address) {
    const std::size_t before = admitted_.fetch_add(1, std::memory_order_relaxed);
    if (max_total_ != 0 && before >= max_total_) {
      admitted_.fetch_sub(1, std::memory_order_relaxed);
      return connection_limit::max_connections;
    }
    if (max_per_address_ == 0)
      return std::nullopt;
    const std::lock_guard lock{mutex_};
    std::size_t& from_address = per_address_[address];
    if (from_address >= max_per_address_) {
      admitted_.fetch_sub(1, std::memory_order_relaxed);
      if (from_address == 0)
        per_address_.erase(address);
      return connection_limit::max_per_address;
    }
    ++from_address;
    return std::nullopt;
  }

  // Gives back a place that try_admit() reserved.
  void release(const asio::ip::address& address) {
    admitted_.fetch_sub(1, std::memory_order_relaxed);
    if (max_per_address_ == 0)
      return;
    const std::lock_guard lock{mutex_};
    const auto found = per_address_.find(address);
    if (--found->second == 0)
      per_address_.erase(found);
  }

  std::size_t admitted() const noexcept { return admitted_.load(std::memory_order_relaxed); }

private:
  const std::size_t max_total_;
  const std::size_t max_per_address_;
  std::atomic<std::size_t> admitted_{0};
  std::mutex mutex_;
  std::unordered_map<asio::ip::address, std::size_t> per_address_;
};

} // namespace tether::detail

// tether::buffer_budget: a ceiling on the bytes that many connections buffer together: their partial input
// frames and their queued output. One connection is already bounded (the codec's frame limit, the write
// high-water mark), but thousands of hostile ones that each hoard a partial frame or never read could pin
// gigabytes; a budget makes the sum bounded too.
//
//   tether::buffer_budget budget{64 * 1024 * 1024};
//   context.budget = &budget;  // or listener_options::buffer_budget, connector_options::budget
//
// When a connection's buffers would grow past the budget, the connections holding the most are closed first
// (over_budget, abortively: what they buffered is discarded, and their discarded_bytes() counts the queued
// output), as long as each holds more than the growing connection would. Otherwise the growing connection is
// the one refused: a partial frame closes it with over_budget, a send() returns buffer_budget_exhausted (with
// overflow::refuse) or closes it with over_budget (with overflow::close). Control frames (pings, pongs, goaways,
// a handshake's reply) are never refused, so the budget can be passed by a few of them, and by one read (64 KiB)
// while that read is judged.
//
// What counts: the bytes of a connection's partial frame (or of frames read while its reading is paused) and of
// its encoded frames not yet written. A message counts until its handler returns, so a handler that echoes a
// large message holds it twice meanwhile. Not counted: a message held for async_receive, a codec's own state (TLS
// keeps OpenSSL's buffers), allocator slack and the kernel's socket buffers.
//
// Threading: a budget belongs to the one thread that runs its connections. A listener has one per shard, each
// with an even share of listener_options::buffer_budget.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/stats.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tether {

class buffer_budget;

namespace detail {

// One connection's share of a budget. It lives in the connection's buffers, which an idle connection does not
// have, so idle connections cost the budget nothing; leaving it returns every byte.
class budget_share {
public:
  // Closes the owner for the budget, from inside another connection's growth.
  using evict_function = void (*)(void* owner) noexcept;

  budget_share() = default;
  budget_share(const budget_share&) = delete;
  budget_share& operator=(const budget_share&) = delete;
  ~budget_share();

  std::size_t bytes() const noexcept { return bytes_; }
  void leave() noexcept;

private:
  friend class tether::buffer_budget;
  buffer_budget* budget_ = nullptr;
  void* owner_ = nullptr;
  evict_function evict_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t slot_ = 0;  // in the budget's holders
};

} // namespace detail

class buffer_budget {
public:
  // Where stats is given, its buffered_bytes() follows used().
  explicit buffer_budget(std::size_t limit, tether::stats* stats = nullptr) noexcept : limit_(limit), stats_(stats) {}
  buffer_budget(const buffer_budget&) = delete;
  buffer_budget& operator=(const buffer_budget&) = delete;
  ~buffer_budget() {
    while (!holders_.empty())
      holders_.back()->leave();
  }

  std::size_t limit() const noexcept { return limit_; }
  std::size_t used() const noexcept { return used_; }
  std::size_t peak() const noexcept { return peak_; }
  // Connections closed to make room for another, and growths refused (each of which closed the connection or
  // refused its send).
  std::uint64_t evictions() const noexcept { return evictions_; }
  std::uint64_t refusals() const noexcept { return refusals_; }

  // Whether `asking` may grow by `more` bytes, after closing the holders that hold more than `asking` would.
  bool make_room(const detail::budget_share& asking, std::size_t more) noexcept {
    const std::size_t asking_after = asking.bytes_ + more;
    while (used_ + more > limit_) {
      detail::budget_share* largest = nullptr;
      for (detail::budget_share* holder : holders_) {
        if (holder != &asking && (!largest || holder->bytes_ > largest->bytes_))
          largest = holder;
      }
      if (!largest || largest->bytes_ <= asking_after) {
        ++refusals_;
        return false;
      }
      ++evictions_;
      const std::size_t before = used_;
      largest->evict_(largest->owner_);
      // An owner that did not let go of its share would make this loop spin.
      if (used_ == before)
        largest->leave();
    }
    return true;
  }

  // Records what `share` holds now; a share holding nothing leaves the holders.
  void settle(detail::budget_share& share, std::size_t bytes, void* owner, detail::budget_share::evict_function evict) {
    if (share.budget_ != this) {
      if (bytes == 0)
        return;
      share.leave();
      share.budget_ = this;
      share.owner_ = owner;
      share.evict_ = evict;
      share.slot_ = holders_.size();
      holders_.push_back(&share);
    }
    record_use(used_ - share.bytes_ + bytes);
    share.bytes_ = bytes;
    peak_ = std::max(peak_, used_);
    if (bytes == 0)
      share.leave();
  }

private:
  friend class detail::budget_share;

  void record_use(std::size_t used) noexcept {
    if (stats_)
      stats_->record_buffered(static_cast<std::int64_t>(used) - static_cast<std::int64_t>(used_));
    used_ = used;
  }

  void remove(detail::budget_share& share) noexcept {
    record_use(used_ - share.bytes_);
    detail::budget_share* last = holders_.back();
    holders_[share.slot_] = last;
    last->slot_ = share.slot_;
    holders_.pop_back();
  }

  std::size_t limit_;
  tether::stats* stats_;
  std::size_t used_ = 0;
  std::size_t peak_ = 0;
  std::uint64_t evictions_ = 0;
  std::uint64_t refusals_ = 0;
  std::vector<detail::budget_share*> holders_;
};

namespace detail {

inline budget_share::~budget_share() { leave(); }

inline void budget_share::leave() noexcept {
  if (!budget_)
    return;
  budget_->remove(*this);
  budget_ = nullptr;
  bytes_ = 0;
}

} // namespace detail

} // namespace tether

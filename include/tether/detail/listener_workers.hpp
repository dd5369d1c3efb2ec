// The extra threads of a listener with threads > 1: one io_context per thread, each run by its own thread.
//
// The caller's io_context (shard 0's) is kept busy until every worker has run out of work and been joined
// there, so the caller's io.run() returning means the whole listener has wound down, and no thread ever joins
// itself.
#pragma once

#include <tether/detail/config.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

namespace tether::detail {

class listener_workers : public std::enable_shared_from_this<listener_workers> {
public:
  listener_workers(asio::io_context& home, std::size_t count) : home_(home), home_busy_(asio::make_work_guard(home)) {
    contexts_.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
      contexts_.push_back(std::make_unique<asio::io_context>(1));
  }

  listener_workers(const listener_workers&) = delete;
  listener_workers& operator=(const listener_workers&) = delete;

  ~listener_workers() { join(); }

  asio::io_context& context(std::size_t index) noexcept { return *contexts_[index]; }
  std::size_t size() const noexcept { return contexts_.size(); }

  // Each context must have work of its own (a work guard) or its thread returns at once.
  void launch() {
    threads_.reserve(contexts_.size());
    for (auto& context : contexts_) {
      threads_.emplace_back([this, &io = *context] {
        io.run();
        asio::post(home_, [weak = weak_from_this()] {
          if (auto self = weak.lock())
            self->on_worker_finished();
        });
      });
    }
  }

  // Blocks until every worker thread has ended; the caller must have made their contexts run out of work.
  void join() noexcept {
    for (auto& thread : threads_) {
      if (thread.joinable())
        thread.join();
    }
    home_busy_.reset();
  }

private:
  void on_worker_finished() {
    if (++finished_ == threads_.size())
      join();
  }

  asio::io_context& home_;
  asio::executor_work_guard<asio::io_context::executor_type> home_busy_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<std::thread> threads_;
  std::size_t finished_ = 0;  // counted on the home thread
};

} // namespace tether::detail

// A move-only, type-erased completion handler for async_send, so any completion token (callbacks, futures,
// coroutines) can wait in one queue. Completion is always posted, never run inside the call that finishes
// the write, as Asio requires of initiating functions.
#pragma once

#include <tether/detail/config.hpp>

#include <asio/associated_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <memory>
#include <system_error>
#include <utility>

namespace tether::detail {

class send_completion {
public:
  template <class Handler>
  send_completion(Handler handler, asio::io_context::executor_type fallback)
      : impl_(std::make_unique<holder<Handler>>(std::move(handler), fallback)) {}

  void complete(std::error_code ec) && { impl_->complete(ec); }

  template <class Handler>
  static void post(Handler handler, asio::io_context::executor_type fallback, std::error_code ec) {
    auto executor = asio::get_associated_executor(handler, fallback);
    asio::post(executor, [handler = std::move(handler), ec]() mutable { std::move(handler)(ec); });
  }

private:
  struct base {
    virtual ~base() = default;
    virtual void complete(std::error_code ec) = 0;
  };

  template <class Handler>
  struct holder final : base {
    holder(Handler h, asio::io_context::executor_type ex) : handler(std::move(h)), fallback(ex) {}
    void complete(std::error_code ec) override { post(std::move(handler), fallback, ec); }
    Handler handler;
    asio::io_context::executor_type fallback;
  };

  std::unique_ptr<base> impl_;
};

} // namespace tether::detail

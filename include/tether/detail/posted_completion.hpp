// A move-only, type-erased completion handler, so that any completion token (callbacks, futures, coroutines,
// deferred operations) can wait in one queue of a connection. Completion is always posted, never run inside the
// call that finishes the operation, as Asio requires of initiating functions.
#pragma once

#include <tether/detail/config.hpp>

#include <asio/associated_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <memory>
#include <tuple>
#include <utility>

namespace tether::detail {

template <class... Args>
class posted_completion {
public:
  template <class Handler>
  posted_completion(Handler handler, asio::io_context::executor_type fallback)
      : impl_(std::make_unique<holder<Handler>>(std::move(handler), fallback)) {}

  void complete(Args... args) && { impl_->complete(std::move(args)...); }

  template <class Handler>
  static void post(Handler handler, asio::io_context::executor_type fallback, Args... args) {
    auto executor = asio::get_associated_executor(handler, fallback);
    asio::post(executor, [handler = std::move(handler), arguments = std::make_tuple(std::move(args)...)]() mutable {
      std::apply(std::move(handler), std::move(arguments));
    });
  }

private:
  struct base {
    virtual ~base() = default;
    virtual void complete(Args... args) = 0;
  };

  template <class Handler>
  struct holder final : base {
    holder(Handler h, asio::io_context::executor_type ex) : handler(std::move(h)), fallback(ex) {}
    void complete(Args... args) override { post(std::move(handler), fallback, std::move(args)...); }
    Handler handler;
    asio::io_context::executor_type fallback;
  };

  std::unique_ptr<base> impl_;
};

} // namespace tether::detail

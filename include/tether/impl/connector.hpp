// The machinery of tether::connector (declared in tether/connector.hpp).
#pragma once

#include <tether/connector.hpp>
#include <tether/detail/platform.hpp>

#include <asio/error.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <utility>

namespace tether {

inline std::error_code connector_options::validate() const noexcept {
  if (connect_timeout.count() <= 0)
    return error::connect_timeout_not_positive;
  if (resume_check.count() < 0)
    return error::resume_check_negative;
  if (auto ec = retry.validate())
    return ec;
  return wheel.validate();
}

template <class Socket>
std::error_code bind_source_address(Socket& socket, const asio::ip::address& address) {
  if constexpr (detail::platform::bind_address_no_port_option != 0)
    (void)detail::set_int_option(socket.native_handle(), IPPROTO_IP, detail::platform::bind_address_no_port_option, 1);
  std::error_code ec;
  socket.bind(typename Socket::endpoint_type{address, 0}, ec);
  return ec;
}

template <class Codec, liveness_policy Liveness, class UserData>
connector<Codec, Liveness, UserData>::connector(asio::io_context& io, connector_options options, Codec codec, Liveness liveness,
                                      connection_options connection)
    : io_(io), options_(std::move(options)),
      context_{.codec = std::move(codec),
               .liveness = std::move(liveness),
               .options = connection,
               .on_close = [this](connection_type& closed, close_reason why) { on_connection_closed(closed, why); },
               .on_goaway = [this](connection_type& conn, std::string_view payload) { on_peer_goaway(conn, payload); },
               .stats = &stats_,
               .budget = options_.budget} {}

template <class Codec, liveness_policy Liveness, class UserData>
connector<Codec, Liveness, UserData>::~connector() {
  context_.on_close = nullptr;
  abandon_attempt();
  if (connection_)
    connection_->abort();
  for (const auto& closing : closing_)
    closing->abort();
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connector<Codec, Liveness, UserData>::validate() const noexcept {
  if (auto ec = options_.validate())
    return ec;
  if (auto ec = context_.options.validate())
    return ec;
  return context_.liveness.validate();
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connector<Codec, Liveness, UserData>::start() {
  if (running_)
    return {};
  if (auto ec = validate())
    return ec;
  if (!wheel_)
    wheel_.emplace(io_, options_.wheel);
  if (!schedule_)
    schedule_.emplace(options_.retry);
  running_ = true;
  schedule_attempt(std::chrono::milliseconds{0});
  if (options_.resume_check.count() > 0) {
    resume_watch_ = std::make_shared<resume_watch>(io_);
    resume_watch_->suspended = read_suspended_time();
    watch_for_resume();
  }
  return {};
}

template <class Codec, liveness_policy Liveness, class UserData>
std::chrono::nanoseconds connector<Codec, Liveness, UserData>::read_suspended_time() const {
  return options_.suspended_time ? options_.suspended_time() : time_suspended();
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::watch_for_resume() {
  resume_watch_->timer.expires_after(options_.resume_check);
  resume_watch_->timer.async_wait([this, weak = std::weak_ptr<resume_watch>(resume_watch_)](const std::error_code& ec) {
    const auto watch = weak.lock();
    if (ec || !watch || watch != resume_watch_)
      return;
    if (!running_) {  // a final failure or close ended it: nothing left to watch
      resume_watch_.reset();
      return;
    }
    const auto suspended = read_suspended_time();
    const auto slept = suspended - std::exchange(watch->suspended, suspended);
    watch_for_resume();
    auto threshold = std::chrono::nanoseconds{options_.resume_check};
    if constexpr (Liveness::template has<heartbeat>)
      threshold = context_.liveness.template get<heartbeat>().interval;
    if (slept > threshold)
      resumed(slept);
  });
}

// Whatever was scheduled before the suspension counted none of it: the heartbeat would still wait out its
// interval and a reconnect its backoff, on a network that may be another one by now.
template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::resumed(std::chrono::nanoseconds slept) {
  schedule_->reset();
  if (attempt_ && attempt_->waiting) {
    abandon_attempt();
    schedule_attempt(std::chrono::milliseconds{0});
  }
  if constexpr (Liveness::template has<heartbeat>) {
    if (const auto open = current())
      open->template update_liveness<heartbeat>([](heartbeat::state& s) { s.probe(); });
  }
  if (on_resume_)
    on_resume_(std::chrono::duration_cast<std::chrono::milliseconds>(slept));
}

template <class Codec, liveness_policy Liveness, class UserData>
template <class CompletionToken>
auto connector<Codec, Liveness, UserData>::async_connect(CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::error_code, std::shared_ptr<connection_type>)>(
      [this](auto handler) {
        const auto executor = io_.get_executor();
        if (auto open = current()) {
          connect_completion::post(std::move(handler), executor, std::error_code{}, std::move(open));
          return;
        }
        connect_waiters_.emplace_back(std::move(handler), executor);
        if (auto ec = start())
          complete_connect_waiters(ec);
      },
      token);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::complete_connect_waiters(std::error_code ec) {
  auto waiters = std::exchange(connect_waiters_, {});
  for (auto& waiter : waiters)
    std::move(waiter).complete(ec, ec ? nullptr : connection_);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::stop() {
  complete_connect_waiters(asio::error::operation_aborted);
  running_ = false;
  resume_watch_.reset();
  abandon_attempt();
  if (connection_) {
    closing_.push_back(std::exchange(connection_, nullptr));
    closing_.back()->close();
  }
}

// Runs the handler only while `attempt` is still the connector's current one; the connector owns it alone, so
// a live attempt also means a live connector.
template <class Codec, liveness_policy Liveness, class UserData>
template <class Handler>
auto connector<Codec, Liveness, UserData>::for_attempt(const attempt_ptr& attempt, Handler handler) {
  return [this, weak = std::weak_ptr<pending_attempt>(attempt), handler = std::move(handler)](auto&&... args) mutable {
    if (const auto alive = weak.lock(); alive && alive == attempt_)
      handler(*alive, std::forward<decltype(args)>(args)...);
  };
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::schedule_attempt(std::chrono::milliseconds delay) {
  attempt_ = std::make_shared<pending_attempt>(io_);
  attempt_->timer.expires_after(delay);
  attempt_->timer.async_wait(for_attempt(attempt_, [this](pending_attempt& attempt, const std::error_code& ec) {
    if (!ec)
      begin_attempt(attempt);
  }));
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::begin_attempt(pending_attempt& attempt) {
  ++attempts_;
  attempt.waiting = false;
  attempt.timer.expires_after(options_.connect_timeout);
  attempt.timer.async_wait(for_attempt(attempt_, [this](pending_attempt&, const std::error_code& ec) {
    // Failing here rather than in the cancelled operation's handler keeps the bound even while the resolver
    // waits on a getaddrinfo() call that cannot be interrupted.
    if (!ec)
      fail_attempt(asio::error::timed_out);
  }));
  attempt.resolver.async_resolve(
      options_.host, options_.service,
      for_attempt(attempt_, [this](pending_attempt& current, const std::error_code& ec,
                                   asio::ip::tcp::resolver::results_type endpoints) {
        if (ec) {
          fail_attempt(ec);
          return;
        }
        current.endpoints = std::move(endpoints);
        current.next_endpoint = current.endpoints.begin();
        connect_next_endpoint(current);
      }));
}

// Tries the resolved endpoints in order under the attempt's one deadline. asio::async_connect would reopen the
// socket for each endpoint and lose the source-address binding, so the loop is ours.
template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::connect_next_endpoint(pending_attempt& attempt) {
  while (attempt.next_endpoint != attempt.endpoints.end()) {
    const asio::ip::tcp::endpoint destination = attempt.next_endpoint->endpoint();
    ++attempt.next_endpoint;
    if (auto ec = prepare_socket(attempt.socket, destination)) {
      attempt.last_error = ec;
      continue;
    }
    attempt.socket.async_connect(destination, for_attempt(attempt_, [this](pending_attempt& current,
                                                                           const std::error_code& ec) {
      if (ec) {
        current.last_error = ec;
        connect_next_endpoint(current);
        return;
      }
      connected(current);
    }));
    return;
  }
  fail_attempt(attempt.last_error);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connector<Codec, Liveness, UserData>::prepare_socket(socket_type& socket, const asio::ip::tcp::endpoint& destination) {
  std::error_code ec;
  socket.close(ec);
  if (options_.bind_address && options_.bind_address->is_v4() != destination.address().is_v4())
    return asio::error::address_family_not_supported;
  socket.open(destination.protocol(), ec);
  if (!ec && options_.bind_address)
    ec = bind_source_address(socket, *options_.bind_address);
  return ec;
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::connected(pending_attempt& attempt) {
  const attempt_ptr finished = std::exchange(attempt_, nullptr);
  attempt.timer.cancel();
  attempts_ = 0;
  schedule_->reset();
  reconnect_hint_.reset();
  connection_ = connection_type::create(std::move(attempt.socket), context_, *wheel_);
  const auto connection = connection_;
  connection->start();
  if (connection->is_open() && on_connect_)
    on_connect_(*connection);
  if (connection->is_open())
    complete_connect_waiters({});
}

// The next attempt is scheduled before the handler runs, so the handler can still cancel it with stop().
template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::fail_attempt(std::error_code ec) {
  abandon_attempt();
  auto next_retry = std::chrono::milliseconds{0};
  if (options_.reconnect) {
    next_retry = schedule_->next_delay();
    schedule_attempt(next_retry);
  } else {
    running_ = false;
    complete_connect_waiters(ec);
  }
  if (on_connect_error_)
    on_connect_error_(ec, next_retry);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::abandon_attempt() {
  if (auto attempt = std::exchange(attempt_, nullptr)) {
    std::error_code ignored;
    attempt->timer.cancel();
    attempt->resolver.cancel();
    attempt->socket.close(ignored);
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::on_connection_closed(connection_type& closed, close_reason reason) {
  const bool was_current = connection_.get() == &closed;
  std::shared_ptr<connection_type> released;
  if (was_current) {
    released = std::exchange(connection_, nullptr);
  } else if (auto it = std::ranges::find_if(closing_, [&](const auto& closing) { return closing.get() == &closed; });
             it != closing_.end()) {
    released = std::move(*it);
    closing_.erase(it);
  }
  // The connection's contract does not promise another owner while its close is reported (a close from the
  // timer wheel runs outside any of its handlers), so the last reference is dropped only after finish() returns.
  if (released)
    asio::post(io_, [released = std::move(released)] {});
  if (was_current && running_) {
    if (options_.reconnect)
      schedule_attempt(reconnect_delay(closed));
    else
      running_ = false;
  }
  // Without another attempt coming, whoever still waits for a connection gets how the last one ended.
  if (!running_)
    complete_connect_waiters(make_error_code(reason));
  if (on_close_)
    on_close_(closed, reason);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::on_peer_goaway(connection_type& conn, std::string_view payload) {
  if (&conn == connection_.get())
    reconnect_hint_ = parse_reconnect_hint(payload);
  if (on_goaway_)
    on_goaway_(conn, payload);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::chrono::milliseconds connector<Codec, Liveness, UserData>::reconnect_delay(const connection_type& closed) {
  if (!closed.peer_going_away()) {
    reconnected_after_goaway_ = false;
    return schedule_->next_delay();
  }
  if (reconnected_after_goaway_)
    return schedule_->next_delay();
  reconnected_after_goaway_ = true;
  const auto hint = std::exchange(reconnect_hint_, std::nullopt);
  if (!hint)
    return std::chrono::milliseconds{0};
  const auto latest = std::min(hint->latest, options_.retry.maximum);
  return schedule_->draw_within(std::min(hint->earliest, latest), latest);
}

} // namespace tether

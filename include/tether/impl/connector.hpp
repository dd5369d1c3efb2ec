// The machinery of tether::connector (declared in tether/connector.hpp).
#pragma once

#include <tether/connector.hpp>
#include <tether/detail/platform.hpp>

#include <asio/error.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <utility>

namespace tether {

namespace detail {
// The reasons a path gives when it forgot a flow or went away; the others come from either peer's own decision.
constexpr bool ends_path(close_reason why) noexcept {
  switch (why) {
  case close_reason::peer_closed:
  case close_reason::peer_reset:
  case close_reason::keepalive_timeout:
  case close_reason::user_timeout:
  case close_reason::heartbeat_timeout:
  case close_reason::io_error:
    return true;
  default:
    return false;
  }
}
} // namespace detail

inline std::error_code connector_options::validate() const noexcept {
  if (connect_timeout.count() <= 0)
    return error::connect_timeout_not_positive;
  if (resume_check.count() < 0)
    return error::resume_check_negative;
  if (adaptive)
    if (auto ec = adaptive->validate())
      return ec;
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
               .budget = options_.budget} {
  if constexpr (Liveness::template has<heartbeat>) {
    if (options_.adaptive) {
      adaptive_ = std::make_unique<adaptive_learning>();
      auto probing = context_.liveness.template get<heartbeat>();
      probing.negotiate = false;  // an announcement is traffic: the probe must stay idle
      auto& probe_context = adaptive_->probe_context;
      probe_context.codec = context_.codec;
      probe_context.liveness = tether::liveness<heartbeat>{probing};
      probe_context.options = context_.options;
      probe_context.on_heartbeat = [this](probe_connection& answered, std::chrono::microseconds) {
        probe_answered(answered);
      };
      probe_context.on_close = [this](probe_connection& closed, close_reason why) { probe_closed(closed, why); };
    }
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
connector<Codec, Liveness, UserData>::~connector() {
  context_.on_close = nullptr;
  if (adaptive_) {
    adaptive_->probe_context.on_close = nullptr;
    adaptive_->probe_context.on_heartbeat = nullptr;
    abandon_probe();
    for (const auto& closing : adaptive_->closing)
      closing->abort();
  }
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
  if (options_.adaptive && !Liveness::template has<heartbeat>)
    return error::adaptive_heartbeat_needs_heartbeat;
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
  abandon_probe();
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
  if (adaptive_) {
    std::error_code ec;
    if (const auto destination = attempt.socket.remote_endpoint(ec); !ec)
      learn_for(destination);
  }
  connection_ = connection_type::create(std::move(attempt.socket), context_, *wheel_);
  const auto connection = connection_;
  if (adaptive_ && adaptive_->learner)
    apply_learned_interval(*connection);
  connection->start();
  if (connection->is_open() && on_connect_)
    on_connect_(*connection);
  if (connection->is_open())
    complete_connect_waiters({});
  if (connection->is_open())
    plan_probe(std::chrono::steady_clock::now());
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
  if (was_current && adaptive_) {
    abandon_probe();
    if (adaptive_->learner && !closed.peer_going_away() && detail::ends_path(reason))
      learned(adaptive_->learner->connection_lost(std::chrono::steady_clock::now()));
  }
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

// A new destination starts from what was proven for it before, if it is among the last ones remembered.
template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::learn_for(const asio::ip::tcp::endpoint& destination) {
  auto& learning = *adaptive_;
  if (learning.learner && learning.destination == destination)
    return;
  auto& remembered = learning.remembered;
  const auto forget = [&](const asio::ip::tcp::endpoint& endpoint) {
    std::erase_if(remembered, [&](const auto& entry) { return entry.first == endpoint; });
  };
  if (learning.learner) {
    forget(learning.destination);
    remembered.emplace_back(learning.destination, learning.learner->proven());
    if (remembered.size() > options_.remembered_destinations)
      remembered.erase(remembered.begin(), remembered.end() - static_cast<std::ptrdiff_t>(options_.remembered_destinations));
  }
  auto start_from = std::chrono::milliseconds{0};
  if (const auto it = std::ranges::find_if(remembered, [&](const auto& entry) { return entry.first == destination; });
      it != remembered.end())
    start_from = it->second;
  forget(destination);
  learning.learner.emplace(*options_.adaptive, std::chrono::steady_clock::now(), start_from);
  learning.destination = destination;
}

// Runs the handler only while `probe` is still the one in progress (the connector owns it alone).
template <class Codec, liveness_policy Liveness, class UserData>
template <class Handler>
auto connector<Codec, Liveness, UserData>::for_probe(const std::shared_ptr<interval_probe>& probe, Handler handler) {
  return [this, weak = std::weak_ptr<interval_probe>(probe), handler = std::move(handler)](auto&&... args) mutable {
    if (const auto alive = weak.lock(); alive && adaptive_ && alive == adaptive_->probe)
      handler(*alive, std::forward<decltype(args)>(args)...);
  };
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::plan_probe(std::chrono::steady_clock::time_point not_before) {
  if (!adaptive_ || !adaptive_->learner || adaptive_->probe || !current())
    return;
  const auto plan = adaptive_->learner->next_probe(std::chrono::steady_clock::now());
  auto probe = std::make_shared<interval_probe>(io_);
  probe->idle = plan.idle;
  adaptive_->probe = probe;
  probe->timer.expires_at(std::max(plan.start, not_before));
  probe->timer.async_wait(for_probe(probe, [this](interval_probe& planned, const std::error_code& ec) {
    if (!ec)
      begin_probe(planned);
  }));
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::begin_probe(interval_probe& probe) {
  adaptive_->learner->probe_started(std::chrono::steady_clock::now());
  const auto& destination = adaptive_->destination;
  std::error_code ec;
  probe.socket.open(destination.protocol(), ec);
  if (!ec && options_.bind_address)
    ec = bind_source_address(probe.socket, *options_.bind_address);
  const auto retry_later = [this] {
    abandon_probe();
    plan_probe(std::chrono::steady_clock::now() + options_.adaptive->min);
  };
  if (ec) {
    retry_later();
    return;
  }
  probe.timer.expires_after(options_.connect_timeout);
  probe.timer.async_wait(for_probe(adaptive_->probe, [retry_later](interval_probe&, const std::error_code& timer_ec) {
    if (!timer_ec)
      retry_later();
  }));
  probe.socket.async_connect(destination, for_probe(adaptive_->probe, [this, retry_later](interval_probe& connecting,
                                                                                          const std::error_code& connect_ec) {
    if (connect_ec)
      retry_later();
    else
      probe_connected(connecting);
  }));
}

// The probe's heartbeat pings after `idle` without received bytes; the timer at the end of the idle period asks
// for the ping at once in case the peer's bytes postponed it.
template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::probe_connected(interval_probe& probe) {
  probe.timer.cancel();
  probe.connected_at = std::chrono::steady_clock::now();
  probe.connection = probe_connection::create(std::move(probe.socket), adaptive_->probe_context, *wheel_);
  const auto idle = probe.idle;
  probe.connection->template update_liveness<heartbeat>([idle](heartbeat::state& s) { s.set_interval(idle); });
  const auto connection = probe.connection;
  connection->start();
  if (!connection->is_open())
    return;
  probe.timer.expires_at(probe.connected_at + idle);
  probe.timer.async_wait(for_probe(adaptive_->probe, [](interval_probe& idled, const std::error_code& ec) {
    if (!ec && idled.connection)
      idled.connection->template update_liveness<heartbeat>([](heartbeat::state& s) { s.probe(); });
  }));
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::probe_answered(probe_connection& answered) {
  auto& learning = *adaptive_;
  if (!learning.probe || learning.probe->connection.get() != &answered)
    return;
  const auto now = std::chrono::steady_clock::now();
  if (now - learning.probe->connected_at < learning.probe->idle)
    return;  // not the answer to the ping that ends the idle period
  const auto finished = std::exchange(learning.probe, nullptr);
  finished->timer.cancel();
  learning.closing.push_back(finished->connection);
  finished->connection->close();
  learned(learning.learner->probe_held(finished->idle, now));
  plan_probe(now);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::probe_closed(probe_connection& closed, close_reason why) {
  auto& learning = *adaptive_;
  // The connection's contract does not promise another owner while its close is reported: release it later.
  if (const auto it = std::ranges::find_if(learning.closing, [&](const auto& c) { return c.get() == &closed; });
      it != learning.closing.end()) {
    asio::post(io_, [released = std::move(*it)] {});
    learning.closing.erase(it);
    return;
  }
  if (!learning.probe || learning.probe->connection.get() != &closed)
    return;
  const auto now = std::chrono::steady_clock::now();
  const auto finished = std::exchange(learning.probe, nullptr);
  finished->timer.cancel();
  asio::post(io_, [released = std::move(finished->connection)] {});
  const auto lasted = std::chrono::duration_cast<std::chrono::milliseconds>(now - finished->connected_at);
  const auto min = options_.adaptive->min;
  if (detail::ends_path(why) && lasted >= min) {
    learned(learning.learner->probe_failed(std::min(finished->idle, lasted), now));
    plan_probe(now);
  } else {
    plan_probe(now + min);  // refused, or closed before idling long enough to say anything about the path
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::abandon_probe() {
  if (!adaptive_)
    return;
  if (const auto probe = std::exchange(adaptive_->probe, nullptr)) {
    std::error_code ignored;
    probe->timer.cancel();
    probe->socket.close(ignored);
    if (probe->connection) {
      probe->connection->abort();
      asio::post(io_, [released = std::move(probe->connection)] {});
    }
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::learned(std::optional<interval_change> change) {
  if (!change)
    return;
  if (const auto open = current())
    apply_learned_interval(*open);
  if (on_interval_change_)
    on_interval_change_(adaptive_->learner->interval(), *change);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connector<Codec, Liveness, UserData>::apply_learned_interval(connection_type& conn) {
  if constexpr (Liveness::template has<heartbeat>) {
    auto interval = adaptive_->learner->interval();
    const auto& strategy = context_.liveness.template get<heartbeat>();
    if (const auto& running = conn.template liveness_state<heartbeat>(); running.times_slowed_down() > 0)
      interval = std::max(interval, strategy.interval_of(running));  // the peer's request to slow down stands
    conn.template update_liveness<heartbeat>([interval](heartbeat::state& s) { s.set_interval(interval); });
  }
}

} // namespace tether

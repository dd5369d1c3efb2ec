// tether::connector<Codec, Liveness>: the client side. Resolves, connects within a deadline, runs the
// connection, and with reconnect on keeps one connection up through refusals, closes and server goaways.
//
//   tether::connector client{io, {.host = "db.internal", .service = "7000", .reconnect = true},
//                            tether::line_codec{}, tether::liveness{tether::heartbeat{.interval = 15s}}};
//   client.on_connect([](auto& conn) { conn.send("hello"); });
//   client.on_connect_error([](const std::error_code& ec, auto retry) { log(ec.message(), retry); });
//   client.on_message([](auto& conn, std::string_view line) { ... });
//   client.start();
//
// Reconnecting: a failed attempt is retried after a delay drawn from options.retry (exponential, full
// jitter); a connection that closes is replaced the same way, starting again from the first delay because the
// schedule resets whenever a connection comes up. A connection whose peer sent goaway stays up until either
// side closes it (answer on_goaway by finishing what is in flight and closing); the replacement is then
// attempted at once. Only one such immediate reconnect is made in a row: a server that sends every new
// connection away again meets the normal backoff rather than a reconnect loop.
//
// Threading: a connector and its connections live on the one thread that runs the io_context. Set the
// handlers before start(). Handlers must not throw and must not destroy the connector. Destroy the connector
// before its io_context.
#pragma once

#include <tether/backoff.hpp>
#include <tether/close_reason.hpp>
#include <tether/codec/codec.hpp>
#include <tether/connection.hpp>
#include <tether/detail/native_socket.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/stats.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace tether {

struct connector_options {
  std::string host = "127.0.0.1";  // name or address, resolved asynchronously before every attempt
  std::string service{};           // port number or service name
  // Source address of every connection; the port is still chosen by the kernel (see bind_source_address).
  // Destinations of the other address family are skipped.
  std::optional<asio::ip::address> bind_address{};
  // Bounds resolve and connect together; an attempt that runs over fails with asio::error::timed_out.
  std::chrono::milliseconds connect_timeout{5000};
  // Retry a failed attempt, and replace a connection that closed (for any reason but stop()).
  bool reconnect = false;
  backoff retry{};
  timer_wheel_config wheel{};
};

namespace detail {
#if defined(TETHER_PLATFORM_LINUX)
// IP_BIND_ADDRESS_NO_PORT (Linux 4.2), spelled out because older C libraries do not name it.
inline constexpr int ip_bind_address_no_port = 24;
#endif
} // namespace detail

// Binds an open socket to a source address and leaves the port to connect(). On Linux the kernel is told not
// to reserve a port at bind time (IP_BIND_ADDRESS_NO_PORT): a plain bind(address, 0) takes a port for all
// destinations, so one source address runs out after the ~28k ephemeral ports, whereas a port chosen at
// connect time only has to make the 4-tuple unique. A kernel that predates the option refuses it and the
// bind reserves the port as it does elsewhere, which still connects, with the lower ceiling.
template <class Socket>
std::error_code bind_source_address(Socket& socket, const asio::ip::address& address) {
#if defined(TETHER_PLATFORM_LINUX)
  (void)detail::set_int_option(socket.native_handle(), IPPROTO_IP, detail::ip_bind_address_no_port, 1);
#endif
  std::error_code ec;
  socket.bind(typename Socket::endpoint_type{address, 0}, ec);
  return ec;
}

template <codec Codec, class Liveness = liveness<>>
class connector {
public:
  using connection_type = connection<Codec, Liveness>;
  using socket_type = typename connection_type::socket_type;

  // Throws std::invalid_argument for a connect_timeout that is not positive, a retry policy that is not
  // backoff::valid(), or a wheel configuration the timer_wheel refuses.
  connector(asio::io_context& io, connector_options options, Codec codec = {}, Liveness liveness = {},
            connection_options connection = {})
      : io_(io), options_(std::move(options)),
        settings_{.codec = std::move(codec),
                  .liveness = std::move(liveness),
                  .options = connection,
                  .on_close = [this](connection_type& closed, close_reason why) { on_connection_closed(closed, why); },
                  .stats = &stats_},
        wheel_(io, options_.wheel), schedule_(options_.retry) {
    if (options_.connect_timeout.count() <= 0)
      throw std::invalid_argument("tether::connector needs a positive connect_timeout");
  }

  connector(const connector&) = delete;
  connector& operator=(const connector&) = delete;

  // Connections still open are reset, and no handler runs for them: the objects the handlers would touch are
  // being torn down. Use stop() first for an orderly close.
  ~connector() {
    settings_.on_close = nullptr;
    abandon_attempt();
    if (connection_)
      connection_->abort();
    for (const auto& closing : closing_)
      closing->abort();
  }

  // A connection is up and started; it can send from here.
  void on_connect(std::function<void(connection_type&)> handler) { on_connect_ = std::move(handler); }
  // An attempt failed. next_retry is the delay before the next attempt, zero when not reconnecting.
  void on_connect_error(std::function<void(const std::error_code&, std::chrono::milliseconds next_retry)> handler) {
    on_connect_error_ = std::move(handler);
  }
  void on_message(std::function<void(connection_type&, std::string_view)> handler) {
    settings_.on_message = std::move(handler);
  }
  void on_close(std::function<void(connection_type&, close_reason)> handler) { on_close_ = std::move(handler); }
  void on_heartbeat(std::function<void(connection_type&, std::chrono::microseconds)> handler) {
    settings_.on_heartbeat = std::move(handler);
  }
  // The peer announced it is going away; the connection stays up until either side closes it.
  void on_goaway(std::function<void(connection_type&)> handler) { settings_.on_goaway = std::move(handler); }

  // Begins the first attempt at once. Does nothing while attempting or connected.
  void start() {
    if (running_)
      return;
    running_ = true;
    schedule_attempt(std::chrono::milliseconds{0});
  }

  // No more attempts; a live connection closes gracefully (close_reason::local_close) and on_close still
  // reports it. start() may follow.
  void stop() {
    running_ = false;
    abandon_attempt();
    if (connection_) {
      closing_.push_back(std::exchange(connection_, nullptr));
      closing_.back()->close();
    }
  }

  // The open connection, or nullptr while attempting, closing or stopped.
  std::shared_ptr<connection_type> current() const {
    return connection_ && connection_->is_open() ? connection_ : nullptr;
  }

  // Attempts begun since the last connection came up, the one in progress included.
  std::size_t attempts() const noexcept { return attempts_; }

  const tether::stats& stats() const noexcept { return stats_; }

private:
  // One attempt's I/O objects, shared with its pending operations so that a late completion still finds them.
  struct pending_attempt {
    explicit pending_attempt(asio::io_context& io) : timer(io), resolver(io), socket(io) {}

    asio::steady_timer timer;  // the backoff delay, then the resolve and connect deadline
    asio::ip::tcp::resolver resolver;
    socket_type socket;
    asio::ip::tcp::resolver::results_type endpoints;
    asio::ip::tcp::resolver::results_type::const_iterator next_endpoint;
    std::error_code last_error = asio::error::host_not_found;  // what to report once no endpoint is left
  };
  using attempt_ptr = std::shared_ptr<pending_attempt>;

  // Asio completes a cancelled operation later, possibly after the connector is gone, so every completion
  // handler checks that it still exists before touching it. Handlers of an attempt that was abandoned or
  // timed out find that attempt_ has moved on and return.
  template <class Handler>
  auto while_alive(Handler handler) const {
    return [alive = std::weak_ptr<const bool>{lifetime_}, handler = std::move(handler)](auto&&... args) mutable {
      if (!alive.expired())
        handler(std::forward<decltype(args)>(args)...);
    };
  }

  void schedule_attempt(std::chrono::milliseconds delay) {
    auto attempt = std::make_shared<pending_attempt>(io_);
    attempt_ = attempt;
    attempt->timer.expires_after(delay);
    attempt->timer.async_wait(while_alive([this, attempt](const std::error_code& ec) {
      if (!ec && attempt_ == attempt)
        begin_attempt(attempt);
    }));
  }

  void begin_attempt(const attempt_ptr& attempt) {
    ++attempts_;
    attempt->timer.expires_after(options_.connect_timeout);
    attempt->timer.async_wait(while_alive([this, attempt](const std::error_code& ec) {
      // Failing here rather than in the cancelled operation's handler keeps the bound even while the resolver
      // waits on a getaddrinfo() call that cannot be interrupted.
      if (!ec && attempt_ == attempt)
        fail_attempt(asio::error::timed_out);
    }));
    attempt->resolver.async_resolve(
        options_.host, options_.service,
        while_alive([this, attempt](const std::error_code& ec, asio::ip::tcp::resolver::results_type endpoints) {
          if (attempt_ != attempt)
            return;
          if (ec) {
            fail_attempt(ec);
            return;
          }
          attempt->endpoints = std::move(endpoints);
          attempt->next_endpoint = attempt->endpoints.begin();
          connect_next_endpoint(attempt);
        }));
  }

  // Tries the resolved endpoints in order under the attempt's one deadline. asio::async_connect would reopen
  // the socket for each endpoint and lose the source-address binding, so the loop is ours.
  void connect_next_endpoint(const attempt_ptr& attempt) {
    while (attempt->next_endpoint != attempt->endpoints.end()) {
      const asio::ip::tcp::endpoint destination = attempt->next_endpoint->endpoint();
      ++attempt->next_endpoint;
      if (auto ec = prepare_socket(attempt->socket, destination)) {
        attempt->last_error = ec;
        continue;
      }
      attempt->socket.async_connect(destination, while_alive([this, attempt](const std::error_code& ec) {
        if (attempt_ != attempt)
          return;
        if (ec) {
          attempt->last_error = ec;
          connect_next_endpoint(attempt);
          return;
        }
        connected(attempt);
      }));
      return;
    }
    fail_attempt(attempt->last_error);
  }

  std::error_code prepare_socket(socket_type& socket, const asio::ip::tcp::endpoint& destination) {
    std::error_code ec;
    socket.close(ec);
    if (options_.bind_address && options_.bind_address->is_v4() != destination.address().is_v4())
      return asio::error::address_family_not_supported;
    socket.open(destination.protocol(), ec);
    if (!ec && options_.bind_address)
      ec = bind_source_address(socket, *options_.bind_address);
    return ec;
  }

  void connected(const attempt_ptr& attempt) {
    attempt_.reset();
    attempt->timer.cancel();
    attempts_ = 0;
    schedule_.reset();
    connection_ = connection_type::create(std::move(attempt->socket), settings_, wheel_);
    const auto connection = connection_;
    connection->start();
    if (connection->is_open() && on_connect_)
      on_connect_(*connection);
  }

  // The next attempt is scheduled before the handler runs, so the handler can still cancel it with stop().
  void fail_attempt(std::error_code ec) {
    abandon_attempt();
    auto next_retry = std::chrono::milliseconds{0};
    if (options_.reconnect) {
      next_retry = schedule_.next_delay();
      schedule_attempt(next_retry);
    } else {
      running_ = false;
    }
    if (on_connect_error_)
      on_connect_error_(ec, next_retry);
  }

  void abandon_attempt() {
    if (auto attempt = std::exchange(attempt_, nullptr)) {
      std::error_code ignored;
      attempt->timer.cancel();
      attempt->resolver.cancel();
      attempt->socket.close(ignored);
    }
  }

  void on_connection_closed(connection_type& closed, close_reason reason) {
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
    if (on_close_)
      on_close_(closed, reason);
  }

  std::chrono::milliseconds reconnect_delay(const connection_type& closed) {
    if (!closed.peer_going_away()) {
      reconnected_after_goaway_ = false;
      return schedule_.next_delay();
    }
    if (reconnected_after_goaway_)
      return schedule_.next_delay();
    reconnected_after_goaway_ = true;
    return std::chrono::milliseconds{0};
  }

  std::shared_ptr<const bool> lifetime_ = std::make_shared<const bool>(true);
  asio::io_context& io_;
  connector_options options_;
  tether::stats stats_;
  typename connection_type::settings_type settings_;
  timer_wheel wheel_;
  backoff_schedule<> schedule_;
  attempt_ptr attempt_;
  std::shared_ptr<connection_type> connection_;
  std::vector<std::shared_ptr<connection_type>> closing_;  // closed by stop(), finishing their graceful close
  std::function<void(connection_type&)> on_connect_;
  std::function<void(const std::error_code&, std::chrono::milliseconds)> on_connect_error_;
  std::function<void(connection_type&, close_reason)> on_close_;
  std::size_t attempts_ = 0;
  bool running_ = false;  // start() was called and neither stop() nor a final failure has ended it
  bool reconnected_after_goaway_ = false;
};

} // namespace tether

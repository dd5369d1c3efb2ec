// tether::connector<Codec, Liveness, UserData>: the client side. Resolves, connects within a deadline, runs the
// connection, and with reconnect on keeps one connection up through refusals, closes and server goaways.
//
//   tether::connector client{io, {.host = "db.internal", .service = "7000", .reconnect = true},
//                            tether::line_codec{}, tether::liveness{tether::heartbeat{.interval = 15s}}};
//   client.on_connect([](auto& conn) { conn.send("hello"); });
//   client.on_connect_error([](const std::error_code& ec, auto retry) { log(ec.message(), retry); });
//   client.on_message([](auto& conn, std::string_view line) { ... });
//   if (auto ec = client.start()) { ... }  // a field of the options out of range, named by the message
//
// Reconnecting: a failed attempt is retried after a delay drawn from options.retry (exponential, full
// jitter); a connection that closes is replaced the same way, starting again from the first delay because the
// schedule resets whenever a connection comes up. A connection whose peer sent goaway stays up until either
// side closes it (answer on_goaway by finishing what is in flight and closing). The replacement is then
// attempted after a delay drawn uniformly from the goaway's reconnect hint (tether/reconnect_hint.hpp; its
// latest bound capped at retry.maximum), which listener::stop() sends so that the clients of a restarting server
// come back spread out; without a hint it is attempted at once. Only one goaway in a row is followed that way:
// a server that sends every new connection away again meets the normal backoff rather than a reconnect loop.
//
// Adaptive heartbeat (options.adaptive, with a heartbeat in the liveness policy): the connector learns the
// longest idle period the path to the connected destination keeps (tether/idle_interval_learner.hpp) on probe
// connections of its own to that same address, and runs the connection's heartbeat with the learned interval.
// A probe is a connection with only a heartbeat, without the policy's keepalive (whose packets would keep the
// path open for it): it idles for the candidate period, pings, and holds if the pong comes. It fails if it is
// reset, closed or left unanswered after idling at least `min`; closed or refused earlier (a server at its
// connection limit, a failed handshake), it teaches nothing. One probe at a time, only while connected. A peer
// that sends data or pings the probe keeps the path busy as it keeps the connection's: the learner then proves
// what this pair of peers needs, not the path alone. The connection lost to one of the reasons a path gives
// (peer_closed, peer_reset, a timeout, io_error) without a goaway counts as a failure of the interval it ran
// with. What was learned is kept for the last `remembered_destinations` addresses, so a reconnect starts from it.
// The learned interval replaces the heartbeat's configured (or negotiated) one on the connection, except that a
// peer's too_many_pings request stays a floor.
//
// Threading: a connector and its connections live on the one thread that runs the io_context. Set the
// handlers before start(). Handlers must not throw and must not destroy the connector. Destroy the connector
// before its io_context.
#pragma once

#include <tether/backoff.hpp>
#include <tether/buffer_budget.hpp>
#include <tether/close_reason.hpp>
#include <tether/codec/codec.hpp>
#include <tether/connection.hpp>
#include <tether/detail/native_socket.hpp>
#include <tether/detail/posted_completion.hpp>
#include <tether/idle_interval_learner.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/reconnect_hint.hpp>
#include <tether/stats.hpp>
#include <tether/suspended_time.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/async_result.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
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
  timer_wheel_options wheel{};
  // Where set, the connection's partial frames and queued output count against this budget, which may be shared
  // by every connector of the thread that runs it (tether/buffer_budget.hpp). Not owned: it must outlive the
  // connector.
  buffer_budget* budget = nullptr;
  // Sleep and resume (a laptop's lid, a phone's radio): steady_clock, which every deadline runs on, stops (on
  // Linux) while the machine is suspended, so after a resume the heartbeat would wait out a whole interval on a
  // path that may have died meanwhile. Every resume_check the connector looks at how long the machine has been
  // suspended (tether/suspended_time.hpp). After a suspension longer than the heartbeat's interval (without a
  // heartbeat, longer than resume_check) the connection pings at once (heartbeat::state::probe), a reconnect waiting out
  // its backoff is attempted at once, the backoff starts again from its first delay, and on_resume reports it.
  // Costs one timer wake-up per resume_check. Zero: off.
  std::chrono::milliseconds resume_check{0};
  // Where the time suspended is read: empty for tether::time_suspended(). A virtual machine paused by its host,
  // which the guest's clocks do not show, can supply its own measure here.
  std::function<std::chrono::nanoseconds()> suspended_time{};
  // Learn the heartbeat's interval from the path (above). Needs a heartbeat in the liveness policy.
  std::optional<adaptive_heartbeat> adaptive{};
  std::size_t remembered_destinations = 8;

  std::error_code validate() const noexcept;
};

// Binds an open socket to a source address and leaves the port to connect(). On Linux the kernel is told not
// to reserve a port at bind time (IP_BIND_ADDRESS_NO_PORT): a plain bind(address, 0) takes a port for all
// destinations, so one source address runs out after the ~28k ephemeral ports, whereas a port chosen at
// connect time only has to make the 4-tuple unique. A kernel that predates the option refuses it and the
// bind reserves the port as it does elsewhere, which still connects, with the lower ceiling.
template <class Socket>
std::error_code bind_source_address(Socket& socket, const asio::ip::address& address);

template <class Codec, liveness_policy Liveness = liveness<>, class UserData = no_user_data>
class connector {
public:
  using connection_type = connection<Codec, Liveness, UserData>;
  using socket_type = typename connection_type::socket_type;

  connector(asio::io_context& io, connector_options options, Codec codec = {}, Liveness liveness = {},
            connection_options connection = {});
  connector(const connector&) = delete;
  connector& operator=(const connector&) = delete;

  // Connections still open are reset, and no handler runs for them: the objects the handlers would touch are
  // being torn down. Use stop() first for an orderly close.
  ~connector();

  // A connection is up and started; it can send from here.
  void on_connect(std::function<void(connection_type&)> handler) { on_connect_ = std::move(handler); }
  // An attempt failed. next_retry is the delay before the next attempt, zero when not reconnecting.
  void on_connect_error(std::function<void(const std::error_code&, std::chrono::milliseconds next_retry)> handler) {
    on_connect_error_ = std::move(handler);
  }
  void on_message(std::function<void(connection_type&, std::string_view)> handler) {
    context_.on_message = std::move(handler);
  }
  void on_close(std::function<void(connection_type&, close_reason)> handler) { on_close_ = std::move(handler); }
  void on_heartbeat(std::function<void(connection_type&, std::chrono::microseconds)> handler) {
    context_.on_heartbeat = std::move(handler);
  }
  // The peer announced it is going away, with the goaway's payload; the connection stays up until either side
  // closes it.
  void on_goaway(std::function<void(connection_type&, std::string_view payload)> handler) {
    on_goaway_ = std::move(handler);
  }
  // The machine was suspended for `slept` (see connector_options::resume_check); called after the connector
  // acted on it, so a strategy of your own can be probed here too.
  void on_resume(std::function<void(std::chrono::milliseconds slept)> handler) { on_resume_ = std::move(handler); }
  // The adaptive heartbeat moved the connection's interval (see connector_options::adaptive).
  void on_interval_change(std::function<void(std::chrono::milliseconds interval, interval_change why)> handler) {
    on_interval_change_ = std::move(handler);
  }

  // Validates the options (the connector's, the connections', the wheel's, the backoff's and each strategy's:
  // the error names the field) and begins the first attempt at once. Does nothing while attempting or
  // connected.
  std::error_code start();

  // Starts connecting (as start() does, when not started yet) and completes once a connection is up, with
  // Asio's completion-token convention and the signature void(std::error_code, std::shared_ptr<connection_type>):
  // with the open connection (at once if one is up); with start()'s validation error; with the attempt's error
  // when an attempt fails and reconnect is off; with asio::error::operation_aborted when stop() comes first. With
  // reconnect on it waits through failed attempts, which on_connect_error still reports. Several may wait.
  template <class CompletionToken>
  auto async_connect(CompletionToken&& token);

  // No more attempts; a live connection closes gracefully (close_reason::local_close) and on_close still
  // reports it. start() may follow.
  void stop();

  // The open connection, or nullptr while attempting, closing or stopped.
  std::shared_ptr<connection_type> current() const {
    return connection_ && connection_->is_open() ? connection_ : nullptr;
  }

  // Attempts begun since the last connection came up, the one in progress included.
  std::size_t attempts() const noexcept { return attempts_; }

  const tether::stats& stats() const noexcept { return stats_; }

  // The adaptive heartbeat's search for the current destination (its interval, proof, probes), or nullptr
  // without options.adaptive or before the first connection.
  const idle_interval_learner* interval_learner() const noexcept {
    return adaptive_ && adaptive_->learner ? &*adaptive_->learner : nullptr;
  }

private:
  // The adaptive heartbeat's probes run on connections of their own type: a heartbeat alone, so that no
  // keepalive of the policy keeps the probed path open.
  using probe_connection = connection<Codec, liveness<heartbeat>>;
  struct interval_probe {
    explicit interval_probe(asio::io_context& io) : timer(io), socket(io) {}
    asio::steady_timer timer;  // the plan's start, then the connect deadline, then the end of the idle period
    socket_type socket;
    std::shared_ptr<probe_connection> connection;
    std::chrono::milliseconds idle{0};
    std::chrono::steady_clock::time_point connected_at{};
  };
  struct adaptive_learning {
    std::optional<idle_interval_learner> learner;
    asio::ip::tcp::endpoint destination;
    std::vector<std::pair<asio::ip::tcp::endpoint, std::chrono::milliseconds>> remembered;  // proofs, newest last
    typename probe_connection::context_type probe_context;
    std::shared_ptr<interval_probe> probe;                    // the one in progress
    std::vector<std::shared_ptr<probe_connection>> closing;  // answered, finishing their graceful close
  };

  // One attempt's I/O objects. The connector owns the current one alone; its pending operations hold a
  // weak_ptr, so a completion after the attempt was abandoned (or the connector destroyed) touches nothing.
  struct pending_attempt {
    explicit pending_attempt(asio::io_context& io) : timer(io), resolver(io), socket(io) {}

    asio::steady_timer timer;  // the backoff delay, then the resolve and connect deadline
    asio::ip::tcp::resolver resolver;
    socket_type socket;
    asio::ip::tcp::resolver::results_type endpoints;
    asio::ip::tcp::resolver::results_type::const_iterator next_endpoint;
    std::error_code last_error = asio::error::host_not_found;  // what to report once no endpoint is left
    bool waiting = true;  // still waiting out its delay: nothing resolved or connected yet
  };
  // Owned by the connector alone and reached through a weak_ptr, as an attempt is, so a check already queued
  // when the connector goes away touches nothing.
  struct resume_watch {
    explicit resume_watch(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
    std::chrono::nanoseconds suspended{0};  // at the last look
  };
  using attempt_ptr = std::shared_ptr<pending_attempt>;
  using connect_completion = detail::posted_completion<std::error_code, std::shared_ptr<connection_type>>;
  void complete_connect_waiters(std::error_code ec);

  template <class Handler>
  auto for_attempt(const attempt_ptr& attempt, Handler handler);

  std::error_code validate() const noexcept;
  void schedule_attempt(std::chrono::milliseconds delay);
  void begin_attempt(pending_attempt& attempt);
  void connect_next_endpoint(pending_attempt& attempt);
  std::error_code prepare_socket(socket_type& socket, const asio::ip::tcp::endpoint& destination);
  void connected(pending_attempt& attempt);
  void fail_attempt(std::error_code ec);
  void abandon_attempt();
  void on_connection_closed(connection_type& closed, close_reason reason);
  void on_peer_goaway(connection_type& conn, std::string_view payload);
  std::chrono::milliseconds reconnect_delay(const connection_type& closed);
  std::chrono::nanoseconds read_suspended_time() const;
  void watch_for_resume();
  void resumed(std::chrono::nanoseconds slept);
  void learn_for(const asio::ip::tcp::endpoint& destination);
  void plan_probe(std::chrono::steady_clock::time_point not_before);
  void begin_probe(interval_probe& probe);
  void probe_connected(interval_probe& probe);
  void probe_answered(probe_connection& answered);
  void probe_closed(probe_connection& closed, close_reason why);
  void abandon_probe();
  void learned(std::optional<interval_change> change);
  void apply_learned_interval(connection_type& conn);
  template <class Handler>
  auto for_probe(const std::shared_ptr<interval_probe>& probe, Handler handler);

  asio::io_context& io_;
  connector_options options_;
  tether::stats stats_;
  typename connection_type::context_type context_;
  std::optional<timer_wheel> wheel_;          // made by start(), once the options are known to work
  std::optional<backoff_schedule<>> schedule_;
  attempt_ptr attempt_;
  std::shared_ptr<connection_type> connection_;
  std::vector<std::shared_ptr<connection_type>> closing_;  // closed by stop(), finishing their graceful close
  std::vector<connect_completion> connect_waiters_;
  std::function<void(connection_type&)> on_connect_;
  std::function<void(const std::error_code&, std::chrono::milliseconds)> on_connect_error_;
  std::function<void(connection_type&, close_reason)> on_close_;
  std::function<void(connection_type&, std::string_view)> on_goaway_;
  std::function<void(std::chrono::milliseconds)> on_resume_;
  std::function<void(std::chrono::milliseconds, interval_change)> on_interval_change_;
  std::unique_ptr<adaptive_learning> adaptive_;  // with options.adaptive
  std::shared_ptr<resume_watch> resume_watch_;  // while running with resume_check on
  std::optional<reconnect_hint> reconnect_hint_;  // from the current connection's goaway
  std::size_t attempts_ = 0;
  bool running_ = false;  // start() was called and neither stop() nor a final failure has ended it
  bool reconnected_after_goaway_ = false;
};

} // namespace tether

#include <tether/impl/connector.hpp>

// tether::listener<Codec, Liveness, UserData>: accepts TCP connections and serves each one as a tether::connection.
//
//   tether::listener server{io, {.port = 7000, .max_connections = 50'000, .max_per_address = 64},
//                           tether::line_codec{}, liveness};
//   server.on_message([](auto& conn, std::string_view line) { conn.send(line); });
//   if (auto ec = server.start()) {
//     fmt::print("cannot listen: {}\n", ec.message());
//     return 1;
//   }
//   asio::signal_set signals{io, SIGINT, SIGTERM};
//   signals.async_wait([&](auto, int) { server.stop(std::chrono::seconds{10}); });
//   io.run();  // returns once every connection has closed and every worker thread has been joined
//
// Shards. Shard 0 serves on the caller's io_context. With shards = N the listener runs N - 1 more shards, each on
// a thread of its own with its own io_context and timer wheel. With reuse_port, where the platform balances
// connections over sockets sharing a port (Linux SO_REUSEPORT, FreeBSD SO_REUSEPORT_LB), every shard accepts on an
// acceptor of its own; elsewhere shard 0 accepts alone and deals connections out round-robin over all shards. A
// connection stays on its shard for life and its handlers run on that shard's thread, so handlers of different
// shards run concurrently.
//
// Limits. A connection over max_connections or max_per_address is closed at once (RST or FIN, as configured),
// counted in stats() under limit_exceeded and under the limit (stats().refused(limit)), and reported to
// on_reject with a detail naming the limit; it never reaches the other handlers. Behind a balancer that sends
// PROXY protocol headers (options.proxy_protocol), the per-address limit counts the clients' own addresses.
//
// Running out of descriptors (EMFILE, ENFILE) or memory makes a shard pause accepting, for accept_retry_initial
// doubling up to accept_retry_max, instead of spinning on a connection the kernel keeps queued. Its connections
// are served meanwhile, and accepting resumes by itself.
//
// Threading: set the handlers and call start() before io.run() or from the io_context's thread. stop(),
// stats(), connections() and local_endpoint() may be called from any thread once start() has returned.
#pragma once

#include <tether/close_reason.hpp>
#include <tether/codec/codec.hpp>
#include <tether/connection.hpp>
#include <tether/detail/listener_shard.hpp>
#include <tether/detail/listener_workers.hpp>
#include <tether/handover.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/proxy_protocol.hpp>
#include <tether/reconnect_hint.hpp>
#include <tether/socket_options.hpp>
#include <tether/stats.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/address_v4.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/socket_base.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <system_error>
#include <vector>

namespace tether {

struct listener_options {
  // Loopback unless told otherwise: a server is reachable from other machines only once it asks to be.
  asio::ip::address address = asio::ip::address_v4::loopback();
  std::uint16_t port = 0;  // 0 picks a free port; local_endpoint() tells which
  int backlog = asio::socket_base::max_listen_connections;
  // Rebind at once while old connections sit in TIME_WAIT (SO_EXCLUSIVEADDRUSE on Windows).
  bool reuse_address = true;
  // SO_REUSEPORT on every acceptor: with shards > 1 each shard then accepts for itself. Where the platform does
  // not balance a shared port, shards > 1 falls back to shard 0 dealing connections out, and shards = 1 makes
  // start() report the refusal. Another process binding the same port with reuse_port shares its connections.
  bool reuse_port = false;
  std::size_t shards = 1;  // counts shard 0, which runs on the caller's io_context; each other has a thread
  // How new connections are spread over the shards. by_kernel: with reuse_port, the kernel's hash of each
  // connection's addresses picks the shard (every shard accepts); without it shard 0 deals them out in turn.
  // least_loaded: shard 0 accepts alone and hands each connection to the shard serving the fewest, which evens
  // out shards whose connections closed unevenly (reuse_port still lets another process share the port).
  enum class balancing : std::uint8_t { by_kernel, least_loaded } balance = balancing::by_kernel;
  std::size_t max_connections = 0;  // over all shards; 0 = unlimited
  std::size_t max_per_address = 0;  // per remote IP address; 0 = unlimited
  // How a refused connection is closed: abortive sends RST (no TIME_WAIT here), graceful sends FIN.
  enum class rejection : std::uint8_t { abortive, graceful } reject = rejection::abortive;
  timer_wheel_options wheel{};  // for every shard's wheel
  // How long a shard pauses accepting after running out of descriptors or memory (or another error that may
  // persist), doubling per failure and reset by a successful accept: the values Go's net/http uses.
  std::chrono::milliseconds accept_retry_initial{5};
  std::chrono::milliseconds accept_retry_max{1000};
  // What a shard does when accepting fails for want of descriptors (EMFILE, ENFILE). pause: it pauses as above,
  // and the queued clients wait, their connects hanging, until descriptors are free again. refuse: each shard
  // keeps one descriptor in reserve and, out of descriptors, frees it to accept the queued connections and close
  // each at once (RST or FIN, as `reject` says), so that their clients learn at once and may go elsewhere;
  // counted under limit_exceeded and stats().refused(connection_limit::descriptors), reported to on_reject as
  // "out of descriptors". POSIX only (start() reports descriptor_reserve_not_supported on Windows).
  enum class descriptor_shortage : std::uint8_t { pause, refuse } out_of_descriptors = descriptor_shortage::pause;
  // Off (no trusted source) by default: which balancers must begin their connections with a PROXY protocol
  // header, how long they have, and how long it may be (tether/proxy_protocol.hpp).
  proxy_protocol_options proxy_protocol{};
  // Off (empty path) by default: the Unix socket over which this listener takes its listening sockets from the
  // process serving before it, and hands them to the one after (tether/handover.hpp).
  handover_options handover{};
  // Bytes of partial frames and queued output that all connections may buffer together; 0 = unlimited. Each
  // shard keeps an even share, and closes the connections holding the most first (over_budget) when its share
  // is used up (tether/buffer_budget.hpp). stats().buffered_bytes() shows the use.
  std::size_t buffer_budget = 0;

  std::error_code validate() const noexcept;
};

template <class Codec, liveness_policy Liveness = liveness<>, class UserData = no_user_data>
class listener {
  using shard_type = detail::listener_shard<Codec, Liveness, UserData>;
  using acceptor_type = typename shard_type::acceptor_type;

public:
  using connection_type = connection<Codec, Liveness, UserData>;

  listener(asio::io_context& io, listener_options options, Codec codec = {}, Liveness liveness = {},
           connection_options connection = {});
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  // Joins the worker threads and aborts whatever is still open (on_close reports shutdown). Destroy the listener
  // on its io_context's thread or after io.run() has returned, and before the io_context.
  ~listener();

  // Handlers, set before start(). They run on the thread of the connection's shard and must not throw.
  void on_message(std::function<void(connection_type&, std::string_view)> handler);
  // Every connection that started reaches on_close exactly once, with its reason.
  void on_close(std::function<void(connection_type&, close_reason)> handler);
  // Once the connection has started and before its first message. A connection that closes while starting
  // (peer_reset: reset right after the accept; io_error: the platform refused a liveness option) reaches
  // on_close without on_accept.
  void on_accept(std::function<void(connection_type&)> handler);
  void on_heartbeat(std::function<void(connection_type&, std::chrono::microseconds)> handler);
  // A connection closed before it became one: over a limit (limit_exceeded, with the detail "over
  // max_connections" or "over max_per_address"), arriving while the listener stops (shutdown), one a shard's
  // io_context could not take over (io_error), or a trusted balancer's without a valid PROXY protocol header
  // (protocol_error, handshake_failed on its timeout, peer_closed, peer_reset; the endpoint is the balancer's).
  // It reaches no other handler. The detail is a string literal.
  void on_reject(std::function<void(const asio::ip::tcp::endpoint&, close_reason, std::string_view detail)> handler);
  // With options.handover: a successor has taken the listening sockets and accepts on them; this listener has
  // stopped accepting and now stops as stop(handover.drain) does. Runs on the io_context's thread.
  void on_handed_over(std::function<void()> handler);

  // Validates every option (the listener's, the connections', the wheel's and each strategy's: the error names
  // the field), then opens, configures, binds and listens on every acceptor and starts accepting and the worker
  // threads. Failures come back as error codes (address_in_use, a refused socket option, a field out of range)
  // and leave the listener as it was, so start() may be tried again. With options.handover it first asks the
  // process at the path for its listening sockets, waiting up to handover.timeout, and accepts on those instead
  // of binding (handover_mismatch when they are bound elsewhere or their count fits no layout of this
  // listener's shards; handover_malformed when the answer is not a tether listener's), then serves the path.
  std::error_code start();

  // Whether start() took its listening sockets over from a predecessor rather than binding them.
  bool took_over() const noexcept { return took_over_; }

  // The address and port the listener is bound to, once start() succeeded.
  asio::ip::tcp::endpoint local_endpoint() const { return local_endpoint_; }

  // Shard 0's listening socket, for reading its options back (tether::get_option) once start() succeeded.
  // Accepted connections start from its socket options; sibling shards' acceptors are configured alike.
  // Before start() there is no socket yet: detail::invalid_socket (-1, INVALID_SOCKET on Windows).
  native_socket native_handle();

  // Stops accepting at once and asks every connection to leave: a goaway where the codec carries control frames
  // (the connection keeps serving until the peer closes), a graceful close otherwise. The goaway carries the
  // reconnect hint "within deadline / 2" (tether/reconnect_hint.hpp), so that reconnecting clients (tether's
  // connector among them) come back spread over that window rather than at once; a WebSocket close carries none. What is still open after
  // `deadline` is aborted. on_close reports shutdown for those that leave or are aborted; a connection that meets
  // another end meanwhile (its peer resets, its heartbeat times out) reports that. Each shard then releases its
  // io_context, so io.run() returns by itself once everything is closed and the worker threads are joined.
  // Returns at once; safe from any thread, a handler or a signal_set callback included; later calls do nothing.
  void stop(std::chrono::milliseconds deadline);

  // The shards' executors, shard 0's first, once start() succeeded: where work touching a shard's connections
  // must run.
  std::vector<asio::io_context::executor_type> executors() const;

  // Runs visit(connection) for every open connection of every shard, each on its own shard's thread, for
  // broadcasts, metrics and drains. Posted: returns at once, and the visits of different shards run concurrently,
  // so whatever visit shares between shards must be safe across threads. Safe from any thread once start()
  // has returned.
  void for_each_connection(std::function<void(connection_type&)> visit);

  // Shared by every shard: opens and closes per reason, refusals counted under their reason.
  const tether::stats& stats() const noexcept { return core_.stats; }

  // Live connections over all shards, those on their way to a shard included.
  std::size_t connections() const noexcept { return core_.limits.admitted(); }

  // Each shard's live connections, shard 0's first, those on their way to it included; empty before start().
  std::vector<std::size_t> shard_connections() const;

private:
  std::error_code validate() const noexcept;
  // Shard 0's acceptor. Reports through every_shard_accepts whether the other shards can share its port.
  std::error_code open_first_acceptor(acceptor_type& acceptor, bool& every_shard_accepts) const;
  std::error_code open_sibling_acceptor(acceptor_type& acceptor, const asio::ip::tcp::endpoint& bound) const;
  std::error_code open(acceptor_type& acceptor, const asio::ip::tcp::endpoint& at) const;
  std::error_code bind_and_listen(acceptor_type& acceptor, const asio::ip::tcp::endpoint& at) const;
  // Stops accepting and asks every connection to leave; after a handover, first lets go of the listening sockets.
  void begin_stop(std::chrono::milliseconds deadline, bool handed_over);
#if !defined(TETHER_PLATFORM_WINDOWS)
  std::error_code adopt(detail::handover_request& predecessor, const std::vector<std::shared_ptr<shard_type>>& shards,
                        bool& every_shard_accepts) const;
  std::error_code serve_handover(const std::vector<std::shared_ptr<shard_type>>& shards);
  std::shared_ptr<detail::handover_point> handover_point_;
#endif

  asio::io_context& io_;
  listener_options options_;
  std::shared_ptr<detail::listener_workers> workers_;  // outlives the shards, whose io_contexts it owns
  detail::listener_core<Codec, Liveness, UserData> core_;
  asio::ip::tcp::endpoint local_endpoint_;
  std::function<void()> on_handed_over_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  bool took_over_ = false;
};

} // namespace tether

#include <tether/impl/listener.hpp>

// One shard of a tether::listener: an io_context's share of the work. A shard accepts (when it has an acceptor
// of its own, or as shard 0 handing connections out), reads the PROXY protocol header of a trusted balancer's
// connection, admits connections against the shared limits, serves them with its own timer wheel and connection
// settings, keeps a registry of them for stopping, and winds down so that its io_context runs out of work.
//
// Everything here runs on the shard's io_context thread except construction, which happens in start() before
// that thread runs anything of the shard's.
#pragma once

#include <tether/buffer_budget.hpp>
#include <tether/close_reason.hpp>
#include <tether/codec/codec.hpp>
#include <tether/connection.hpp>
#include <tether/detail/listener_limits.hpp>
#include <tether/detail/native_socket.hpp>
#include <tether/detail/proxy_header.hpp>
#include <tether/detail/spare_descriptor.hpp>
#include <tether/proxy_protocol.hpp>
#include <tether/socket_options.hpp>
#include <tether/stats.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/basic_socket_acceptor.hpp>
#include <asio/error.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>


namespace tether::detail {

// What a shard needs from the listener's options.
struct shard_options {
  timer_wheel_options wheel;
  bool reject_abortively;
  std::chrono::milliseconds accept_retry_initial;
  std::chrono::milliseconds accept_retry_max;
  bool refuse_without_descriptors;  // keep a spare descriptor and refuse the queue with it when they run out
  proxy_protocol_options proxy_protocol;
  std::size_t buffer_budget;  // over all shards; 0 = unlimited
};

template <class Codec, liveness_policy Liveness, class UserData>
class listener_shard;

// What the shards of one listener share. Filled in before start() and only read afterwards, except for the
// stats and limits, which are made to be shared between threads.
template <class Codec, liveness_policy Liveness, class UserData>
struct listener_core {
  using connection_type = connection<Codec, Liveness, UserData>;

  listener_core(connection_context<Codec, Liveness, UserData> context_template, shard_options shard, std::size_t max_connections,
                std::size_t max_per_address)
      : context(std::move(context_template)), options(shard), limits(max_connections, max_per_address) {}

  connection_context<Codec, Liveness, UserData> context;  // each shard serves with a copy of its own
  std::function<void(connection_type&)> on_accept;
  std::function<void(const asio::ip::tcp::endpoint&, close_reason, std::string_view)> on_reject;
  shard_options options;
  tether::stats stats;
  connection_limits limits;
  std::vector<std::shared_ptr<listener_shard<Codec, Liveness, UserData>>> shards;
  bool shard_0_hands_out = false;  // shard 0 accepts for every shard and deals the connections out
  bool least_loaded = false;       // ... to the shard with the fewest connections rather than in turn
  std::size_t shards_planned = 1;  // how many shards start() makes, known before the first is made
};

// Failures that concern only the connection being accepted, which has left the queue: the next accept may
// follow at once. Every other failure pauses accepting: running out of descriptors or memory (EMFILE, ENFILE,
// ENOBUFS, ENOMEM) leaves the pending connection queued, so an immediate retry fails the same way and spins,
// and a rarer error may just as well persist.
inline bool only_that_connection_failed(const std::error_code& ec) noexcept {
  return ec == asio::error::connection_aborted || ec == asio::error::connection_reset;
}

inline bool out_of_descriptors(const std::error_code& ec) noexcept {
  return ec == asio::error::no_descriptors || ec == std::errc::too_many_files_open_in_system;
}

// How many queued connections one refusal round accepts and closes before the shard serves others again.
inline constexpr std::size_t refusals_per_round = 256;

// A connection's descriptor on its way from the shard that accepted it to the shard that serves it; closed if it
// never gets there.
class socket_in_transit {
public:
  explicit socket_in_transit(native_socket handle) noexcept : handle_(handle) {}
  socket_in_transit(socket_in_transit&& other) noexcept : handle_(std::exchange(other.handle_, invalid_socket)) {}
  socket_in_transit& operator=(socket_in_transit&&) = delete;
  ~socket_in_transit() {
    if (handle_ != invalid_socket)
      close_socket(handle_);
  }

  native_socket handle() const noexcept { return handle_; }
  void delivered() noexcept { handle_ = invalid_socket; }

private:
  native_socket handle_;
};

template <class Codec, liveness_policy Liveness, class UserData>
class listener_shard : public std::enable_shared_from_this<listener_shard<Codec, Liveness, UserData>> {
public:
  using connection_type = connection<Codec, Liveness, UserData>;
  using socket_type = typename connection_type::socket_type;
  using acceptor_type = asio::basic_socket_acceptor<asio::ip::tcp, asio::io_context::executor_type>;
  using core_type = listener_core<Codec, Liveness, UserData>;

  // A shard with a thread of its own keeps that thread's io_context running until it stops, because handed-out
  // connections can arrive at any time; shard 0 lives on the caller's io_context, which the caller runs.
  listener_shard(asio::io_context& io, core_type& core, bool own_thread)
      : io_(io), core_(core), context_(core.context), on_accept_(core.on_accept), on_reject_(core.on_reject),
        wheel_(std::in_place, io, core.options.wheel), acceptor_(io), retry_timer_(io), deadline_timer_(io),
        retry_delay_(core.options.accept_retry_initial) {
    if (own_thread)
      keep_running_.emplace(asio::make_work_guard(io));
    context_.stats = &core.stats;
    if (const std::size_t total = core.options.buffer_budget; total != 0) {
      budget_.emplace(std::max<std::size_t>(1, total / core.shards_planned), &core.stats);
      context_.budget = &*budget_;
    }
    context_.on_close = [this, user = std::move(context_.on_close)](connection_type& conn, close_reason why) {
      forget(conn);
      if (user)
        user(conn, why);
      if (stopping_ && registry_.empty())
        wind_down();
    };
  }

  listener_shard(const listener_shard&) = delete;
  listener_shard& operator=(const listener_shard&) = delete;

  asio::io_context& context() const noexcept { return io_; }
  // This shard's connections, those on their way to it included: read by any thread.
  std::size_t load() const noexcept { return load_.load(std::memory_order_relaxed); }
  acceptor_type& acceptor() noexcept { return acceptor_; }

  void begin_accepting() {
    if (!acceptor_.is_open())
      return;
    if (core_.options.refuse_without_descriptors)
      spare_.reserve();
    accept_next();
  }

  // Stops accepting and asks every connection to leave with a goaway carrying `goaway`; whatever is still open at
  // the deadline is aborted.
  void stop(std::chrono::steady_clock::time_point deadline, std::string_view goaway) {
    if (stopping_)
      return;
    stop_accepting();
    abandon_awaited_headers();
    for (const auto& conn : live_connections()) {
      if constexpr (Codec::carries_control_frames) {
        if (conn->send_goaway(goaway) && conn->is_open())
          conn->close(close_reason::shutdown);
      } else {
        conn->close(close_reason::shutdown);
      }
    }
    if (registry_.empty()) {
      wind_down();
      return;
    }
    deadline_timer_.expires_at(deadline);
    deadline_timer_.async_wait([weak = this->weak_from_this()](const std::error_code& ec) {
      if (auto self = weak.lock(); self && !ec)
        self->abort_all();
    });
  }

  // After a handover: closes this process's copy of the listening socket, whose accept queue the successor now
  // serves, without the reset a close would give queued connections were it the last copy. Releasing (rather
  // than closing) takes the socket out of the reactor first, which a close would not do for a socket that
  // another process still holds open. A connection accepted just before is still admitted.
  void let_go_of_acceptor() {
    if (!acceptor_.is_open())
      return;
    std::error_code ec;
    const native_socket released = acceptor_.release(ec);
    if (!ec)
      close_socket(released);
  }

  void visit_each(const std::function<void(connection_type&)>& visit) {
    for (const auto& conn : live_connections()) {
      if (conn->is_open())
        visit(*conn);
    }
  }

  void abort_all() {
    stop_accepting();
    abandon_awaited_headers();
    for (const auto& conn : live_connections())
      conn->abort(close_reason::shutdown);
    wind_down();
  }

private:

  void accept_next() {
    // Closed by a stop, or let go of after a handover while an accepted connection was still being admitted.
    if (!acceptor_.is_open())
      return;
    acceptor_.async_accept(io_, peer_, [weak = this->weak_from_this()](const std::error_code& ec, socket_type socket) {
      if (auto self = weak.lock())
        self->on_accepted(ec, std::move(socket));
    });
  }

  void on_accepted(const std::error_code& ec, socket_type socket) {
    if (stopping_) {
      if (!ec)
        refuse(std::move(socket), peer_, close_reason::shutdown, "the listener is stopping");
      return;
    }
    if (ec) {
      if (only_that_connection_failed(ec))
        accept_next();
      else if (out_of_descriptors(ec) && spare_.held())
        refuse_queued();
      else
        pause_accepting();
      return;
    }
    retry_delay_ = core_.options.accept_retry_initial;
    const auto& proxying = core_.options.proxy_protocol;
    if (!proxying.enabled())
      admit(std::move(socket), peer_);
    else if (proxying.trusts(peer_.address()))
      await_proxy_header(std::move(socket), peer_);
    else
      admit(std::move(socket), peer_, {}, true);
    accept_next();
  }

  // A trusted balancer's connection, until its PROXY protocol header has arrived: it becomes a connection only
  // then, under the client's address, and the header's bytes are the only ones taken from the socket.
  struct awaited_header {
    awaited_header(socket_type s, const asio::ip::tcp::endpoint& from, asio::io_context& io)
        : socket(std::move(s)), balancer(from), timer(io) {}
    socket_type socket;
    asio::ip::tcp::endpoint balancer;
    asio::steady_timer timer;
    std::string received;
    std::size_t slot = 0;  // in awaited_headers_
  };

  void await_proxy_header(socket_type socket, const asio::ip::tcp::endpoint& balancer) {
    std::error_code ec;
    socket.non_blocking(true, ec);
    if (ec) {
      refuse(std::move(socket), balancer, close_reason::io_error, "the socket could not be prepared");
      return;
    }
    auto awaited = std::make_shared<awaited_header>(std::move(socket), balancer, io_);
    awaited->slot = awaited_headers_.size();
    awaited_headers_.push_back(awaited);
    awaited->timer.expires_after(core_.options.proxy_protocol.header_timeout);
    awaited->timer.async_wait([weak = this->weak_from_this(), header = std::weak_ptr<awaited_header>(awaited)](
                                  const std::error_code& ec) {
      auto self = weak.lock();
      auto awaited = header.lock();
      if (self && awaited && !ec)
        self->give_up_on_header(*awaited, close_reason::handshake_failed,
                                "no complete PROXY protocol header within header_timeout");
    });
    wait_for_header_bytes(awaited);
  }

  void wait_for_header_bytes(const std::shared_ptr<awaited_header>& awaited) {
    awaited->socket.async_wait(socket_type::wait_read,
                               [weak = this->weak_from_this(), awaited](const std::error_code& ec) {
                                 // An error here is the socket closed by the timeout or a stop.
                                 if (auto self = weak.lock(); self && !ec)
                                   self->read_header_bytes(awaited);
                               });
  }

  // Peeks at what arrived, then takes from the socket exactly the bytes the header is known to span: all of them
  // while it is incomplete (no CRLF yet, or fewer than its stated length), its length once it is complete.
  void read_header_bytes(const std::shared_ptr<awaited_header>& awaited) {
    const std::size_t max_size = std::max(proxy_v1_max_size, core_.options.proxy_protocol.max_header_size);
    std::string bytes = awaited->received;
    const std::size_t before = bytes.size();
    bytes.resize(max_size);
    std::error_code ec;
    const std::size_t peeked = awaited->socket.receive(asio::buffer(bytes.data() + before, max_size - before),
                                                       asio::socket_base::message_peek, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      wait_for_header_bytes(awaited);
      return;
    }
    if (ec == asio::error::eof) {
      give_up_on_header(*awaited, close_reason::peer_closed, "the connection ended before its PROXY protocol header");
      return;
    }
    if (ec) {
      give_up_on_header(*awaited, ec == asio::error::connection_reset ? close_reason::peer_reset : close_reason::io_error,
                        "the connection failed before its PROXY protocol header ended");
      return;
    }
    bytes.resize(before + peeked);
    const proxy_header header = parse_proxy_header(bytes, core_.options.proxy_protocol.max_header_size);
    if (header.status == proxy_header_status::invalid) {
      give_up_on_header(*awaited, close_reason::protocol_error, header.problem);
      return;
    }
    const bool complete = header.status == proxy_header_status::complete;
    const std::size_t take = (complete ? header.length : bytes.size()) - before;
    const std::size_t taken = awaited->socket.receive(asio::buffer(bytes.data() + before, take), 0, ec);
    if (ec || taken != take) {
      give_up_on_header(*awaited, close_reason::io_error, "the PROXY protocol header could not be read");
      return;
    }
    if (!complete) {
      awaited->received.assign(bytes, 0, before + take);
      wait_for_header_bytes(awaited);
      return;
    }
    const proxy_details details{.proxy = awaited->balancer, .destination = header.destination,
                                .version = header.version, .local = header.local};
    const asio::ip::tcp::endpoint client = header.local ? awaited->balancer : header.source;
    socket_type socket = std::move(awaited->socket);
    forget_header(*awaited);
    admit(std::move(socket), client, details);
  }

  void give_up_on_header(awaited_header& awaited, close_reason why, const char* detail) {
    socket_type socket = std::move(awaited.socket);
    const asio::ip::tcp::endpoint balancer = awaited.balancer;
    forget_header(awaited);
    refuse(std::move(socket), balancer, why, detail);
  }

  void forget_header(awaited_header& awaited) {
    awaited.timer.cancel();
    const std::size_t slot = awaited.slot;
    std::shared_ptr<awaited_header> last_reference = std::move(awaited_headers_[slot]);
    if (slot + 1 != awaited_headers_.size()) {
      awaited_headers_[slot] = std::move(awaited_headers_.back());
      awaited_headers_[slot]->slot = slot;
    }
    awaited_headers_.pop_back();
  }

  void abandon_awaited_headers() {
    while (!awaited_headers_.empty()) {
      const auto awaited = awaited_headers_.back();
      give_up_on_header(*awaited, close_reason::shutdown, "the listener is stopping");
    }
  }

  // The connections waiting in the kernel's queue stay there meanwhile; existing connections are served as usual.
  void pause_accepting() {
    retry_timer_.expires_after(retry_delay_);
    retry_delay_ = std::min(retry_delay_ * 2, core_.options.accept_retry_max);
    retry_timer_.async_wait([weak = this->weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (!self || ec || self->stopping_)
        return;
      // A spare that could not be taken back after a refusal round is tried for again on every retry.
      if (self->core_.options.refuse_without_descriptors)
        self->spare_.reserve();
      self->accept_next();
    });
  }

  // Out of descriptors with one in reserve: the queued connections are refused at once instead of waiting.
  // accept() fails with EMFILE whenever no descriptor is free, whether or not a connection is queued (Asio tries
  // it before waiting), so the next attempt waits until the socket is readable: a new connection to refuse or,
  // if a descriptor has been freed meanwhile, to serve.
  void refuse_queued() {
    spare_.refuse_queued(acceptor_.native_handle(), core_.options.reject_abortively, refusals_per_round,
                         [this](const sockaddr* address, std::size_t length) {
                           core_.stats.record_refused(connection_limit::descriptors);
                           if (!on_reject_)
                             return;
                           asio::ip::tcp::endpoint peer;
                           if (length <= peer.capacity()) {
                             std::memcpy(peer.data(), address, length);
                             peer.resize(length);
                           }
                           on_reject_(peer, close_reason::limit_exceeded, "out of descriptors");
                         });
    if (!spare_.held()) {
      pause_accepting();
      return;
    }
    acceptor_.async_wait(acceptor_type::wait_read, [weak = this->weak_from_this()](const std::error_code& ec) {
      if (auto self = weak.lock(); self && !ec && !self->stopping_)
        self->accept_next();
    });
  }

  // `peer` is the address the connection is counted and known by: the client's, where a header named it.
  void admit(socket_type socket, const asio::ip::tcp::endpoint& peer, std::optional<proxy_details> via = {},
             bool refuse_proxy_header = false) {
    if (const auto over = core_.limits.try_admit(peer.address())) {
      core_.stats.record_refused(*over);
      close_refused(std::move(socket));
      if (on_reject_)
        on_reject_(peer, close_reason::limit_exceeded,
                   *over == connection_limit::max_connections ? "over max_connections" : "over max_per_address");
      return;
    }
    if (!core_.shard_0_hands_out) {
      load_.fetch_add(1, std::memory_order_relaxed);
      serve(std::move(socket), peer, std::move(via), refuse_proxy_header);
      return;
    }
    const auto& target = core_.least_loaded ? least_loaded_shard() : core_.shards[next_target_];
    next_target_ = (next_target_ + 1) % core_.shards.size();
    target->load_.fetch_add(1, std::memory_order_relaxed);
    if (target.get() == this)
      serve(std::move(socket), peer, std::move(via), refuse_proxy_header);
    else
      hand_out(target, std::move(socket), peer, std::move(via), refuse_proxy_header);
  }

  // Ties go to the lowest index. Loads read here may trail the other shards' closes by a moment; the next
  // connection corrects for it.
  const std::shared_ptr<listener_shard>& least_loaded_shard() const {
    const auto& shards = core_.shards;
    std::size_t chosen = 0;
    for (std::size_t i = 1; i < shards.size(); ++i) {
      if (shards[i]->load() < shards[chosen]->load())
        chosen = i;
    }
    return shards[chosen];
  }

  // The descriptor travels bare so that the target registers it with its own reactor, on its own thread. Where
  // the platform cannot release a socket from its io_context (Windows before 8.1), this shard serves it.
  void hand_out(const std::shared_ptr<listener_shard>& target, socket_type socket, const asio::ip::tcp::endpoint& peer,
                std::optional<proxy_details> via, bool refuse_proxy_header) {
    std::error_code ec;
    socket_in_transit moving{socket.release(ec)};
    if (ec) {
      target->load_.fetch_sub(1, std::memory_order_relaxed);
      load_.fetch_add(1, std::memory_order_relaxed);
      serve(std::move(socket), peer, std::move(via), refuse_proxy_header);
      return;
    }
    asio::post(target->io_, [weak = std::weak_ptr<listener_shard>(target), moving = std::move(moving), peer,
                             via = std::move(via), refuse_proxy_header]() mutable {
      if (auto shard = weak.lock())
        shard->take(std::move(moving), peer, std::move(via), refuse_proxy_header);
    });
  }

  void take(socket_in_transit moving, const asio::ip::tcp::endpoint& peer, std::optional<proxy_details> via,
            bool refuse_proxy_header) {
    socket_type socket{io_};
    std::error_code ec;
    socket.assign(peer.protocol(), moving.handle(), ec);
    if (ec) {
      core_.limits.release(peer.address());
      load_.fetch_sub(1, std::memory_order_relaxed);
      report_refusal(peer, close_reason::io_error, "the serving shard could not take the socket over");
      return;
    }
    moving.delivered();
    if (stopping_) {
      core_.limits.release(peer.address());
      load_.fetch_sub(1, std::memory_order_relaxed);
      refuse(std::move(socket), peer, close_reason::shutdown, "the listener is stopping");
      return;
    }
    serve(std::move(socket), peer, std::move(via), refuse_proxy_header);
  }

  void serve(socket_type socket, const asio::ip::tcp::endpoint& peer, std::optional<proxy_details> via,
             bool refuse_proxy_header) {
    auto created = connection_type::create(std::move(socket), context_, *wheel_, peer);
    connection_type& conn = *created;
    if (via)
      conn.rare().proxy = *via;
    conn.refuse_proxy_header_ = refuse_proxy_header;
    conn.registry_slot_ = static_cast<std::uint32_t>(registry_.size());
    registry_.push_back(std::move(created));
    conn.start();
    // A connection reset right after the accept, or one the platform refused a liveness option for, has already
    // closed inside start().
    if (conn.is_open() && on_accept_)
      on_accept_(conn);
  }

  void close_refused(socket_type socket) {
    if (core_.options.reject_abortively)
      set_option(socket, sockopt::linger::abortive());
    std::error_code ignored;
    socket.close(ignored);
  }

  void refuse(socket_type socket, const asio::ip::tcp::endpoint& peer, close_reason why, std::string_view detail) {
    close_refused(std::move(socket));
    report_refusal(peer, why, detail);
  }

  void report_refusal(const asio::ip::tcp::endpoint& peer, close_reason why, std::string_view detail) {
    core_.stats.record_rejected(why);
    if (on_reject_)
      on_reject_(peer, why, detail);
  }

  // The registry is a vector with each connection's slot kept in the connection: a few bytes per connection
  // where a node-based map took about ninety. The limits counted the connection under the address the accept
  // returned, which remote() holds.
  void forget(connection_type& conn) {
    const std::uint32_t slot = conn.registry_slot_;
    std::shared_ptr<connection_type> last_reference = std::move(registry_[slot]);
    if (slot + 1 != registry_.size()) {
      registry_[slot] = std::move(registry_.back());
      registry_[slot]->registry_slot_ = slot;
    }
    registry_.pop_back();
    core_.limits.release(conn.remote().address());
    load_.fetch_sub(1, std::memory_order_relaxed);
    // on_close runs from inside the connection's own member functions, so the connection must outlive this
    // call: the registry's reference is dropped from a handler of its own.
    asio::post(io_, [last_reference = std::move(last_reference)] {});
  }

  std::vector<std::shared_ptr<connection_type>> live_connections() const {
    std::vector<std::shared_ptr<connection_type>> live;
    live.reserve(registry_.size());
    for (const auto& conn : registry_)
      live.push_back(conn);
    return live;
  }

  void stop_accepting() {
    stopping_ = true;
    std::error_code ignored;
    acceptor_.close(ignored);
    retry_timer_.cancel();
  }

  // Leaves nothing of this shard's for the io_context to wait for, so that it runs out of work. Only once every
  // connection has closed: open ones still use the wheel.
  void wind_down() {
    deadline_timer_.cancel();
    wheel_.reset();
    keep_running_.reset();
  }

  asio::io_context& io_;
  core_type& core_;
  connection_context<Codec, Liveness, UserData> context_;
  std::function<void(connection_type&)> on_accept_;
  std::function<void(const asio::ip::tcp::endpoint&, close_reason, std::string_view)> on_reject_;
  std::optional<buffer_budget> budget_;  // this shard's share of listener_options::buffer_budget
  spare_descriptor spare_;               // with out_of_descriptors = refuse
  std::optional<timer_wheel> wheel_;
  acceptor_type acceptor_;
  asio::ip::tcp::endpoint peer_;  // filled in by the accept in flight
  asio::steady_timer retry_timer_;
  asio::steady_timer deadline_timer_;
  std::chrono::milliseconds retry_delay_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> keep_running_;
  std::vector<std::shared_ptr<connection_type>> registry_;
  std::vector<std::shared_ptr<awaited_header>> awaited_headers_;
  std::size_t next_target_ = 0;
  std::atomic<std::size_t> load_{0};
  bool stopping_ = false;
};

} // namespace tether::detail

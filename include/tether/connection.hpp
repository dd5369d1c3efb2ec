// tether::connection<Codec, Liveness>: one TCP connection with framing, liveness and a close reason.
//
// A connection owns its socket, reads frames through its codec, answers the peer's pings, runs the
// compile-time selected liveness strategies off the thread's timer wheel, and queues writes up to a
// high-water mark. It closes exactly once; the settings' on_close handler then runs with the reason, and no
// handler of that connection runs after it.
//
//   tether::connection_settings<tether::line_codec, decltype(policy)> settings{.liveness = policy};
//   settings.on_message = [](auto& conn, std::string_view line) { conn.send(line); };
//   settings.on_close = [](auto& conn, tether::close_reason why) { fmt::print("{}: {}\n", why, conn.close_detail()); };
//   auto conn = tether::connection<tether::line_codec, decltype(policy)>::create(std::move(socket), settings, wheel);
//   conn->start();
//
// Threading: a connection lives on the one thread that runs its io_context; call its members from there
// (e.g. through asio::post). Nothing on the hot path takes a lock.
//
// Memory: an idle connection holds no read or write buffer. Reads wait for readiness and then read into a
// per-thread scratch buffer; only a partial frame or unsent data makes a connection allocate, and the buffers
// are released again once they are empty.
//
// Handlers must not throw: they can run from the timer wheel, which cannot propagate exceptions.
#pragma once

#include <tether/close_reason.hpp>
#include <tether/detail/send_completion.hpp>
#include <tether/codec/codec.hpp>
#include <tether/codec/frame.hpp>
#include <tether/error.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/socket_options.hpp>
#include <tether/stats.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/async_result.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace tether {

struct connection_options {
  // Bytes queued but not yet written (encoded frames) above which the peer is not keeping up.
  std::size_t write_high_water = 4 * 1024 * 1024;
  // close: the connection closes with backpressure. refuse: send() returns write_queue_full and the
  // caller decides (drop, retry later); the connection stays open.
  enum class overflow : std::uint8_t { close, refuse };
  overflow on_overflow = overflow::close;
  // How long a graceful close waits for queued data to drain and for the peer's FIN before resetting.
  std::chrono::milliseconds graceful_close_timeout{std::chrono::seconds{5}};
  bool no_delay = true;
};

template <codec Codec, class Liveness>
class connection;

// What every connection of one server or client shares: framing, liveness policy, options, handlers and
// where to count. Must outlive its connections.
template <codec Codec, class Liveness = liveness<>>
struct connection_settings {
  using connection_type = connection<Codec, Liveness>;

  Codec codec{};
  Liveness liveness{};
  connection_options options{};
  std::function<void(connection_type&, std::string_view)> on_message{};
  std::function<void(connection_type&, close_reason)> on_close{};
  std::function<void(connection_type&, std::chrono::microseconds)> on_heartbeat{};  // a pong answered our ping
  std::function<void(connection_type&)> on_goaway{};  // the peer announced it is going away
  tether::stats* stats = nullptr;
};

namespace detail {

// Every connection of a thread reads into this buffer, so idle connections pin none of their own.
inline std::array<char, 64 * 1024>& read_scratch() noexcept {
  thread_local std::array<char, 64 * 1024> buffer;
  return buffer;
}

struct no_wheel_node {
  constexpr explicit no_wheel_node(wheel_node::expiry_handler) noexcept {}
};

// Connections with a timed strategy are filed in the timer wheel through this base; others carry nothing.
template <bool Timed>
using liveness_node_base = std::conditional_t<Timed, wheel_node, no_wheel_node>;

constexpr bool closes_abortively(close_reason reason) noexcept {
  // A peer that closed cleanly, is alive and merely idle, or meets a local decision gets a FIN after whatever
  // is still queued for it; everything else has a dead or misbehaving peer, where a FIN only holds resources.
  return reason != close_reason::peer_closed && reason != close_reason::idle_timeout &&
         reason != close_reason::local_close && reason != close_reason::shutdown &&
         reason != close_reason::limit_exceeded;
}

} // namespace detail

template <codec Codec, class Liveness = liveness<>>
class connection : public std::enable_shared_from_this<connection<Codec, Liveness>>,
                   private detail::liveness_node_base<Liveness::timed> {
  static_assert(!Liveness::needs_control_frames || control_frame_codec<Codec>,
                "tether: this liveness policy sends ping/pong control frames (heartbeat), but the codec carries "
                "bytes only; use tether::line_codec or tether::length_prefixed_codec instead of raw_codec");

public:
  using codec_type = Codec;
  using liveness_type = Liveness;
  using settings_type = connection_settings<Codec, Liveness>;
  using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

  struct heartbeat_rtt {
    std::chrono::microseconds last{0};
    std::chrono::microseconds min{0};
    std::chrono::microseconds smoothed{0};
  };

  static std::shared_ptr<connection> create(socket_type socket, const settings_type& settings, timer_wheel& wheel) {
    return std::make_shared<connection>(std::move(socket), settings, wheel);
  }

  connection(socket_type socket, const settings_type& settings, timer_wheel& wheel)
      : node_base(&connection::on_liveness_deadline), socket_(std::move(socket)), settings_(&settings), wheel_(&wheel) {}

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // A wheel destroyed first has already unlinked the node, so only a node still filed is cancelled.
  ~connection() {
    if constexpr (Liveness::timed) {
      if (this->scheduled())
        wheel_->cancel(*this);
    }
  }

  // Applies the socket options of the liveness policy, starts reading and the liveness checks. A socket
  // option the platform refuses closes the connection at once (io_error, with the option's error).
  void start() {
    if (phase_ != phase::created)
      return;
    phase_ = phase::open;
    if (settings_->stats)
      settings_->stats->record_open();
    std::error_code ec;
    remote_ = socket_.remote_endpoint(ec);
    if (!ec)
      socket_.non_blocking(true, ec);
    if (!ec && settings_->options.no_delay)
      ec = set_option(socket_, sockopt::no_delay{true});
    if (ec) {
      finish(close_reason::io_error, "the socket could not be prepared", ec);
      return;
    }
    if (auto refused = settings_->liveness.apply(socket_.native_handle())) {
      finish(close_reason::io_error, "the platform refused a liveness socket option", refused);
      return;
    }
    const auto now = wheel_->now();
    activity_ = {now, now, now};
    if constexpr (Liveness::timed)
      schedule_liveness_check();
    wait_readable();
  }

  // Queues one data frame. Fails with connection_not_open once closing, frame_not_encodable when the codec
  // cannot carry the payload, and write_queue_full over the high-water mark (which also closes the
  // connection with backpressure unless the options say refuse).
  std::error_code send(std::string_view payload) {
    if (auto ec = enqueue(frame_kind::data, payload))
      return ec;
    activity_.data_sent = wheel_->now();
    return {};
  }

  // Queues one data frame like send() and completes, with Asio's completion-token convention, once the
  // frame has been handed to the kernel: a callback taking std::error_code, asio::use_future,
  // asio::use_awaitable... It completes with send()'s errors at once, or with the close reason (as an
  // error_code of close_reason_category) if the connection closes before the frame is written.
  template <class CompletionToken>
  auto async_send(std::string_view payload, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::error_code)>(
        [this](auto handler, std::string_view frame) {
          if (auto ec = send(frame)) {
            detail::send_completion::post(std::move(handler), socket_.get_executor(), ec);
            return;
          }
          auto& b = *buffers_;
          // The frame went out with the write just started, or waits in pending for the next one.
          const std::uint64_t written_by = b.pending.empty() ? b.writes_started : b.writes_started + 1;
          b.completions.push_back({written_by, detail::send_completion{std::move(handler), socket_.get_executor()}});
        },
        token, payload);
  }

  // Graceful close: flush what is queued, send FIN, wait for the peer's FIN (up to
  // options.graceful_close_timeout), then close. on_close reports local_close.
  void close() { begin_graceful_close(close_reason::local_close, "closed by this side"); }

  // Winds the connection down for a server or client shutdown. Over a codec with control frames the peer
  // gets a goaway and the connection keeps serving until the peer closes, so requests in flight complete;
  // without control frames it closes gracefully at once. Either way on_close reports shutdown. The caller
  // bounds the wait (the listener aborts what is left at its stop deadline).
  void shut_down() {
    if (phase_ != phase::open || going_away_)
      return;
    if constexpr (Codec::carries_control_frames) {
      going_away_ = true;
      enqueue(frame_kind::goaway, {});
    } else {
      begin_graceful_close(close_reason::shutdown, "shutting down");
    }
  }

  // Abortive close: discard queued data and reset the connection (RST, no TIME_WAIT).
  void abort(close_reason reason = close_reason::local_close) {
    finish(reason, "reset by this side", {}, true);
  }

  bool is_open() const noexcept { return phase_ == phase::open; }
  bool is_closed() const noexcept { return phase_ == phase::closed; }
  bool peer_going_away() const noexcept { return peer_going_away_; }
  bool going_away() const noexcept { return going_away_; }

  // Meaningful once on_close has run.
  close_reason reason() const noexcept { return reason_; }
  std::string_view close_detail() const noexcept { return close_detail_; }
  std::error_code close_error() const noexcept { return close_error_; }

  const asio::ip::tcp::endpoint& remote() const noexcept { return remote_; }
  socket_type& socket() noexcept { return socket_; }
  const settings_type& settings() const noexcept { return *settings_; }
  std::size_t queued_bytes() const noexcept { return buffers_ ? buffers_->pending.size() + buffers_->writing.size() : 0; }

  // When a byte (data or control) last arrived, on the timer wheel's clock.
  liveness_clock::time_point last_received() const noexcept { return activity_.received; }

  heartbeat_rtt heartbeat_round_trip() const noexcept
    requires(Liveness::template has<heartbeat>)
  {
    const auto& s = std::get<heartbeat::state>(liveness_state_);
    return {s.last_rtt, s.min_rtt, s.smoothed_rtt};
  }

private:
  using node_base = detail::liveness_node_base<Liveness::timed>;
  enum class phase : std::uint8_t { created, open, draining, closed };

  // Allocated while a partial frame or unsent data exists; an idle connection has none.
  struct io_buffers {
    std::string inbox;    // bytes of an incomplete frame
    std::string pending;  // encoded frames waiting for the write in flight
    std::string writing;  // the frames of the write in flight
    bool write_in_flight = false;
    std::uint64_t writes_started = 0;
    struct completion {
      std::uint64_t written_by;  // the write whose success completes it
      detail::send_completion handler;
    };
    std::vector<completion> completions;  // async_send callers, in write order
  };

  io_buffers& buffers() {
    if (!buffers_)
      buffers_ = std::make_unique<io_buffers>();
    return *buffers_;
  }

  void release_buffers_if_idle() noexcept {
    if (buffers_ && buffers_->inbox.empty() && buffers_->pending.empty() && !buffers_->write_in_flight &&
        buffers_->completions.empty())
      buffers_.reset();
  }

  std::error_code enqueue(frame_kind kind, std::string_view payload) {
    if (phase_ != phase::open)
      return error::connection_not_open;
    auto& b = buffers();
    const std::size_t queued = b.pending.size() + b.writing.size();
    if (queued + payload.size() > settings_->options.write_high_water) {
      if (settings_->options.on_overflow == connection_options::overflow::close)
        finish(close_reason::backpressure, "the write queue passed its high-water mark");
      else
        release_buffers_if_idle();
      return error::write_queue_full;
    }
    if (!settings_->codec.encode(kind, payload, b.pending)) {
      release_buffers_if_idle();
      return error::frame_not_encodable;
    }
    if (!b.write_in_flight)
      write_pending();
    return {};
  }

  void write_pending() {
    auto& b = *buffers_;
    b.writing.swap(b.pending);
    b.write_in_flight = true;
    ++b.writes_started;
    asio::async_write(socket_, asio::buffer(b.writing),
                      [self = this->shared_from_this()](const std::error_code& ec, std::size_t) { self->on_written(ec); });
  }

  void on_written(const std::error_code& ec) {
    auto& b = *buffers_;
    b.write_in_flight = false;
    b.writing.clear();
    if (phase_ == phase::closed)
      return;
    if (ec) {
      fail(ec);
      return;
    }
    complete_sends_written_by(b.writes_started);
    if (!b.pending.empty()) {
      write_pending();
      return;
    }
    if (phase_ == phase::draining) {
      shutdown_send();
      if (peer_finished_) {
        finish(reason_, close_detail_, {});
        return;
      }
    }
    release_buffers_if_idle();
  }

  void complete_sends_written_by(std::uint64_t write) {
    auto& waiting = buffers_->completions;
    std::size_t done = 0;
    while (done < waiting.size() && waiting[done].written_by <= write)
      std::move(waiting[done++].handler).complete({});
    waiting.erase(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(done));
  }

  void wait_readable() {
    socket_.async_wait(socket_type::wait_read,
                       [self = this->shared_from_this()](const std::error_code& ec) { self->on_readable(ec); });
  }

  void on_readable(const std::error_code& wait_error) {
    if (phase_ == phase::closed)
      return;
    if (wait_error) {
      fail(wait_error);
      return;
    }
    auto& scratch = detail::read_scratch();
    std::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(scratch), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      wait_readable();
      return;
    }
    if (ec) {
      fail(ec);
      return;
    }
    activity_.received = wheel_->now();
    if (phase_ == phase::open)
      consume({scratch.data(), n});
    if (phase_ != phase::closed)
      wait_readable();
  }

  // Decodes every complete frame; a partial frame's bytes are kept for the next read.
  void consume(std::string_view chunk) {
    const bool continuing = buffers_ && !buffers_->inbox.empty();
    if (continuing)
      buffers_->inbox.append(chunk);
    const std::string_view input = continuing ? std::string_view{buffers_->inbox} : chunk;

    std::size_t offset = 0;
    while (phase_ == phase::open) {
      const decoded frame = settings_->codec.decode(input.substr(offset), decoder_state_);
      if (frame.status == decode_status::need_more)
        break;
      if (frame.status == decode_status::malformed) {
        finish(close_reason::protocol_error, frame.problem);
        return;
      }
      offset += frame.consumed;
      dispatch(frame);
    }
    if (phase_ == phase::closed)
      return;
    if (continuing)
      buffers_->inbox.erase(0, offset);
    else if (offset < input.size() && phase_ == phase::open)
      buffers().inbox.assign(input.substr(offset));
    if (buffers_ && buffers_->inbox.empty())
      std::string{}.swap(buffers_->inbox);
    release_buffers_if_idle();
  }

  void dispatch(const decoded& frame) {
    switch (frame.kind) {
    case frame_kind::data:
      activity_.data_received = activity_.received;
      if (settings_->on_message)
        settings_->on_message(*this, frame.payload);
      return;
    case frame_kind::ping:
      if constexpr (Liveness::template has<heartbeat>) {
        const verdict v = settings_->liveness.template get<heartbeat>().on_peer_ping(
            std::get<heartbeat::state>(liveness_state_), activity_.received);
        if (v.what == verdict::action::close) {
          finish(v.reason, v.detail);
          return;
        }
      }
      enqueue(frame_kind::pong, frame.payload);
      return;
    case frame_kind::pong:
      if constexpr (Liveness::template has<heartbeat>) {
        const auto rtt = settings_->liveness.template get<heartbeat>().on_pong(
            std::get<heartbeat::state>(liveness_state_), frame.payload, liveness_clock::now());
        if (rtt.count() > 0) {
          // Once per interval, not per byte: an answered ping moves the next one to interval after this pong
          // instead of waiting for the unanswered-ping deadline.
          schedule_liveness_check();
          if (settings_->stats)
            settings_->stats->record_heartbeat_rtt(rtt);
          if (settings_->on_heartbeat)
            settings_->on_heartbeat(*this, rtt);
        }
      }
      return;
    case frame_kind::goaway:
      peer_going_away_ = true;
      if (settings_->on_goaway)
        settings_->on_goaway(*this);
      return;
    }
  }

  static void on_liveness_deadline(wheel_node& node) noexcept {
    if constexpr (Liveness::timed)
      static_cast<connection&>(node).check_liveness();
  }

  void check_liveness() noexcept {
    if (phase_ != phase::open)
      return;
    const auto now = wheel_->now();
    const verdict v = settings_->liveness.on_deadline(liveness_state_, activity_, now);
    if (v.what == verdict::action::close) {
      // Bytes already waiting in our receive queue prove the peer alive: when this process is the one that
      // fell behind (CPU starvation, an accept storm), the verdict must not blame the peer for our lag.
      std::error_code ec;
      if (v.reason == close_reason::heartbeat_timeout && socket_.available(ec) > 0 && !ec) {
        activity_.received = now;
        schedule_liveness_check();
        return;
      }
      finish(v.reason, v.detail);
      return;
    }
    if constexpr (Liveness::template has<heartbeat>) {
      if (v.what == verdict::action::send_ping) {
        const auto sequence = settings_->liveness.template get<heartbeat>().begin_ping(
            std::get<heartbeat::state>(liveness_state_), now, liveness_clock::now());
        std::array<char, 16> text{};
        const auto end = std::to_chars(text.data(), text.data() + text.size(), sequence).ptr;
        enqueue(frame_kind::ping, {text.data(), static_cast<std::size_t>(end - text.data())});
        if (phase_ != phase::open)
          return;
      }
    }
    schedule_liveness_check();
  }

  void schedule_liveness_check() {
    const auto deadline = settings_->liveness.next_deadline(liveness_state_, activity_);
    if (deadline != liveness_clock::time_point::max())
      wheel_->schedule(*this, deadline);
  }

  void begin_graceful_close(close_reason reason, std::string_view detail) {
    if (phase_ != phase::open)
      return;
    phase_ = phase::draining;
    reason_ = reason;
    close_detail_ = detail;
    if constexpr (Liveness::timed)
      wheel_->cancel(*this);
    drain_timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor(), settings_->options.graceful_close_timeout);
    drain_timer_->async_wait([self = this->shared_from_this()](const std::error_code& ec) {
      if (!ec)
        self->finish(self->reason_, "the peer did not finish a graceful close in time", {}, true);
    });
    if (!buffers_ || !buffers_->write_in_flight)
      shutdown_send();
  }

  void shutdown_send() {
    std::error_code ignored;
    socket_.shutdown(socket_type::shutdown_send, ignored);
  }

  // Maps a socket error to the reason the user sees.
  void fail(const std::error_code& ec) {
    if (ec == asio::error::eof) {
      peer_finished();
      return;
    }
    if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
             ec == asio::error::connection_aborted)
      finish(close_reason::peer_reset, "the peer reset the connection", ec);
    else if (ec == asio::error::timed_out)
      finish(settings_->liveness.kernel_timeout_reason(socket_.native_handle()), "the kernel timed the connection out", ec);
    else if (ec == asio::error::operation_aborted)
      finish(close_reason::local_close, "an operation was cancelled", ec);
    else
      finish(close_reason::io_error, "socket error", ec);
  }

  // The peer sent FIN: it will send nothing more, but it may still read. What is queued for it is delivered
  // (a half-closed peer gets every answer) before the connection closes, bounded by the graceful close timeout.
  void peer_finished() {
    peer_finished_ = true;
    const bool unsent = buffers_ && (buffers_->write_in_flight || !buffers_->pending.empty());
    if (phase_ == phase::open) {
      const auto reason = going_away_ ? close_reason::shutdown : close_reason::peer_closed;
      const auto detail = going_away_ ? "the peer closed after our goaway" : "the peer closed the connection";
      if (unsent)
        begin_graceful_close(reason, detail);
      else
        finish(reason, detail);
    } else if (!unsent) {
      finish(reason_, close_detail_);
    }
  }

  void finish(close_reason reason, std::string_view detail, std::error_code ec = {}) {
    finish(reason, detail, ec, detail::closes_abortively(reason));
  }

  void finish(close_reason reason, std::string_view detail, std::error_code ec, bool abortive) {
    if (phase_ == phase::closed)
      return;
    const bool was_draining = phase_ == phase::draining;
    phase_ = phase::closed;
    // A graceful close keeps the reason it started with, whatever ends it.
    reason_ = was_draining ? reason_ : reason;
    close_detail_ = was_draining ? close_detail_ : detail;
    close_error_ = ec;
    if constexpr (Liveness::timed)
      wheel_->cancel(*this);
    if (drain_timer_)
      drain_timer_->cancel();
    std::error_code ignored;
    if (abortive)
      detail::set_socket_option(socket_.native_handle(), sockopt::linger::abortive());
    socket_.close(ignored);
    if (buffers_) {
      for (auto& waiting : buffers_->completions)
        std::move(waiting.handler).complete(make_error_code(reason_));
      buffers_->completions.clear();
    }
    if (settings_->stats)
      settings_->stats->record_close(reason_);
    if (settings_->on_close)
      settings_->on_close(*this, reason_);
  }

  socket_type socket_;
  const settings_type* settings_;
  timer_wheel* wheel_;
  activity activity_{};
  [[no_unique_address]] typename Liveness::state liveness_state_{};
  [[no_unique_address]] typename Codec::decoder_state decoder_state_{};
  std::unique_ptr<io_buffers> buffers_;
  std::unique_ptr<asio::steady_timer> drain_timer_;
  asio::ip::tcp::endpoint remote_{};
  std::error_code close_error_{};
  std::string_view close_detail_{};  // always a string literal
  phase phase_ = phase::created;
  close_reason reason_ = close_reason::local_close;
  bool peer_going_away_ = false;
  bool going_away_ = false;
  bool peer_finished_ = false;
};

} // namespace tether

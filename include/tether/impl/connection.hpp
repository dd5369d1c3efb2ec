// The machinery of tether::connection (declared in tether/connection.hpp).
#pragma once

#include <tether/connection.hpp>
#include <tether/detail/read_scratch.hpp>

#include <asio/write.hpp>

#include <algorithm>
#include <utility>

namespace tether {

inline std::error_code connection_options::validate() const noexcept {
  if (write_high_water == 0)
    return error::write_high_water_zero;
  if (graceful_close_timeout.count() < 0)
    return error::graceful_close_timeout_negative;
  return {};
}

namespace detail {

// Whose close is it: a peer that closed cleanly, is alive and merely idle, or meets a local decision gets a FIN
// after whatever is queued for it; everything else has a dead or misbehaving peer, where waiting only holds
// resources.
constexpr bool closes_abortively(close_reason reason) noexcept {
  return reason != close_reason::peer_closed && reason != close_reason::idle_timeout &&
         reason != close_reason::local_close && reason != close_reason::shutdown &&
         reason != close_reason::limit_exceeded;
}

// Write counters wrap; a write is done when the done counter has reached it.
constexpr bool reached(std::uint32_t counter, std::uint32_t target) noexcept {
  return static_cast<std::int32_t>(counter - target) >= 0;
}

} // namespace detail

template <class Codec, liveness_policy Liveness>
std::shared_ptr<connection<Codec, Liveness>> connection<Codec, Liveness>::create(socket_type socket,
                                                                                const context_type& context,
                                                                                timer_wheel& wheel,
                                                                                const asio::ip::tcp::endpoint& accepted_from) {
  return std::make_shared<connection>(std::move(socket), context, wheel, accepted_from);
}

template <class Codec, liveness_policy Liveness>
connection<Codec, Liveness>::connection(socket_type socket, const context_type& context, timer_wheel& wheel,
                                        const asio::ip::tcp::endpoint& accepted_from)
    : node_base(&connection::on_liveness_deadline), socket_(std::move(socket)), context_(&context), wheel_(&wheel),
      remote_(accepted_from) {}

// A wheel destroyed first has already unlinked the node, so only a node still filed is cancelled.
template <class Codec, liveness_policy Liveness>
connection<Codec, Liveness>::~connection() {
  if constexpr (Liveness::timed) {
    if (this->scheduled())
      wheel_->cancel(*this);
  }
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::start() {
  if (phase_ != phase::created)
    return;
  phase_ = phase::open;
  if (context_->stats)
    context_->stats->record_open();
  std::error_code ec;
  const auto peer = socket_.remote_endpoint(ec);
  if (ec) {
    // getpeername fails only when the connection is no longer connected: the peer reset it after the accept.
    finish(close_reason::peer_reset, "the peer reset the connection before it started", ec, true);
    return;
  }
  remote_ = peer;
  socket_.non_blocking(true, ec);
  if (!ec && context_->options.no_delay)
    ec = set_option(socket_, sockopt::no_delay{true});
  if (ec) {
    finish(close_reason::io_error, "the socket could not be prepared", ec, true);
    return;
  }
  if (auto refused = context_->liveness.apply(socket_.native_handle())) {
    finish(close_reason::io_error, "the platform refused a liveness socket option", refused, true);
    return;
  }
  if constexpr (Liveness::timed || Liveness::opens) {
    const auto now = liveness_clock::now();
    if constexpr (Liveness::timed)
      activity_ = {now, now, now};
    context_->liveness.on_open(liveness_state_, now);
    if constexpr (Liveness::timed)
      schedule_liveness_check();
  }
  wait_readable();
}

template <class Codec, liveness_policy Liveness>
std::error_code connection<Codec, Liveness>::send(std::string_view payload) {
  if (auto ec = enqueue(frame_kind::data, payload))
    return ec;
  ++counters_.messages_sent;
  note_sent();
  return {};
}

template <class Codec, liveness_policy Liveness>
template <class CompletionToken>
auto connection<Codec, Liveness>::async_send(std::string_view payload, CompletionToken&& token) {
  // Queued here, not in the initiation: a lazy token may initiate long after the payload's storage is gone.
  const std::error_code queued = send(payload);
  const std::uint32_t written_by = queued ? 0 : writes_started_ + (buffers_ && !buffers_->pending.empty() ? 1 : 0);
  return asio::async_initiate<CompletionToken, void(std::error_code)>(
      [self = this->shared_from_this(), queued, written_by](auto handler) {
        const auto executor = self->socket_.get_executor();
        if (queued) {
          detail::send_completion::post(std::move(handler), executor, queued);
        } else if (self->written(written_by)) {
          detail::send_completion::post(std::move(handler), executor, std::error_code{});
        } else if (self->phase_ == phase::closed) {
          detail::send_completion::post(std::move(handler), executor, make_error_code(self->reason_));
        } else {
          self->buffers().completions.push_back({written_by, detail::send_completion{std::move(handler), executor}});
        }
      },
      token);
}

template <class Codec, liveness_policy Liveness>
std::error_code connection<Codec, Liveness>::send_goaway(std::string_view payload)
  requires Codec::carries_control_frames
{
  if (auto ec = enqueue(frame_kind::goaway, payload))
    return ec;
  going_away_ = true;
  return {};
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::close(close_reason why) {
  begin_graceful_close(why, "closed by this side");
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::abort(close_reason why) {
  finish(why, "reset by this side", {}, true);
}

template <class Codec, liveness_policy Liveness>
std::size_t connection<Codec, Liveness>::queued_bytes() const noexcept {
  return buffers_ ? buffers_->pending.size() + buffers_->writing.size() : 0;
}

template <class Codec, liveness_policy Liveness>
auto connection<Codec, Liveness>::buffers() -> io_buffers& {
  if (!buffers_)
    buffers_ = std::make_unique<io_buffers>();
  return *buffers_;
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::release_buffers_if_idle() noexcept {
  if (buffers_ && buffers_->inbox.empty() && buffers_->pending.empty() && !write_in_flight_ &&
      buffers_->completions.empty())
    buffers_.reset();
}

template <class Codec, liveness_policy Liveness>
std::error_code connection<Codec, Liveness>::enqueue(frame_kind kind, std::string_view payload) {
  if (phase_ != phase::open)
    return error::connection_not_open;
  auto& b = buffers();
  const std::size_t queued = b.pending.size() + b.writing.size();
  const std::size_t limit =
      context_->options.write_high_water + (kind == frame_kind::data ? 0 : connection_options::control_allowance);
  if (queued + payload.size() > limit) {
    if (context_->options.on_overflow == connection_options::overflow::close)
      finish(close_reason::backpressure, "the write queue passed its high-water mark", {}, true);
    else
      release_buffers_if_idle();
    return error::write_queue_full;
  }
  if (!context_->codec.encode(kind, payload, b.pending)) {
    release_buffers_if_idle();
    return error::frame_not_encodable;
  }
  if (!write_in_flight_)
    write_pending();
  return {};
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::write_pending() {
  auto& b = *buffers_;
  b.writing.swap(b.pending);
  write_in_flight_ = true;
  ++writes_started_;
  asio::async_write(socket_, asio::buffer(b.writing),
                    [self = this->shared_from_this()](const std::error_code& ec, std::size_t transferred) {
                      self->on_written(ec, transferred);
                    });
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::on_written(const std::error_code& ec, std::size_t transferred) {
  write_in_flight_ = false;
  counters_.bytes_sent += transferred;
  if (phase_ == phase::closed)
    return;
  auto& b = *buffers_;
  if (ec) {
    fail(ec);
    return;
  }
  b.writing.clear();
  ++writes_done_;
  complete_sends_written_by(writes_done_);
  if (!b.pending.empty()) {
    write_pending();
    return;
  }
  if (phase_ == phase::draining) {
    shutdown_send();
    if (peer_finished_) {
      finish(reason_, close_detail_, {}, false);
      return;
    }
  }
  release_buffers_if_idle();
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::complete_sends_written_by(std::uint32_t write) {
  auto& waiting = buffers_->completions;
  std::size_t done = 0;
  while (done < waiting.size() && detail::reached(write, waiting[done].written_by))
    std::move(waiting[done++].handler).complete({});
  waiting.erase(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(done));
}

template <class Codec, liveness_policy Liveness>
bool connection<Codec, Liveness>::written(std::uint32_t write) const noexcept {
  return detail::reached(writes_done_, write);
}

template <class Codec, liveness_policy Liveness>
bool connection<Codec, Liveness>::unsent() const noexcept {
  return write_in_flight_ || (buffers_ && !buffers_->pending.empty());
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::wait_readable() {
  socket_.async_wait(socket_type::wait_read,
                     [self = this->shared_from_this()](const std::error_code& ec) { self->on_readable(ec); });
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::on_readable(const std::error_code& wait_error) {
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
  counters_.bytes_received += n;
  // While draining, what still arrives is read and dropped, so the close ends with FIN rather than RST.
  if (phase_ == phase::open) {
    note_received(false);
    reading_ = true;
    consume({scratch.data(), n});
    reading_ = false;
  }
  if (phase_ != phase::closed)
    wait_readable();
}

// Decodes every complete frame; a partial frame's bytes are kept for the next read.
template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::consume(std::string_view chunk) {
  const bool continuing = buffers_ && !buffers_->inbox.empty();
  if (continuing)
    buffers_->inbox.append(chunk);
  const std::string_view input = continuing ? std::string_view{buffers_->inbox} : chunk;

  std::size_t offset = 0;
  while (phase_ == phase::open) {
    const decoded frame = context_->codec.decode(input.substr(offset), decoder_state_);
    if (frame.status == decode_status::need_more)
      break;
    if (frame.status == decode_status::malformed) {
      finish(close_reason::protocol_error, frame.problem, {}, true);
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

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::dispatch(const decoded& frame) {
  if (frame.kind == frame_kind::data) {
    ++counters_.messages_received;
    note_received(true);
    if (context_->on_message)
      context_->on_message(*this, frame.payload);
    return;
  }
  on_control_frame({frame.kind, frame.payload});
}

// Strategies hear the frame first (a ping-flood limit may close before answering); a ping is then answered with
// its own payload, whatever the policy, so any tether peer's heartbeat works against any policy of ours.
template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::on_control_frame(const control_frame& frame) {
  if constexpr (Liveness::watches_control) {
    context_->liveness.on_control(liveness_state_, frame, liveness_clock::now(),
                                  [this](const verdict& v) { return carry_out(v, false); });
    if (phase_ != phase::open)
      return;
  }
  if (frame.kind == frame_kind::ping) {
    enqueue(frame_kind::pong, frame.payload);
  } else if (frame.kind == frame_kind::goaway) {
    peer_going_away_ = true;
    if (context_->on_goaway)
      context_->on_goaway(*this);
  }
  if constexpr (Liveness::timed) {
    if (phase_ == phase::open)
      schedule_liveness_check();
  }
}

// Carries out one verdict of the policy. A close that judges the peer (a deadline passed without news of it) is
// not carried out while the peer's bytes wait unread in our own receive queue: then this process is the one
// that fell behind, and the bytes are activity like any other.
template <class Codec, liveness_policy Liveness>
std::error_code connection<Codec, Liveness>::carry_out(const verdict& v, bool judges_the_peer) {
  switch (v.what()) {
  case verdict::action::none:
    return {};
  case verdict::action::send:
    if (!v.payload_fits())
      return error::frame_not_encodable;
    return enqueue(v.kind(), v.payload());
  case verdict::action::close:
    if (judges_the_peer && peer_bytes_waiting()) {
      note_received(true);
      return {};
    }
    close_for(v.reason(), v.detail());
    return {};
  case verdict::action::round_trip:
    if (context_->stats)
      context_->stats->record_heartbeat_rtt(v.measured_round_trip());
    if (context_->on_heartbeat)
      context_->on_heartbeat(*this, v.measured_round_trip());
    return {};
  }
  return {};
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::on_liveness_deadline(wheel_node& node) noexcept {
  if constexpr (Liveness::timed)
    static_cast<connection&>(node).check_liveness();
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::check_liveness() noexcept {
  if constexpr (Liveness::timed) {
    if (phase_ != phase::open)
      return;
    context_->liveness.on_deadline(liveness_state_, activity_, wheel_->now(),
                                   [this](const verdict& v) { return carry_out(v, true); });
    if (phase_ == phase::open)
      schedule_liveness_check();
  }
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::schedule_liveness_check() {
  if constexpr (Liveness::timed) {
    const auto deadline = context_->liveness.next_deadline(liveness_state_, activity_);
    if (deadline != liveness_clock::time_point::max())
      wheel_->schedule(*this, deadline);
    else
      wheel_->cancel(*this);
  }
}

template <class Codec, liveness_policy Liveness>
bool connection<Codec, Liveness>::peer_bytes_waiting() noexcept {
  std::error_code ec;
  const std::size_t waiting = socket_.available(ec);
  return !ec && waiting > 0;
}

// Stamps come from the clock itself, never from a value cached before this process stalled: a verdict compares
// them with the wheel's tick time, which is read when the tick runs. Inside a read, sends reuse the read's stamp.
// A policy with no deadline filed (every strategy answered time_point::max()) is asked again on activity.
template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::note_received(bool data) noexcept {
  if constexpr (Liveness::timed) {
    if (data) {
      activity_.data_received = reading_ ? activity_.received : liveness_clock::now();
      activity_.received = std::max(activity_.received, activity_.data_received);
    } else {
      activity_.received = liveness_clock::now();
    }
    if (!this->scheduled() && phase_ == phase::open)
      schedule_liveness_check();
  } else {
    (void)data;
  }
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::note_sent() noexcept {
  if constexpr (Liveness::timed) {
    activity_.data_sent = reading_ ? activity_.received : liveness_clock::now();
    if (!this->scheduled() && phase_ == phase::open)
      schedule_liveness_check();
  }
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::close_for(close_reason reason, std::string_view detail) {
  if (detail::closes_abortively(reason))
    finish(reason, detail, {}, true);
  else
    begin_graceful_close(reason, detail);
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::begin_graceful_close(close_reason reason, std::string_view detail) {
  if (phase_ != phase::open)
    return;
  phase_ = phase::draining;
  reason_ = reason;
  close_detail_ = detail;
  if constexpr (Liveness::timed)
    wheel_->cancel(*this);
  drain_timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor(), context_->options.graceful_close_timeout);
  drain_timer_->async_wait([self = this->shared_from_this()](const std::error_code& ec) {
    if (!ec)
      self->on_drain_deadline();
  });
  if (!write_in_flight_)
    shutdown_send();
  if (peer_finished_ && !unsent())
    finish(reason_, close_detail_, {}, false);
}

// The graceful period is over. Data the peer never took is discarded with a reset, and the close says so; when
// everything was delivered the peer has had our FIN, and the unread bytes are drained so that close() does not
// turn it into a reset.
template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::on_drain_deadline() {
  if (phase_ != phase::draining)
    return;
  if (unsent()) {
    close_detail_ = "the peer did not take the queued data within graceful_close_timeout; it was discarded";
    finish(reason_, close_detail_, {}, true);
    return;
  }
  auto& scratch = detail::read_scratch();
  std::error_code ec;
  while (!ec && socket_.read_some(asio::buffer(scratch), ec) > 0) {
  }
  finish(reason_, close_detail_, {}, false);
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::shutdown_send() {
  std::error_code ignored;
  socket_.shutdown(socket_type::shutdown_send, ignored);
}

// Maps a socket error to the reason the user sees.
template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::fail(const std::error_code& ec) {
  if (ec == asio::error::eof) {
    peer_finished();
    return;
  }
  const bool reset = ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
                     ec == asio::error::connection_aborted;
  if (reset && phase_ == phase::draining) {
    // The graceful close did not end as one: the reason and the stats say how it did end.
    reason_ = close_reason::peer_reset;
    close_detail_ = "the peer reset the connection during a graceful close";
    finish(reason_, close_detail_, ec, true);
  } else if (reset) {
    finish(close_reason::peer_reset, "the peer reset the connection", ec, true);
  } else if (ec == asio::error::timed_out) {
    finish(context_->liveness.kernel_timeout_reason(socket_.native_handle()), "the kernel timed the connection out",
           ec, true);
  } else if (ec == asio::error::operation_aborted) {
    finish(close_reason::local_close, "an operation was cancelled", ec, true);
  } else {
    finish(close_reason::io_error, "socket error", ec, true);
  }
}

// The peer sent FIN: it will send nothing more, but it may still read. What is queued for it is delivered (a
// half-closed peer gets every answer) before the connection closes, bounded by the graceful close timeout.
template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::peer_finished() {
  peer_finished_ = true;
  if (phase_ == phase::open) {
    const auto reason = going_away_ ? close_reason::shutdown : close_reason::peer_closed;
    const auto detail = going_away_ ? "the peer closed after our goaway" : "the peer closed the connection";
    if (unsent())
      begin_graceful_close(reason, detail);
    else
      finish(reason, detail, {}, false);
  } else if (!unsent()) {
    finish(reason_, close_detail_, {}, false);
  }
}

template <class Codec, liveness_policy Liveness>
void connection<Codec, Liveness>::finish(close_reason reason, std::string_view detail, std::error_code ec, bool abortive) {
  if (phase_ == phase::closed)
    return;
  phase_ = phase::closed;
  reason_ = reason;
  close_detail_ = detail;
  close_error_ = ec;
  discarded_bytes_ = queued_bytes();
  if constexpr (Liveness::timed)
    wheel_->cancel(*this);
  if (drain_timer_)
    drain_timer_->cancel();
  std::error_code ignored;
  if (abortive || discarded_bytes_ > 0)
    detail::set_socket_option(socket_.native_handle(), sockopt::linger::abortive());
  socket_.close(ignored);
  if (buffers_) {
    for (auto& waiting : buffers_->completions)
      std::move(waiting.handler).complete(make_error_code(reason_));
    buffers_->completions.clear();
    buffers_->pending.clear();
  }
  if (context_->stats)
    context_->stats->record_close(reason_);
  if (context_->on_close)
    context_->on_close(*this, reason_);
}

} // namespace tether

// The machinery of tether::connection (declared in tether/connection.hpp).
#pragma once

#include <tether/connection.hpp>
#include <tether/detail/kernel_send_progress.hpp>
#include <tether/detail/proxy_header.hpp>
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
  if (resume_reading_below > pause_reading_above)
    return error::resume_reading_above_pause;
  if (pause_reading_above != 0 && write_stall_timeout.count() <= 0)
    return error::write_stall_timeout_not_positive;
  if (busy_window.count() < 0)
    return error::busy_window_negative;
  return {};
}

namespace detail {

// Whose close is it: a peer that closed cleanly, is alive and merely idle, or meets a local decision gets a FIN
// after whatever is queued for it; everything else has a dead or misbehaving peer, where waiting only holds
// resources.
constexpr bool closes_abortively(close_reason reason) noexcept {
  return reason != close_reason::peer_closed && reason != close_reason::idle_timeout &&
         reason != close_reason::local_close && reason != close_reason::shutdown &&
         reason != close_reason::limit_exceeded && reason != close_reason::handshake_failed;
}

// A peer that broke the protocol or flooded us is alive: where the codec has a closing frame it is told why
// (WebSocket 1002, 1007, 1009, 1008) in a graceful close instead of a bare reset.
constexpr bool peer_hears_why(close_reason reason) noexcept {
  return reason == close_reason::protocol_error || reason == close_reason::ping_flood;
}

// A deadline's close that says the peer failed is not carried out while the peer's bytes wait unread; one that
// says the connection is done (its maximum age and grace are over) does not depend on the peer.
constexpr bool judges_the_peer(close_reason reason) noexcept { return reason != close_reason::max_age; }

// Write counters wrap; a write is done when the done counter has reached it.
constexpr bool reached(std::uint32_t counter, std::uint32_t target) noexcept {
  return static_cast<std::int32_t>(counter - target) >= 0;
}

} // namespace detail

template <class Codec, liveness_policy Liveness, class UserData>
std::shared_ptr<connection<Codec, Liveness, UserData>> connection<Codec, Liveness, UserData>::create(socket_type socket,
                                                                                const context_type& context,
                                                                                timer_wheel& wheel,
                                                                                const asio::ip::tcp::endpoint& accepted_from) {
  return std::make_shared<connection>(std::move(socket), context, wheel, accepted_from);
}

template <class Codec, liveness_policy Liveness, class UserData>
connection<Codec, Liveness, UserData>::connection(socket_type socket, const context_type& context, timer_wheel& wheel,
                                        const asio::ip::tcp::endpoint& accepted_from)
    : node_base(&connection::on_liveness_deadline), socket_(std::move(socket)), context_(&context), wheel_(&wheel),
      remote_(accepted_from) {}

// A wheel destroyed first has already unlinked the node, so only a node still filed is cancelled.
template <class Codec, liveness_policy Liveness, class UserData>
connection<Codec, Liveness, UserData>::~connection() {
  if constexpr (Liveness::timed) {
    if (this->scheduled())
      wheel_->cancel(*this);
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::start() {
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
  if (const proxy_details* via = proxy(); !via || via->local)
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
  begin_handshake();
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

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connection<Codec, Liveness, UserData>::send(std::string_view payload) {
  return send_message(frame_kind::data, payload);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connection<Codec, Liveness, UserData>::send_binary(std::string_view payload) {
  return send_message(frame_kind::binary, payload);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connection<Codec, Liveness, UserData>::send_message(frame_kind kind, std::string_view payload) {
  if (auto ec = enqueue(kind, payload))
    return ec;
  ++counters_.messages_sent;
  note_sent();
  return {};
}

template <class Codec, liveness_policy Liveness, class UserData>
template <class CompletionToken>
auto connection<Codec, Liveness, UserData>::async_send(std::string_view payload, CompletionToken&& token) {
  // Queued here, not in the initiation: a lazy token may initiate long after the payload's storage is gone.
  const bool before_handshake = !handshake_done_;
  const std::error_code queued = send(payload);
  const std::uint32_t written_by = queued || before_handshake
                                       ? 0
                                       : writes_started_ + (buffers_ && !buffers_->pending.empty() ? 1 : 0);
  return asio::async_initiate<CompletionToken, void(std::error_code)>(
      [self = this->shared_from_this(), queued, before_handshake, written_by](auto handler) {
        const auto executor = self->socket_.get_executor();
        using completion = detail::posted_completion<std::error_code>;
        if (queued) {
          completion::post(std::move(handler), executor, queued);
          return;
        }
        if (before_handshake && !self->handshake_done_ && self->phase_ != phase::closed) {
          self->buffers().completions.push_back({0, completion{std::move(handler), executor}, true});
          return;
        }
        // Queued before a handshake that has completed since: the write that carried it has started by now, so
        // the latest write started is a bound that is never early.
        const std::uint32_t by = before_handshake ? self->writes_started_ : written_by;
        if (self->handshake_done_ && self->written(by))
          completion::post(std::move(handler), executor, std::error_code{});
        else if (self->phase_ == phase::closed)
          completion::post(std::move(handler), executor, make_error_code(self->reason_));
        else
          self->buffers().completions.push_back({by, completion{std::move(handler), executor}});
      },
      token);
}

template <class Codec, liveness_policy Liveness, class UserData>
template <class CompletionToken>
auto connection<Codec, Liveness, UserData>::async_receive(CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(std::error_code, std::string)>(
      [self = this->shared_from_this()](auto handler) {
        self->begin_receive(receive_completion{std::move(handler), self->socket_.get_executor()});
      },
      token);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::begin_receive(receive_completion receiver) {
  rarely_used& slot = rare();
  if (slot.waiting) {
    std::move(receiver).complete(error::receive_pending, {});
    return;
  }
  if (slot.held) {
    std::string message = std::move(*slot.held);
    slot.held.reset();
    std::move(receiver).complete({}, std::move(message));
    resume(paused_by_held_message);
    return;
  }
  if (phase_ == phase::closed) {
    std::move(receiver).complete(make_error_code(reason_), {});
    return;
  }
  slot.waiting.emplace(std::move(receiver));
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::pause_reading() {
  pause(paused_by_user);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::resume_reading() {
  resume(paused_by_user);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::pause(std::uint8_t reason) {
  if (phase_ != phase::open || (paused_ & reason))
    return;
  paused_ |= reason;
  // Before a handshake nothing can be written, and the handshake's own deadline bounds the wait.
  if (reason == paused_by_queue && handshake_done_)
    watch_write_stall(counters_.bytes_sent);
}

// Frames read before the pause are decoded first; then the socket is read again. Posted, so that a resume from
// inside a handler does not deliver the next message inside that handler.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::resume(std::uint8_t reason) {
  if (!(paused_ & reason))
    return;
  paused_ &= static_cast<std::uint8_t>(~reason);
  if (paused_ == 0 && phase_ == phase::open)
    asio::post(socket_.get_executor(), [self = this->shared_from_this()] { self->continue_reading(); });
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::continue_reading() {
  if (phase_ != phase::open || paused_ != 0)
    return;
  if (buffers_ && !buffers_->inbox.empty())
    consume({});
  if (phase_ == phase::open && paused_ == 0 && reader_ == reader::none)
    read_next(false);
}

// Paused for the write queue, the connection must still see the peer take data; one that takes nothing for
// write_stall_timeout would otherwise hold the connection forever.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::watch_write_stall(std::uint64_t sent_before) {
  timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor(), context_->options.write_stall_timeout);
  timer_->async_wait([self = this->shared_from_this(), sent_before](const std::error_code& ec) {
    if (ec || self->phase_ != phase::open || !(self->paused_ & paused_by_queue))
      return;
    if (self->counters_.bytes_sent == sent_before)
      self->finish(close_reason::backpressure,
                   "the peer took nothing for write_stall_timeout while reading was paused for the write queue", {},
                   true);
    else
      self->watch_write_stall(self->counters_.bytes_sent);
  });
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connection<Codec, Liveness, UserData>::send_goaway(std::string_view payload)
  requires Codec::carries_control_frames
{
  return go_away(close_reason::shutdown, "asked to leave with a goaway", payload);
}

// The reason and detail wait in reason_ and close_detail_ for the close the goaway leads to.
template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connection<Codec, Liveness, UserData>::go_away(close_reason why, const char* detail,
                                                               std::string_view payload) {
  if (phase_ != phase::open)
    return error::connection_not_open;
  if constexpr (!Codec::carries_control_frames || stream_ending_goaway_codec<Codec>) {
    (void)payload;
    going_away_ = true;
    begin_graceful_close(why, detail);
    return {};
  } else {
    if (auto ec = enqueue(frame_kind::goaway, payload))
      return ec;
    going_away_ = true;
    reason_ = why;
    close_detail_ = detail;
    return {};
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::close(close_reason why) {
  begin_graceful_close(why, "closed by this side");
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::abort(close_reason why) {
  finish(why, "reset by this side", {}, true);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::size_t connection<Codec, Liveness, UserData>::queued_bytes() const noexcept {
  return buffers_ ? buffers_->held.size() + buffers_->pending.size() + buffers_->writing.size() : 0;
}

template <class Codec, liveness_policy Liveness, class UserData>
auto connection<Codec, Liveness, UserData>::buffers() -> io_buffers& {
  if (!buffers_)
    buffers_ = std::make_unique<io_buffers>();
  return *buffers_;
}

template <class Codec, liveness_policy Liveness, class UserData>
auto connection<Codec, Liveness, UserData>::rare() -> rarely_used& {
  if (!rare_)
    rare_ = std::make_unique<rarely_used>();
  return *rare_;
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::release_buffers_if_idle() noexcept {
  if (buffers_ && !buffers_->incoming && buffers_->inbox.empty() && buffers_->held.empty() &&
      buffers_->pending.empty() && !write_in_flight_ && buffers_->completions.empty())
    buffers_.reset();
}

// Tells the budget what this connection buffers now. Input that grew (a partial frame) is judged here, after the
// read that grew it: false when that closed this connection.
template <class Codec, liveness_policy Liveness, class UserData>
bool connection<Codec, Liveness, UserData>::settle_budget(bool judge_growth) {
  buffer_budget* budget = context_->budget;
  if (!budget || !buffers_ || phase_ == phase::closed)
    return phase_ != phase::closed;
  const auto buffered = [this] {
    const io_buffers& b = *buffers_;
    return b.inbox.size() + b.held.size() + b.pending.size() + b.writing.size();
  };
  const std::size_t held = buffers_->budget_share.bytes();
  if (judge_growth && buffered() > held && !budget->make_room(buffers_->budget_share, buffered() - held)) {
    finish(close_reason::over_budget,
           "a partial frame found the buffer budget used up by connections holding less than this one; it was "
           "discarded",
           {}, true);
    return false;
  }
  // A handler of a connection the budget closed may have closed this one too.
  if (phase_ == phase::closed || !buffers_)
    return phase_ != phase::closed;
  budget->settle(buffers_->budget_share, buffered(), this, &connection::evict_for_budget);
  return true;
}

// Runs inside another connection's growth; the listener's registry may hold the last reference.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::evict_for_budget(void* self) noexcept {
  const auto keep = static_cast<connection*>(self)->weak_from_this().lock();
  static_cast<connection*>(self)->finish(
      close_reason::over_budget,
      "closed to make room in the buffer budget: it held more buffered data than the connection that needed room; "
      "what it buffered was discarded",
      {}, true);
}

template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connection<Codec, Liveness, UserData>::enqueue(frame_kind kind, std::string_view payload) {
  if (phase_ != phase::open)
    return error::connection_not_open;
  auto& b = buffers();
  const std::size_t queued = b.held.size() + b.pending.size() + b.writing.size();
  const std::size_t limit =
      context_->options.write_high_water + (kind == frame_kind::data ? 0 : connection_options::control_allowance);
  if (queued + payload.size() > limit) {
    if (context_->options.on_overflow == connection_options::overflow::close) {
      finish(close_reason::backpressure, "the write queue passed its high-water mark", {}, true);
    } else {
      refused_send_ = true;
      release_buffers_if_idle();
    }
    return error::write_queue_full;
  }
  const bool control = kind != frame_kind::data && kind != frame_kind::binary;
  if (!control && context_->budget && !context_->budget->make_room(b.budget_share, payload.size())) {
    if (phase_ != phase::open)
      return error::connection_not_open;  // closed by a handler of a connection the budget closed
    if (context_->options.on_overflow == connection_options::overflow::close)
      finish(close_reason::over_budget,
             "a send found the buffer budget used up by connections holding less than this one; its queue was "
             "discarded",
             {}, true);
    else
      release_buffers_if_idle();
    return error::buffer_budget_exhausted;
  }
  if (!encode_frame(context_->codec, kind, payload, decoder_state_, handshake_done_ ? b.pending : b.held)) {
    release_buffers_if_idle();
    return error::frame_not_encodable;
  }
  settle_budget(false);
  const auto pause_above = context_->options.pause_reading_above;
  if (pause_above != 0 && queued_bytes() > pause_above)
    pause(paused_by_queue);
  if (!write_in_flight_ && !b.pending.empty()) {
    write_pending();
    release_buffers_if_idle();
  }
  return {};
}

// A codec with a handshake: what this side says first goes out at once (a client's request), frames wait for
// the handshake to complete, and the whole exchange is bounded by the codec's handshake_timeout.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::begin_handshake() {
  if constexpr (handshaking_codec<Codec>) {
    std::string opening;
    context_->codec.begin_handshake(decoder_state_, opening);
    if (!opening.empty()) {
      buffers().pending = std::move(opening);
      write_pending();
    }
    timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor(), context_->codec.handshake_timeout);
    timer_->async_wait([self = this->shared_from_this()](const std::error_code& ec) {
      if (!ec && !self->handshake_done_ && self->phase_ == phase::open)
        self->finish(close_reason::handshake_failed, "the handshake did not complete within handshake_timeout", {},
                     true);
    });
    // A handshake that needs nothing from the peer (a codec passing plain TCP through) completes here.
    consume({});
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::complete_handshake(std::string_view reply) {
  handshake_done_ = true;
  if (timer_)
    timer_->cancel();
  if (paused_ & paused_by_queue)
    watch_write_stall(counters_.bytes_sent);
  auto& b = buffers();
  b.pending.append(reply);
  b.pending.append(b.held);
  std::string{}.swap(b.held);
  // The next write carries them, whether one is in flight now or not.
  for (auto& waiting : b.completions) {
    if (waiting.after_handshake) {
      waiting.written_by = writes_started_ + 1;
      waiting.after_handshake = false;
    }
  }
  // Once per connection, so the asynchronous way costs nothing that matters; written directly it measured 96 B
  // more heap per idle WebSocket connection (benchmarks/memory), for a cause not pinned down yet.
  if (!write_in_flight_ && !b.pending.empty())
    write_pending(false);
}

// The reply (an HTTP error status) goes out in place of anything queued, which the refused handshake made
// unsendable, and the connection closes gracefully after it.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::reject_handshake(std::string_view reply, const char* problem) {
  handshake_done_ = true;
  if (timer_)
    timer_->cancel();
  auto& b = buffers();
  std::string{}.swap(b.held);
  b.pending.append(reply);
  if (!write_in_flight_ && !b.pending.empty())
    write_pending();
  begin_graceful_close(close_reason::handshake_failed, problem);
}

namespace detail {
// Asio on io_uring (ASIO_HAS_IO_URING with ASIO_DISABLE_EPOLL) submits the writes it is given together, once per
// turn of its loop, so there a direct send would add the very system call it saves on epoll (measured:
// benchmarks/RESULTS.md, section 12).
#if defined(ASIO_HAS_IO_URING_AS_DEFAULT)
inline constexpr bool writes_directly = false;
#else
inline constexpr bool writes_directly = true;
#endif
} // namespace detail

// Most writes fit the socket's send buffer: one non-blocking send then completes them without an asynchronous
// operation. Only an open connection whose queue is not holding reading back writes directly, so no drain
// handler or close step runs inside the send() that queued the bytes; the rest, and any error, take the
// asynchronous path, which reports from a handler of its own. The buffers stay: the caller may still hold them.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::write_pending(bool directly) {
  auto& b = *buffers_;
  if (detail::writes_directly && directly && phase_ == phase::open && !(paused_ & paused_by_queue) && !refused_send_) {
    std::error_code ec;
    const std::size_t n = socket_.write_some(asio::buffer(b.pending), ec);
    if (!ec && n > 0) {
      counters_.bytes_sent += n;
      if (n == b.pending.size()) {
        b.pending.clear();
        ++writes_started_;
        ++writes_done_;
        settle_budget(false);
        complete_sends_written_by(writes_done_);
        return;
      }
      b.pending.erase(0, n);
    }
  }
  b.writing.swap(b.pending);
  write_in_flight_ = true;
  ++writes_started_;
  asio::async_write(socket_, asio::buffer(b.writing),
                    [self = this->shared_from_this()](const std::error_code& ec, std::size_t transferred) {
                      self->on_written(ec, transferred);
                    });
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::on_written(const std::error_code& ec, std::size_t transferred) {
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
  settle_budget(false);
  complete_sends_written_by(writes_done_);
  if ((paused_ & paused_by_queue) || refused_send_) {
    if (b.pending.size() <= context_->options.resume_reading_below) {
      refused_send_ = false;
      resume(paused_by_queue);
      if (context_->on_drain)
        context_->on_drain(*this);
      if (phase_ == phase::closed)
        return;
    }
  }
  if (!b.pending.empty())
    write_pending();
  if (write_in_flight_)
    return;
  if (phase_ == phase::draining) {
    shutdown_send();
    if (peer_finished_) {
      finish(reason_, close_detail_, {}, false);
      return;
    }
  }
  release_buffers_if_idle();
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::complete_sends_written_by(std::uint32_t write) {
  auto& waiting = buffers_->completions;
  std::size_t done = 0;
  while (done < waiting.size() && !waiting[done].after_handshake && detail::reached(write, waiting[done].written_by))
    std::move(waiting[done++].handler).complete({});
  waiting.erase(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(done));
}

template <class Codec, liveness_policy Liveness, class UserData>
bool connection<Codec, Liveness, UserData>::written(std::uint32_t write) const noexcept {
  return detail::reached(writes_done_, write);
}

template <class Codec, liveness_policy Liveness, class UserData>
bool connection<Codec, Liveness, UserData>::unsent() const noexcept {
  return write_in_flight_ || (buffers_ && !buffers_->pending.empty());
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::wait_readable() {
  reader_ = reader::waiting;
  socket_.async_wait(socket_type::wait_read,
                     [self = this->shared_from_this()](const std::error_code& ec) { self->on_readable(ec); });
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::on_readable(const std::error_code& wait_error) {
  reader_ = reader::none;
  if (phase_ == phase::closed)
    return;
  if (wait_error) {
    fail(wait_error);
    return;
  }
  // Paused: the bytes stay in the kernel's receive queue, where TCP's flow control slows the peer down.
  if (paused_ != 0 && phase_ == phase::open)
    return;
  auto& scratch = detail::read_scratch();
  std::error_code ec;
  const std::size_t n = socket_.read_some(asio::buffer(scratch), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    wait_readable();
    return;
  }
  on_input(ec, {scratch.data(), n});
}

// Asio tries a read at once and files it with the reactor only when nothing is there, and a descriptor it
// already watches needs no epoll_ctl for that, unlike a wait for readiness, which re-arms it every time.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::read_busy() {
  auto& b = buffers();
  if (!b.incoming) {
    b.incoming = std::make_unique<std::array<char, connection_options::busy_read_size>>();
    // The wheel node may be filed far ahead (a heartbeat interval): it must come back to give the buffer back.
    schedule_liveness_check();
  }
  reader_ = reader::reading;
  socket_.async_read_some(asio::buffer(*b.incoming),
                          [self = this->shared_from_this()](const std::error_code& ec, std::size_t n) {
                            self->on_read(ec, n);
                          });
}

// A request answered at once: its peer sends the next one only after reading the answer, so a read tried right
// away fails (a wasted system call) where one tried after the completions already queued, the reply's among
// them, often finds the next request there. Posted rather than chained to the reply's completion, so that a
// reply the peer is slow to take never holds up reading.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::read_busy_after_reply() {
  reader_ = reader::posted;
  asio::post(socket_.get_executor(), [self = this->shared_from_this()] {
    if (self->reader_ != reader::posted)
      return;
    self->reader_ = reader::none;
    if (self->phase_ == phase::open && self->paused_ == 0)
      self->read_busy();
    else if (self->phase_ == phase::draining)
      self->read_next(false);
  });
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::on_read(const std::error_code& ec, std::size_t n) {
  const bool gave_back = reader_ == reader::giving_back;
  reader_ = reader::none;
  if (phase_ == phase::closed)
    return;
  if (gave_back && ec == asio::error::operation_aborted) {
    give_back_read_buffer();
    if (phase_ == phase::draining || (phase_ == phase::open && paused_ == 0))
      wait_readable();
    return;
  }
  // A read that completed before the cancel reached it: the connection was not idle after all.
  on_input(ec, {buffers_->incoming->data(), n});
}

// The bytes live in the thread's scratch or in the busy buffer, which only give_back_read_buffer releases, so
// they outlast whatever the handlers do.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::on_input(const std::error_code& ec, std::string_view bytes) {
  if (ec) {
    fail(ec);
    return;
  }
  counters_.bytes_received += bytes.size();
  bool busy = false;
  const std::uint32_t writes_before = writes_started_;
  // While draining, what still arrives is read and dropped, so the close ends with FIN rather than RST.
  if (phase_ == phase::open) {
    busy = note_read();
    reading_ = true;
    consume(bytes);
    reading_ = false;
  }
  if (phase_ == phase::draining || (phase_ == phase::open && paused_ == 0))
    read_next(busy, writes_started_ != writes_before);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::read_next(bool busy, bool replied) {
  if (busy && phase_ == phase::open) {
    if (replied)
      read_busy_after_reply();
    else
      read_busy();
    return;
  }
  give_back_read_buffer();
  wait_readable();
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::give_back_read_buffer() noexcept {
  if (buffers_ && buffers_->incoming) {
    buffers_->incoming.reset();
    release_buffers_if_idle();
  }
}

// While a write is in flight the buffer stays: cancelling the read would cancel the write with it.
template <class Codec, liveness_policy Liveness, class UserData>
auto connection<Codec, Liveness, UserData>::give_back_at() const noexcept -> liveness_clock::time_point {
  if constexpr (Liveness::timed) {
    const auto due = activity_.received + context_->options.busy_window;
    return write_in_flight_ ? std::max(due, wheel_->now() + context_->options.busy_window) : due;
  } else {
    return liveness_clock::time_point::max();
  }
}

// Decodes every complete frame, until a handler pauses reading; the bytes left are kept for later.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::consume(std::string_view chunk) {
  const bool continuing = buffers_ && !buffers_->inbox.empty();
  if (continuing)
    buffers_->inbox.append(chunk);
  const std::string_view input = continuing ? std::string_view{buffers_->inbox} : chunk;
  if (refuse_proxy_header_) {
    switch (detail::proxy_signature_in(input)) {
    case detail::proxy_signature::present:
      close_for(close_reason::protocol_error, "a PROXY protocol header from a source that is not trusted to send one");
      return;
    case detail::proxy_signature::undecided:
      if (!continuing)
        buffers().inbox.assign(input);
      return;
    case detail::proxy_signature::absent:
      refuse_proxy_header_ = false;
      break;
    }
  }

  std::size_t offset = 0;
  while (phase_ == phase::open && paused_ == 0) {
    const decoded frame = context_->codec.decode(input.substr(offset), decoder_state_);
    if (frame.status == decode_status::need_more)
      break;
    if (frame.status == decode_status::malformed) {
      close_for(close_reason::protocol_error, frame.problem.data());
      if (phase_ == phase::closed)
        return;
      break;
    }
    if (frame.status == decode_status::partial) {
      offset += frame.consumed;
      continue;
    }
    if (frame.status == decode_status::reply) {
      offset += frame.consumed;
      auto& b = buffers();
      b.pending.append(frame.payload);
      if (!write_in_flight_ && !b.pending.empty())
        write_pending();
      continue;
    }
    if (frame.status == decode_status::handshake) {
      offset += frame.consumed;
      complete_handshake(frame.payload);
      continue;
    }
    if (frame.status == decode_status::rejected) {
      reject_handshake(frame.payload, frame.problem.data());
      if (phase_ == phase::closed)
        return;
      break;
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
  if (!settle_budget(true))
    return;
  release_buffers_if_idle();
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::dispatch(const decoded& frame) {
  if (frame.kind == frame_kind::data || frame.kind == frame_kind::binary) {
    received_binary_ = frame.kind == frame_kind::binary;
    ++counters_.messages_received;
    note_received(true);
    if (rare_ && rare_->waiting) {
      auto receiver = std::move(*rare_->waiting);
      rare_->waiting.reset();
      std::move(receiver).complete({}, std::string{frame.payload});
    } else if (context_->on_message) {
      context_->on_message(*this, frame.payload);
    } else {
      rare().held.emplace(frame.payload);
      pause(paused_by_held_message);
    }
    return;
  }
  on_control_frame({frame.kind, frame.payload});
}

// Strategies hear the frame first (a ping-flood limit may close before answering); a ping is then answered with
// its own payload, whatever the policy, so any tether peer's heartbeat works against any policy of ours.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::on_control_frame(const control_frame& frame) {
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
      context_->on_goaway(*this, frame.payload);
    // Its last frame: the peer sends nothing more, and the protocol wants our closing frame back.
    if constexpr (stream_ending_goaway_codec<Codec>) {
      if (phase_ == phase::open)
        begin_graceful_close(going_away_ ? reason_ : close_reason::peer_closed, "the peer sent its closing frame");
      return;
    }
  }
  if constexpr (Liveness::timed) {
    if (phase_ == phase::open)
      schedule_liveness_check();
  }
}

// Carries out one verdict of the policy. A close that judges the peer (a deadline passed without news of it) is
// not carried out while the peer's bytes wait unread in our own receive queue: then this process is the one
// that fell behind, and the bytes are activity like any other.
template <class Codec, liveness_policy Liveness, class UserData>
std::error_code connection<Codec, Liveness, UserData>::carry_out(const verdict& v, bool judges_the_peer) {
  switch (v.what()) {
  case verdict::action::none:
    return {};
  case verdict::action::send:
    if (!v.payload_fits())
      return error::frame_not_encodable;
    return enqueue(v.kind(), v.payload());
  case verdict::action::goaway:
    if (going_away_)
      return {};
    return go_away(v.reason(), v.detail(), v.payload());
  case verdict::action::close:
    if (judges_the_peer && detail::judges_the_peer(v.reason()) && peer_bytes_waiting()) {
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

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::on_liveness_deadline(wheel_node& node) noexcept {
  if constexpr (Liveness::timed)
    static_cast<connection&>(node).check_liveness();
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::check_liveness() noexcept {
  if constexpr (Liveness::timed) {
    if (phase_ != phase::open)
      return;
    if (buffers_ && buffers_->incoming && wheel_->now() >= give_back_at()) {
      if (reader_ == reader::reading) {
        reader_ = reader::giving_back;
        std::error_code ignored;
        socket_.cancel(ignored);
      } else if (reader_ == reader::none) {
        give_back_read_buffer();
      }
    }
    if constexpr (Liveness::watches_progress)
      note_acknowledged_progress();
    context_->liveness.on_deadline(liveness_state_, activity_, wheel_->now(),
                                   [this](const verdict& v) { return carry_out(v, true); });
    if (phase_ == phase::open)
      schedule_liveness_check();
  }
}

// The peer acknowledging more of a transfer still in flight is alive and reading, though its answers may wait
// behind our bytes: that moment counts as received and sent.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::note_acknowledged_progress() noexcept {
  const auto seen = detail::read_kernel_send_progress(socket_.native_handle(), queued_bytes() > 0);
  if (!seen)
    return;
  const auto proof = context_->liveness.on_progress(liveness_state_, *seen, wheel_->now());
  if (proof == liveness_clock::time_point{})
    return;
  activity_.received = std::max(activity_.received, proof);
  activity_.data_sent = std::max(activity_.data_sent, proof);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::schedule_liveness_check() {
  if constexpr (Liveness::timed) {
    auto deadline = context_->liveness.next_deadline(liveness_state_, activity_);
    if (buffers_ && buffers_->incoming && reader_ != reader::giving_back)
      deadline = std::min(deadline, give_back_at());
    if (deadline != liveness_clock::time_point::max())
      wheel_->schedule(*this, deadline);
    else
      wheel_->cancel(*this);
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
bool connection<Codec, Liveness, UserData>::peer_bytes_waiting() noexcept {
  std::error_code ec;
  const std::size_t waiting = socket_.available(ec);
  return !ec && waiting > 0;
}

// Stamps come from the clock itself, never from a value cached before this process stalled: a verdict compares
// them with the wheel's tick time, which is read when the tick runs. Inside a read, sends reuse the read's stamp.
// A policy with no deadline filed (every strategy answered time_point::max()) is asked again on activity.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::note_received(bool data) noexcept {
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

template <class Codec, liveness_policy Liveness, class UserData>
bool connection<Codec, Liveness, UserData>::note_read() noexcept {
  if constexpr (Liveness::timed) {
    const auto previous = activity_.received;
    note_received(false);
    const auto window = context_->options.busy_window;
    if (window.count() <= 0 || activity_.received - previous >= window)
      quick_reads_ = 0;
    else if (quick_reads_ < busy_after_quick_reads)
      ++quick_reads_;
    return quick_reads_ >= busy_after_quick_reads;
  } else {
    return false;
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::note_sent() noexcept {
  if constexpr (Liveness::timed) {
    activity_.data_sent = reading_ ? activity_.received : liveness_clock::now();
    if (!this->scheduled() && phase_ == phase::open)
      schedule_liveness_check();
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::close_for(close_reason reason, const char* detail) {
  bool abortive = detail::closes_abortively(reason);
  if constexpr (closing_frame_codec<Codec>)
    abortive = abortive && !(handshake_done_ && detail::peer_hears_why(reason));
  if (abortive)
    finish(reason, detail, {}, true);
  else
    begin_graceful_close(reason, detail);
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::begin_graceful_close(close_reason reason, const char* detail) {
  if (phase_ != phase::open)
    return;
  phase_ = phase::draining;
  reason_ = reason;
  close_detail_ = detail;
  if constexpr (Liveness::timed)
    wheel_->cancel(*this);
  // The protocol's closing frame goes after what is queued, before our FIN.
  if constexpr (closing_frame_codec<Codec>) {
    if (handshake_done_ && reason != close_reason::handshake_failed) {
      auto& b = buffers();
      if (context_->codec.encode_close(reason, decoder_state_, b.pending) && !write_in_flight_)
        write_pending();
      settle_budget(false);
    }
  }
  timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor(), context_->options.graceful_close_timeout);
  timer_->async_wait([self = this->shared_from_this()](const std::error_code& ec) {
    if (!ec)
      self->on_drain_deadline();
  });
  if (!write_in_flight_)
    shutdown_send();
  // What still arrives is read and dropped, also where reading was paused.
  if (reader_ == reader::none && !peer_finished_)
    read_next(false);
  if (peer_finished_ && !unsent())
    finish(reason_, close_detail_, {}, false);
}

// The graceful period is over. Data the peer never took is discarded with a reset, and the close says so; when
// everything was delivered the peer has had our FIN, and the unread bytes are drained so that close() does not
// turn it into a reset.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::on_drain_deadline() {
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

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::shutdown_send() {
  std::error_code ignored;
  socket_.shutdown(socket_type::shutdown_send, ignored);
}

// Maps a socket error to the reason the user sees.
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::fail(const std::error_code& ec) {
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
template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::peer_finished() {
  peer_finished_ = true;
  if (phase_ == phase::open) {
    const auto reason = going_away_ ? reason_ : close_reason::peer_closed;
    const auto detail = going_away_ ? close_detail_ : "the peer closed the connection";
    if (unsent())
      begin_graceful_close(reason, detail);
    else
      finish(reason, detail, {}, false);
  } else if (!unsent()) {
    finish(reason_, close_detail_, {}, false);
  }
}

template <class Codec, liveness_policy Liveness, class UserData>
void connection<Codec, Liveness, UserData>::finish(close_reason reason, const char* detail, std::error_code ec, bool abortive) {
  if (phase_ == phase::closed)
    return;
  phase_ = phase::closed;
  reason_ = reason;
  close_detail_ = detail;
  close_error_ = ec;
  if constexpr (Liveness::timed)
    wheel_->cancel(*this);
  if (timer_)
    timer_->cancel();
  sockopt::tcp_info at_close{};
  const bool kernel_view = context_->on_tcp_info_at_close && !tether::get_option(socket_, at_close);
  std::error_code ignored;
  if (abortive || queued_bytes() > 0)
    detail::set_socket_option(socket_.native_handle(), sockopt::linger::abortive());
  socket_.close(ignored);
  if (buffers_) {
    buffers_->budget_share.leave();
    for (auto& waiting : buffers_->completions)
      std::move(waiting.handler).complete(make_error_code(reason_));
    buffers_->completions.clear();
  }
  if (rare_ && rare_->waiting) {
    auto receiver = std::move(*rare_->waiting);
    rare_->waiting.reset();
    std::move(receiver).complete(make_error_code(reason_), {});
  }
  if (context_->stats)
    context_->stats->record_close(reason_);
  if (kernel_view)
    context_->on_tcp_info_at_close(*this, reason_, at_close);
  if (context_->on_close)
    context_->on_close(*this, reason_);
}

} // namespace tether

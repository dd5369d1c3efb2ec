// tether::connection<Codec, Liveness, UserData>: one TCP connection with framing, liveness and a close reason.
//
// A connection owns its socket, reads frames through its codec, answers the peer's pings, carries out the
// verdicts of its liveness policy (tether::liveness<S...>, the only liveness it knows), and queues writes up to
// a high-water mark. It closes exactly once; the context's on_close handler then runs with the reason, and no
// handler of that connection runs after it.
//
//   tether::connection_context<tether::line_codec, decltype(policy)> context{.liveness = policy};
//   context.on_message = [](auto& conn, std::string_view line) { conn.send(line); };
//   context.on_close = [](auto& conn, tether::close_reason why) { fmt::print("{}: {}\n", why, conn.close_detail()); };
//   auto conn = tether::connection<tether::line_codec, decltype(policy)>::create(std::move(socket), context, wheel);
//   conn->start();
//
// How each close looks to the peer (docs/guide.md has the full table):
//   graceful (peer_closed, idle_timeout, local_close, shutdown): what is queued is delivered, then FIN; bytes
//     that still arrive are read and discarded until the peer's FIN or graceful_close_timeout, so the peer sees
//     FIN, not RST. Queued data the peer does not take within graceful_close_timeout is discarded with a RST,
//     and the close says so (discarded_bytes(), close_detail()).
//   abortive (every other reason): RST at once; discarded_bytes() counts what was still queued.
//
// Threading: a connection lives on the one thread that runs its io_context; call its members from there
// (e.g. through asio::post). Nothing on the hot path takes a lock.
//
// Memory: an idle connection holds no read or write buffer. Reads wait for readiness and then read into a
// per-thread scratch buffer; only a partial frame or unsent data makes a connection allocate, and the buffers
// are released again once they are empty. A busy connection (one with a timed liveness strategy that has read
// three times in a row, each within connection_options::busy_window of the read before or of the open) keeps
// its buffers and reads straight into a buffer of its own, as a plain Asio session does: no readiness re-arm
// and no allocation per message. It gives them back once it has read nothing for busy_window.
//
// Handlers must not throw: they can run from the timer wheel, which cannot propagate exceptions.
#pragma once

#include <tether/buffer_budget.hpp>
#include <tether/close_reason.hpp>
#include <tether/codec/codec.hpp>
#include <tether/codec/frame.hpp>
#include <tether/detail/posted_completion.hpp>
#include <tether/error.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/proxy_protocol.hpp>
#include <tether/socket_options.hpp>
#include <tether/stats.hpp>
#include <tether/timer_wheel.hpp>

#include <asio/async_result.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace tether {

struct connection_options {
  // Bytes queued but not yet written (encoded frames) above which the peer is not keeping up.
  std::size_t write_high_water = 4 * 1024 * 1024;
  // close: the connection closes with backpressure. refuse: send() returns write_queue_full and the caller
  // decides (drop, retry later); the connection stays open.
  enum class overflow : std::uint8_t { close, refuse };
  overflow on_overflow = overflow::close;
  // How long a graceful close waits for queued data to drain and for the peer's FIN.
  std::chrono::milliseconds graceful_close_timeout{std::chrono::seconds{5}};
  bool no_delay = true;

  // Backpressure on input: reading pauses while more than pause_reading_above bytes are queued for the peer and
  // resumes once the queue is down to resume_reading_below, so TCP's own flow control slows a fast producer
  // facing a slow reader, instead of the connection closing for backpressure. 0 turns the automatic pause off.
  std::size_t pause_reading_above = 0;
  std::size_t resume_reading_below = 0;
  // A connection whose reading is paused for its write queue, and which writes nothing for this long, has a peer
  // that neither reads nor lets us go: it closes with backpressure.
  std::chrono::milliseconds write_stall_timeout{std::chrono::seconds{30}};

  // A connection whose third read in a row comes within this long of the read before (the open counts as the
  // first one's predecessor) is busy: it keeps its buffers and a read buffer of busy_read_size bytes, and reads
  // into it without waiting for readiness first, which saves a system call and two allocations per message.
  // Three, so that a handshake (a WebSocket upgrade, a TLS ClientHello and Finished) followed by silence leaves
  // a connection idle. Once it has read nothing for this long (checked on its timer-wheel ticks) it gives them
  // back. 0 keeps every connection on the idle path. Only connections whose liveness has a timed strategy (they
  // own a wheel node) become busy.
  std::chrono::milliseconds busy_window{std::chrono::seconds{1}};
  static constexpr std::size_t busy_read_size = 4096;

  // Control frames (pings, pongs, goaways: a few bytes each) may pass the high-water mark by this much, so that
  // liveness keeps talking while data is refused.
  static constexpr std::size_t control_allowance = 4096;

  std::error_code validate() const noexcept;
};

// What one connection has carried, counted as it happens.
struct connection_counters {
  std::uint64_t bytes_received = 0;     // every byte read, framing and control frames included
  std::uint64_t bytes_sent = 0;         // every byte the kernel took, framing and control frames included
  std::uint64_t messages_received = 0;  // data frames handed to on_message
  std::uint64_t messages_sent = 0;      // data frames queued by send() and async_send()
};

// The application's per-connection state is a connection's third template parameter (set it in on_accept or
// on_connect, read it from every handler); this is the default, which costs nothing.
struct no_user_data {};

template <class Codec, liveness_policy Liveness, class UserData>
class connection;

// What every connection of one server or client shares: framing, liveness policy, options, handlers and where
// to count. Must outlive its connections.
template <class Codec, liveness_policy Liveness = liveness<>, class UserData = no_user_data>
struct connection_context {
  using connection_type = connection<Codec, Liveness, UserData>;

  Codec codec{};
  Liveness liveness{};
  connection_options options{};
  std::function<void(connection_type&, std::string_view)> on_message{};
  std::function<void(connection_type&, close_reason)> on_close{};
  // A strategy measured a round trip (heartbeat: a pong answered our ping).
  std::function<void(connection_type&, std::chrono::microseconds)> on_heartbeat{};
  // The peer announced it is going away, with the goaway's payload (a reconnect hint, tether/reconnect_hint.hpp).
  std::function<void(connection_type&, std::string_view payload)> on_goaway{};
  // The write queue is down to resume_reading_below after it passed pause_reading_above or refused a send:
  // a producer can go on.
  std::function<void(connection_type&)> on_drain{};
  // Where set, runs just before on_close with the kernel's view of the connection (TCP_INFO: round trip,
  // retransmissions, segments unacknowledged) as it stood when the connection closed: what a postmortem of a
  // timeout needs. Only where the platform has TCP_INFO (Linux); costs one system call per close when set.
  std::function<void(connection_type&, close_reason, const sockopt::tcp_info&)> on_tcp_info_at_close{};
  tether::stats* stats = nullptr;
  // Where set, the connections' partial frames and queued output stay within it together, the largest holders
  // closed first (tether/buffer_budget.hpp). It belongs to the thread that runs these connections.
  buffer_budget* budget = nullptr;
};

namespace detail {

template <class Codec, liveness_policy Liveness, class UserData>
class listener_shard;

struct no_wheel_node {
  constexpr explicit no_wheel_node(wheel_node::expiry_handler) noexcept {}
};

// Connections with a timed strategy are filed in the timer wheel through this base; others carry nothing.
template <bool Timed>
using liveness_node_base = std::conditional_t<Timed, wheel_node, no_wheel_node>;

// Activity stamps exist only where a timed strategy reads them; otherwise nothing is stored or clocked.
struct no_activity {};
template <bool Timed>
using activity_record = std::conditional_t<Timed, activity, no_activity>;

} // namespace detail

template <class Codec, liveness_policy Liveness = liveness<>, class UserData = no_user_data>
class connection : public std::enable_shared_from_this<connection<Codec, Liveness, UserData>>,
                   private detail::liveness_node_base<Liveness::timed> {
  static_assert(detail::check_codec<Codec>());
  static_assert(!Liveness::needs_control_frames || Codec::carries_control_frames,
                "tether: this liveness policy sends ping/pong control frames (heartbeat), but the codec carries "
                "bytes only; use tether::line_codec or tether::length_prefixed_codec instead of raw_codec");

public:
  using codec_type = Codec;
  using liveness_type = Liveness;
  using context_type = connection_context<Codec, Liveness, UserData>;
  using user_data_type = UserData;
  using socket_type = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
  using executor_type = asio::io_context::executor_type;

  // `accepted_from` is the address the accept returned; it names the peer when the connection is reset before
  // start() can ask the socket.
  static std::shared_ptr<connection> create(socket_type socket, const context_type& context, timer_wheel& wheel,
                                            const asio::ip::tcp::endpoint& accepted_from = {});
  connection(socket_type socket, const context_type& context, timer_wheel& wheel,
             const asio::ip::tcp::endpoint& accepted_from = {});
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  // Applies the socket options of the liveness policy, starts reading and the liveness checks. A peer that
  // already reset closes the connection at once with peer_reset; a socket option the platform refuses, with
  // io_error and the option's error.
  void start();

  // Queues one data frame. Fails with connection_not_open once closing, frame_not_encodable when the codec
  // cannot carry the payload, write_queue_full over the high-water mark (which also closes the connection
  // with backpressure unless the options say refuse), and buffer_budget_exhausted when the context's budget has
  // no room and no other connection holds more (which also closes it with over_budget unless the options say
  // refuse; nothing announces when room frees up). The payload is encoded before send() returns.
  std::error_code send(std::string_view payload);
  // The same as a binary message where the codec tells binary from text (WebSocket); as data elsewhere.
  std::error_code send_binary(std::string_view payload);
  // Whether the message on_message or async_receive is delivering arrived as binary (WebSocket).
  bool received_binary() const noexcept { return received_binary_; }

  // Queues one data frame like send(), at once, before returning, whatever the token: the payload is never read
  // after async_send returns, so a temporary is safe even with lazy tokens (asio::deferred, an awaitable stored
  // before it is awaited). Completes, with Asio's completion-token convention (a callback taking
  // std::error_code, asio::use_future, asio::use_awaitable, asio::deferred...), once the frame has been handed
  // to the kernel: with send()'s error at once, or with the close reason (an error_code of
  // close_reason_category) if the connection closes before the frame is written.
  template <class CompletionToken>
  auto async_send(std::string_view payload, CompletionToken&& token);

  // Completes with the next data frame, with Asio's completion-token convention and the signature
  // void(std::error_code, std::string). Where each message goes: to a pending async_receive if there is one;
  // otherwise to the context's on_message if it is set; otherwise it is held (one message at most) and reading
  // pauses until an async_receive takes it, so nothing is buffered without bound and nothing is dropped. One
  // receive at a time: a second one while one is pending completes with error::receive_pending. Once the
  // connection has closed (and any held message was taken) it completes with the close reason.
  template <class CompletionToken>
  auto async_receive(CompletionToken&& token);

  // Stops reading after the frame being handled; frames already read wait for resume_reading(). While paused,
  // bytes the peer sent wait in our receive queue, and a liveness close that would judge the peer is not carried
  // out on their account; the peer's own pings are not answered until reading resumes.
  void pause_reading();
  void resume_reading();
  bool reading_paused() const noexcept { return (paused_ & paused_by_user) != 0; }
  // Queues a goaway and keeps serving: the peer should finish what it has in flight and close. The listener's
  // stop() sends it; on_close then reports shutdown when the peer closes. Where a goaway is the last frame of
  // the stream (WebSocket's close), this is a graceful close whose closing frame says "going away" (1001).
  std::error_code send_goaway(std::string_view payload = {})
    requires Codec::carries_control_frames;

  // The codec's per-connection state, for what a codec tells about its stream (the WebSocket close code the
  // peer sent, the subprotocol agreed).
  const typename Codec::decoder_state& codec_state() const noexcept { return decoder_state_; }

  // Graceful close: flush what is queued, send FIN, discard what still arrives until the peer's FIN (up to
  // options.graceful_close_timeout), then close. on_close reports `why`.
  void close(close_reason why = close_reason::local_close);

  // Abortive close: discard queued data and reset the connection (RST, no TIME_WAIT).
  void abort(close_reason why = close_reason::local_close);

  bool is_open() const noexcept { return phase_ == phase::open; }
  bool is_closed() const noexcept { return phase_ == phase::closed; }
  bool peer_going_away() const noexcept { return peer_going_away_; }
  bool going_away() const noexcept { return going_away_; }
  // Whether it keeps a read buffer of its own for now, being busy (connection_options::busy_window).
  bool busy() const noexcept { return buffers_ && buffers_->incoming; }

  // Meaningful once on_close has run.
  close_reason reason() const noexcept { return reason_; }
  std::string_view close_detail() const noexcept { return close_detail_; }
  std::error_code close_error() const noexcept { return close_error_; }
  // Bytes queued for the peer that the close threw away (an abortive close, or a drain that timed out); what was
  // still queued stays counted here after the close.
  std::size_t discarded_bytes() const noexcept { return phase_ == phase::closed ? queued_bytes() : 0; }

  // The peer: the client, for a connection a trusted balancer brought with a PROXY protocol header.
  const asio::ip::tcp::endpoint& remote() const noexcept { return remote_; }
  // The balancer a PROXY protocol header came from, and what it said; null for a connection without one.
  const proxy_details* proxy() const noexcept { return rare_ && rare_->proxy ? &*rare_->proxy : nullptr; }
  socket_type& socket() noexcept { return socket_; }
  executor_type get_executor() noexcept { return socket_.get_executor(); }
  const context_type& context() const noexcept { return *context_; }
  std::size_t queued_bytes() const noexcept;
  const connection_counters& counters() const noexcept { return counters_; }

  // The application's state for this connection, value-initialised; only where UserData is given.
  UserData& user_data() noexcept
    requires(!std::is_same_v<UserData, no_user_data>)
  {
    return user_data_;
  }
  const UserData& user_data() const noexcept
    requires(!std::is_same_v<UserData, no_user_data>)
  {
    return user_data_;
  }

  // When bytes last arrived and left, for policies with a timed strategy (others keep no stamps).
  const activity& last_activity() const noexcept
    requires Liveness::timed
  {
    return activity_;
  }

  // One strategy's per-connection state: heartbeat round trips, for instance.
  template <class Strategy>
  const typename Strategy::state& liveness_state() const noexcept
    requires(Liveness::template has<Strategy>)
  {
    return Liveness::template state_of<Strategy>(liveness_state_);
  }

  // Changes one strategy's per-connection state (its runtime parameters: a peer-declared keep-alive, a learned
  // interval) and asks the policy for its next deadline again, so the change takes effect at once.
  template <class Strategy, class Change>
  void update_liveness(Change&& change)
    requires(Liveness::template has<Strategy>)
  {
    std::forward<Change>(change)(Liveness::template state_of<Strategy>(liveness_state_));
    if (phase_ == phase::open)
      schedule_liveness_check();
  }

private:
  template <class, liveness_policy, class>
  friend class detail::listener_shard;
  using node_base = detail::liveness_node_base<Liveness::timed>;
  enum class phase : std::uint8_t { created, open, draining, closed };

  // Allocated while a partial frame or unsent data exists; an idle connection has none.
  struct io_buffers {
    std::string inbox;    // bytes of an incomplete frame, or frames read while reading was paused
    std::string held;     // frames encoded before the codec's handshake was done, sent right after it
    std::string pending;  // encoded frames waiting for the write in flight
    std::string writing;  // the frames of the write in flight
    struct completion {
      std::uint32_t written_by;  // the write whose success completes it
      detail::posted_completion<std::error_code> handler;
      bool after_handshake = false;  // queued before the handshake: written by the write that follows it
    };
    std::vector<completion> completions;  // async_send callers, in write order
    detail::budget_share budget_share;    // what of the context's budget these buffers hold
    // A busy connection's read buffer (see connection_options::busy_window); none otherwise.
    std::unique_ptr<std::array<char, connection_options::busy_read_size>> incoming;
  };
  // What the pending read is: a wait for readability (then a read into the thread's scratch), a read into the
  // busy connection's own buffer, such a read cancelled to give the buffer back, or one posted to start after
  // the reply just written.
  enum class reader : std::uint8_t { none, waiting, reading, giving_back, posted };
  using receive_completion = detail::posted_completion<std::error_code, std::string>;
  // What few connections use, allocated on first use: the receive side of async_receive (a waiting receiver,
  // or one message waiting for a receiver) and what a balancer's PROXY protocol header said.
  struct rarely_used {
    std::optional<receive_completion> waiting;
    std::optional<std::string> held;
    std::optional<proxy_details> proxy;
  };
  // Why reading is paused; reading runs only when none holds.
  static constexpr std::uint8_t paused_by_user = 1;
  static constexpr std::uint8_t paused_by_queue = 2;
  static constexpr std::uint8_t paused_by_held_message = 4;
  static constexpr std::uint8_t busy_after_quick_reads = 3;

  io_buffers& buffers();
  rarely_used& rare();
  void release_buffers_if_idle() noexcept;
  bool settle_budget(bool judge_growth);
  static void evict_for_budget(void* self) noexcept;
  std::error_code enqueue(frame_kind kind, std::string_view payload);
  void write_pending(bool directly = true);
  void on_written(const std::error_code& ec, std::size_t transferred);
  void complete_sends_written_by(std::uint32_t write);
  bool written(std::uint32_t write) const noexcept;
  bool unsent() const noexcept;

  void begin_receive(receive_completion receiver);
  void pause(std::uint8_t reason);
  void resume(std::uint8_t reason);
  void continue_reading();
  void watch_write_stall(std::uint64_t sent_before);
  void wait_readable();
  void on_readable(const std::error_code& wait_error);
  void read_busy();
  void read_busy_after_reply();
  void on_read(const std::error_code& ec, std::size_t n);
  void on_input(const std::error_code& ec, std::string_view bytes);
  void read_next(bool busy, bool replied = false);
  bool note_read() noexcept;
  void give_back_read_buffer() noexcept;
  liveness_clock::time_point give_back_at() const noexcept;
  void consume(std::string_view chunk);
  void dispatch(const decoded& frame);
  void on_control_frame(const control_frame& frame);
  void complete_handshake(std::string_view reply);
  void reject_handshake(std::string_view reply, const char* problem);
  void begin_handshake();
  std::error_code send_message(frame_kind kind, std::string_view payload);
  std::error_code carry_out(const verdict& v, bool judges_the_peer);
  std::error_code go_away(close_reason why, const char* detail, std::string_view payload);

  static void on_liveness_deadline(wheel_node& node) noexcept;
  void check_liveness() noexcept;
  void note_acknowledged_progress() noexcept;
  void schedule_liveness_check();
  bool peer_bytes_waiting() noexcept;
  void note_received(bool data) noexcept;
  void note_sent() noexcept;

  void close_for(close_reason reason, const char* detail);
  void begin_graceful_close(close_reason reason, const char* detail);
  void on_drain_deadline();
  void shutdown_send();
  void fail(const std::error_code& ec);
  void peer_finished();
  void finish(close_reason reason, const char* detail, std::error_code ec, bool abortive);

  socket_type socket_;
  const context_type* context_;
  timer_wheel* wheel_;
  [[no_unique_address]] detail::activity_record<Liveness::timed> activity_{};
  [[no_unique_address]] typename Liveness::state liveness_state_{};
  [[no_unique_address]] typename Codec::decoder_state decoder_state_{};
  std::unique_ptr<io_buffers> buffers_;
  std::unique_ptr<asio::steady_timer> timer_;  // the graceful close's deadline, or the write-stall check
  std::unique_ptr<rarely_used> rare_;
  connection_counters counters_{};
  [[no_unique_address]] UserData user_data_{};
  asio::ip::tcp::endpoint remote_{};
  std::uint32_t registry_slot_ = 0;  // where a listener's shard files it
  std::error_code close_error_{};
  const char* close_detail_ = "";  // always a string literal
  std::uint32_t writes_started_ = 0;
  std::uint32_t writes_done_ = 0;
  phase phase_ = phase::created;
  close_reason reason_ = close_reason::local_close;
  bool write_in_flight_ = false;
  bool peer_going_away_ = false;
  bool going_away_ = false;
  bool peer_finished_ = false;
  bool reading_ = false;  // inside on_readable: sends reuse the read's activity stamp
  reader reader_ = reader::none;
  bool handshake_done_ = !handshaking_codec<Codec>;  // frames are written only once the codec's handshake is
  bool received_binary_ = false;
  bool refused_send_ = false;  // a send was refused for the high-water mark since the queue last drained
  bool refuse_proxy_header_ = false;  // from an untrusted source of a listener that takes PROXY protocol headers
  std::uint8_t paused_ = 0;
  std::uint8_t quick_reads_ = 0;  // reads in a row, each within busy_window of the previous one or of the open
};

} // namespace tether

#include <tether/impl/connection.hpp>

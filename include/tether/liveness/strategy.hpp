// What a liveness strategy is: the one contract through which all liveness works.
//
// A strategy is the configuration aggregate a user writes (durations, counts) plus a small per-connection
// `state`. The connection never names a strategy: it talks to tether::liveness<S...>, which calls these hooks
// and nothing else. The built-in strategies (tcp_keepalive, user_timeout, heartbeat, idle_reaper) are written
// against this contract alone, so a strategy written outside the library can do everything they do.
//
// | member                | declaration (exactly, `const noexcept` included)                     | called                                                        | may                                      |
// |-----------------------|----------------------------------------------------------------------|---------------------------------------------------------------|------------------------------------------|
// | state                 | a nested default-constructible type                                  | one per connection, value-initialised                         | hold counters and runtime parameters     |
// | needs_control_frames  | static constexpr bool                                                | at compile time                                               | demand a codec with ping/pong/goaway     |
// | apply                 | std::error_code apply(native_socket) const noexcept                  | once, when the connection opens, before its first read       | set socket options; an error closes (io_error) |
// | on_open               | void on_open(state&, liveness_clock::time_point now) const noexcept  | once, when the connection opens                               | initialise state                         |
// | next_deadline         | liveness_clock::time_point next_deadline(const state&, const activity&) const noexcept | after open, after every verdict and control frame, and on activity while no deadline is filed | return time_point::max() for "none"      |
// | on_deadline           | verdict on_deadline(state&, const activity&, liveness_clock::time_point now) const noexcept | at the first wheel tick at or after the earliest deadline of any strategy of the connection | check its own deadline; answer none, send, goaway or close |
// | on_control            | verdict on_control(state&, const control_frame&, liveness_clock::time_point now) const noexcept | when a ping, pong or goaway arrives, before the automatic pong | none, send, close, or report a round trip |
// | on_sent               | void on_sent(state&, const control_frame&, std::error_code, liveness_clock::time_point now) const noexcept | right after this strategy's send verdict was queued (empty error) or refused | commit what the send means (a ping is only outstanding once queued) |
// | on_progress           | liveness_clock::time_point on_progress(state&, const send_progress&, liveness_clock::time_point now) const noexcept | before each deadline check, with the kernel's send counters (where the platform has them) | answer when the peer last acknowledged bytes of a transfer still in flight, or time_point{} for none: the connection then counts that moment as received and sent |
// | kernel_timeout_reason | static constexpr close_reason                                        | the kernel ended the connection with ETIMEDOUT               | name the close reason (needs apply)      |
// | validate              | std::error_code validate() const noexcept                            | by listener::start and connector::start, before any connection | refuse numbers that cannot work, naming the field |
//
// A strategy models at least one hook. next_deadline and on_deadline come as a pair, on_sent needs a hook that
// can answer with a send, kernel_timeout_reason needs apply, on_progress needs next_deadline/on_deadline. A member with one of these names but another
// declaration (a non-const on_deadline, a missing noexcept, a template) is a compile error naming the member,
// never a hook that silently does not run; so is an on_deadline whose next_deadline is misspelled.
//
// Time: `now` and the activity stamps share one clock; stamps are taken when the connection handled the bytes
// and are never earlier than that moment. Activity is recorded only for policies with a timed strategy.
//
// The exemplar, compiled by this header's tests and quoted in docs/api.md, is docs/examples/custom_strategy.cpp.
#pragma once

#include <tether/close_reason.hpp>
#include <tether/codec/frame.hpp>
#include <tether/socket_options.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace tether {

using liveness_clock = std::chrono::steady_clock;

// When the connection last handled bytes of each kind.
struct activity {
  liveness_clock::time_point received{};       // any byte, data or control: proof the peer is alive
  liveness_clock::time_point data_received{};  // application data only: what the idle reaper watches
  liveness_clock::time_point data_sent{};
};

// What the kernel says about the bytes this side sent, read before a deadline check (Linux TCP_INFO).
struct send_progress {
  std::uint64_t bytes_acked = 0;       // the peer acknowledged this many bytes since the connection opened
  bool in_flight = false;              // bytes still wait: unacknowledged, unsent in the kernel, or queued by us
  liveness_clock::time_point last_ack{};  // when the last acknowledgement (of anything) arrived
};

// A control frame that arrived, or one a strategy asked to send.
struct control_frame {
  frame_kind kind = frame_kind::ping;
  std::string_view payload{};
};

// A strategy's answer to a hook.
class verdict {
public:
  enum class action : std::uint8_t {
    none,        // nothing to do
    send,        // queue this control frame; the strategy hears the outcome through on_sent
    close,       // close the connection with this reason and detail
    round_trip,  // the peer answered; report the measured round trip (stats, on_heartbeat)
    goaway,      // ask the peer to leave (a goaway frame); the close that follows reports this reason
  };
  // The longest control payload every codec with control frames carries (WebSocket's limit). A longer one is
  // refused with error::frame_not_encodable through on_sent.
  static constexpr std::size_t max_payload = 125;

  static constexpr verdict none() noexcept { return verdict{}; }

  static constexpr verdict send(frame_kind kind, std::string_view payload = {}) noexcept {
    verdict v;
    v.what_ = action::send;
    v.kind_ = kind;
    v.payload_size_ = payload.size();
    std::copy_n(payload.begin(), std::min(payload.size(), max_payload), v.payload_.begin());
    return v;
  }

  // `detail` must outlive the connection: a string literal.
  static constexpr verdict close(close_reason reason, const char* detail) noexcept {
    verdict v;
    v.what_ = action::close;
    v.reason_ = reason;
    v.detail_ = detail;
    return v;
  }

  // The connection sends a goaway carrying `payload` and keeps serving; when the peer then closes, the close
  // reports `reason` and `detail` (a string literal). Over a codec without control frames, or one whose goaway
  // ends the stream (WebSocket's close), it is a graceful close with that reason. Ignored while the connection
  // is already going away.
  static constexpr verdict goaway(close_reason reason, const char* detail, std::string_view payload = {}) noexcept {
    verdict v = send(frame_kind::goaway, payload);
    v.what_ = action::goaway;
    v.reason_ = reason;
    v.detail_ = detail;
    return v;
  }

  static constexpr verdict round_trip(std::chrono::microseconds measured) noexcept {
    verdict v;
    v.what_ = action::round_trip;
    v.rtt_ = measured;
    return v;
  }

  constexpr action what() const noexcept { return what_; }
  constexpr frame_kind kind() const noexcept { return kind_; }
  constexpr bool payload_fits() const noexcept { return payload_size_ <= max_payload; }
  constexpr std::string_view payload() const noexcept {
    return {payload_.data(), std::min(payload_size_, max_payload)};
  }
  constexpr control_frame frame() const noexcept { return {kind_, payload()}; }
  constexpr close_reason reason() const noexcept { return reason_; }
  constexpr const char* detail() const noexcept { return detail_; }
  constexpr std::chrono::microseconds measured_round_trip() const noexcept { return rtt_; }

private:
  std::array<char, max_payload> payload_{};
  std::size_t payload_size_ = 0;
  const char* detail_ = "";
  std::chrono::microseconds rtt_{0};
  action what_ = action::none;
  frame_kind kind_ = frame_kind::ping;
  close_reason reason_ = close_reason::local_close;
};

namespace detail {

// Whether T has a member of this name in any form (function, overload set, template, data member): T and a
// probe holding one member of that name are combined, and naming the member through the combination is
// ambiguous exactly when T has one too. This is what lets a hook with the wrong declaration fail loudly.
#define TETHER_DETAIL_MEMBER_PROBE(member)                                                                    \
  struct probe_for_##member {                                                                                 \
    int member;                                                                                               \
  };                                                                                                          \
  template <class T>                                                                                          \
  struct probe_combined_##member : T, probe_for_##member {};                                                  \
  template <class T>                                                                                          \
  constexpr bool names_##member() {                                                                           \
    if constexpr (std::is_class_v<T> && !std::is_final_v<T>)                                                  \
      return !requires { &probe_combined_##member<T>::member; };                                              \
    else                                                                                                      \
      return requires { &T::member; };                                                                        \
  }

TETHER_DETAIL_MEMBER_PROBE(apply)
TETHER_DETAIL_MEMBER_PROBE(on_open)
TETHER_DETAIL_MEMBER_PROBE(next_deadline)
TETHER_DETAIL_MEMBER_PROBE(on_deadline)
TETHER_DETAIL_MEMBER_PROBE(on_control)
TETHER_DETAIL_MEMBER_PROBE(on_sent)
TETHER_DETAIL_MEMBER_PROBE(on_progress)
TETHER_DETAIL_MEMBER_PROBE(kernel_timeout_reason)
TETHER_DETAIL_MEMBER_PROBE(needs_control_frames)
TETHER_DETAIL_MEMBER_PROBE(state)
TETHER_DETAIL_MEMBER_PROBE(validate)
#undef TETHER_DETAIL_MEMBER_PROBE

template <class S>
using validate_hook = std::error_code (S::*)() const noexcept;
template <class S>
using apply_hook = std::error_code (S::*)(native_socket) const noexcept;
template <class S>
using on_open_hook = void (S::*)(typename S::state&, liveness_clock::time_point) const noexcept;
template <class S>
using next_deadline_hook = liveness_clock::time_point (S::*)(const typename S::state&, const activity&) const noexcept;
template <class S>
using on_deadline_hook = verdict (S::*)(typename S::state&, const activity&, liveness_clock::time_point) const noexcept;
template <class S>
using on_control_hook = verdict (S::*)(typename S::state&, const control_frame&, liveness_clock::time_point) const noexcept;
template <class S>
using on_sent_hook =
    void (S::*)(typename S::state&, const control_frame&, std::error_code, liveness_clock::time_point) const noexcept;
template <class S>
using on_progress_hook = liveness_clock::time_point (S::*)(typename S::state&, const send_progress&,
                                                          liveness_clock::time_point) const noexcept;

// Each hook as declared exactly; a near miss (no const, no noexcept, other parameters) is not the hook.
template <class S>
concept exact_validate = requires { &S::validate; } && std::is_same_v<decltype(&S::validate), validate_hook<S>>;
template <class S>
concept exact_apply = requires { &S::apply; } && std::is_same_v<decltype(&S::apply), apply_hook<S>>;
template <class S>
concept exact_on_open = requires { &S::on_open; } && std::is_same_v<decltype(&S::on_open), on_open_hook<S>>;
template <class S>
concept exact_next_deadline =
    requires { &S::next_deadline; } && std::is_same_v<decltype(&S::next_deadline), next_deadline_hook<S>>;
template <class S>
concept exact_on_deadline =
    requires { &S::on_deadline; } && std::is_same_v<decltype(&S::on_deadline), on_deadline_hook<S>>;
template <class S>
concept exact_on_control = requires { &S::on_control; } && std::is_same_v<decltype(&S::on_control), on_control_hook<S>>;
template <class S>
concept exact_on_sent = requires { &S::on_sent; } && std::is_same_v<decltype(&S::on_sent), on_sent_hook<S>>;
template <class S>
concept exact_on_progress =
    requires { &S::on_progress; } && std::is_same_v<decltype(&S::on_progress), on_progress_hook<S>>;

} // namespace detail

// The hooks a strategy models.
template <class S>
concept socket_option_strategy = detail::exact_apply<S>;
template <class S>
concept opening_strategy = detail::exact_on_open<S>;
template <class S>
concept timed_strategy = detail::exact_next_deadline<S> && detail::exact_on_deadline<S>;
template <class S>
concept control_watching_strategy = detail::exact_on_control<S>;
template <class S>
concept send_observing_strategy = detail::exact_on_sent<S>;
template <class S>
concept validating_strategy = detail::exact_validate<S>;
template <class S>
concept progress_watching_strategy = timed_strategy<S> && detail::exact_on_progress<S>;
template <class S>
concept kernel_timeout_strategy = socket_option_strategy<S> && requires {
  { S::kernel_timeout_reason } -> std::convertible_to<close_reason>;
};

namespace detail {

// Every rule of the table, each as a static_assert that names the member, so a mistake reads as a sentence.
template <class S>
consteval bool check_strategy() {
  static_assert(names_state<S>(), "tether strategy: needs a nested `struct state {};` (empty when it keeps nothing)");
  if constexpr (names_state<S>()) {
    static_assert(std::default_initializable<typename S::state>, "tether strategy: `state` must be default-constructible");
  }
  static_assert(std::copy_constructible<S>, "tether strategy: the strategy must be copy-constructible");
  static_assert(names_needs_control_frames<S>(),
                "tether strategy: needs `static constexpr bool needs_control_frames` (true when it sends ping/pong)");
  if constexpr (names_needs_control_frames<S>()) {
    static_assert(requires { typename std::bool_constant<S::needs_control_frames>; },
                  "tether strategy: `needs_control_frames` must be a static constexpr bool");
  }
  if constexpr (names_state<S>()) {
    static_assert(!names_apply<S>() || exact_apply<S>,
                  "tether strategy: `apply` must be declared `std::error_code apply(tether::native_socket) const noexcept`");
    static_assert(!names_on_open<S>() || exact_on_open<S>,
                  "tether strategy: `on_open` must be declared "
                  "`void on_open(state&, tether::liveness_clock::time_point now) const noexcept`");
    static_assert(!names_next_deadline<S>() || exact_next_deadline<S>,
                  "tether strategy: `next_deadline` must be declared `tether::liveness_clock::time_point "
                  "next_deadline(const state&, const tether::activity&) const noexcept`");
    static_assert(!names_on_deadline<S>() || exact_on_deadline<S>,
                  "tether strategy: `on_deadline` must be declared `tether::verdict on_deadline(state&, const "
                  "tether::activity&, tether::liveness_clock::time_point now) const noexcept`");
    static_assert(names_next_deadline<S>() == names_on_deadline<S>(),
                  "tether strategy: `next_deadline` and `on_deadline` come as a pair (is one of them misspelled?)");
    static_assert(!names_on_control<S>() || exact_on_control<S>,
                  "tether strategy: `on_control` must be declared `tether::verdict on_control(state&, const "
                  "tether::control_frame&, tether::liveness_clock::time_point now) const noexcept`");
    static_assert(!names_on_sent<S>() || exact_on_sent<S>,
                  "tether strategy: `on_sent` must be declared `void on_sent(state&, const tether::control_frame&, "
                  "std::error_code, tether::liveness_clock::time_point now) const noexcept`");
    static_assert(!names_on_sent<S>() || names_on_deadline<S>() || names_on_control<S>(),
                  "tether strategy: `on_sent` reports the outcome of a send, but neither `on_deadline` nor "
                  "`on_control` can ask for one");
    static_assert(!names_on_progress<S>() || exact_on_progress<S>,
                  "tether strategy: `on_progress` must be declared `tether::liveness_clock::time_point "
                  "on_progress(state&, const tether::send_progress&, tether::liveness_clock::time_point now) const "
                  "noexcept`");
    static_assert(!names_on_progress<S>() || names_on_deadline<S>(),
                  "tether strategy: `on_progress` is called before a deadline check, so it needs "
                  "`next_deadline`/`on_deadline`");
    static_assert(!names_kernel_timeout_reason<S>() || kernel_timeout_strategy<S>,
                  "tether strategy: `kernel_timeout_reason` needs `apply` (the kernel mechanism it names) and must "
                  "be a static constexpr tether::close_reason");
    static_assert(!names_validate<S>() || exact_validate<S>,
                  "tether strategy: `validate` must be declared `std::error_code validate() const noexcept`");
    static_assert(names_apply<S>() || names_on_open<S>() || names_on_deadline<S>() || names_on_control<S>(),
                  "tether strategy: models no hook (apply, on_open, next_deadline/on_deadline, on_control); see "
                  "the table in tether/liveness/strategy.hpp");
  }
  return true;
}

} // namespace detail

// A type that passes every rule above.
template <class S>
concept liveness_strategy = detail::names_state<S>() && detail::names_needs_control_frames<S>() &&
                            std::copy_constructible<S> && std::default_initializable<typename S::state> &&
                            (socket_option_strategy<S> || opening_strategy<S> || timed_strategy<S> ||
                             control_watching_strategy<S>);

} // namespace tether

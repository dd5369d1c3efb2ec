// tether::liveness<S...>: the strategies a connection runs, chosen at compile time, and the only thing about
// liveness a connection knows.
//
//   auto policy = tether::liveness{tether::tcp_keepalive{.idle = 60s, .interval = 10s, .count = 3},
//                                  tether::heartbeat{.interval = 15s, .timeout = 5s}};
//
// The strategy types decide what code exists; their fields are runtime values. Per-connection state is a tuple
// of the strategies' states (empty for kernel strategies, so they cost no bytes), and however many timed
// strategies there are, a connection owns one timer-wheel node: the earliest deadline wins. The fold calls each
// strategy's hooks (tether/liveness/strategy.hpp) and hands every verdict to the connection, which carries it out
// and reports a send's outcome back to the strategy that asked for it.
#pragma once

#include <tether/liveness/strategy.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tether {

template <class... Strategies>
class liveness {
  static_assert((detail::check_strategy<Strategies>() && ...));

  template <class S>
  static constexpr std::size_t occurrences = (std::size_t{std::is_same_v<S, Strategies>} + ... + 0);
  static_assert(((occurrences<Strategies> == 1) && ...), "tether::liveness: each strategy may appear only once");

  static constexpr std::size_t timed_count = (std::size_t{timed_strategy<Strategies>} + ... + 0);

  template <class S>
  static constexpr std::size_t index_of = [] {
    std::size_t index = 0;
    (void)((!std::is_same_v<S, Strategies> && (++index, true)) && ...);
    return index;
  }();

public:
  using state = std::tuple<typename Strategies::state...>;

  template <class S>
  static constexpr bool has = occurrences<S> == 1;
  static constexpr bool needs_control_frames = (Strategies::needs_control_frames || ... || false);
  // Whether the connection keeps activity stamps and a wheel node: only when some strategy has deadlines.
  static constexpr bool timed = timed_count > 0;
  static constexpr bool watches_control = (control_watching_strategy<Strategies> || ... || false);
  static constexpr bool opens = (opening_strategy<Strategies> || ... || false);
  static constexpr bool watches_progress = (progress_watching_strategy<Strategies> || ... || false);

  constexpr liveness() = default;
  constexpr explicit liveness(Strategies... strategies)
    requires(sizeof...(Strategies) > 0)
      : strategies_{std::move(strategies)...} {}

  template <class S>
  constexpr const S& get() const noexcept
    requires(has<S>)
  {
    return std::get<S>(strategies_);
  }

  // One strategy's part of a connection's state (see connection::liveness_state).
  template <class S>
  static constexpr typename S::state& state_of(state& states) noexcept
    requires(has<S>)
  {
    return std::get<index_of<S>>(states);
  }
  template <class S>
  static constexpr const typename S::state& state_of(const state& states) noexcept
    requires(has<S>)
  {
    return std::get<index_of<S>>(states);
  }

  // The first strategy's refusal of its own numbers (an error naming the field), or none.
  std::error_code validate() const noexcept {
    std::error_code ec;
    std::apply([&](const auto&... strategy) { (void)((ec = validate_one(strategy), !ec) && ...); }, strategies_);
    return ec;
  }

  // Applies every kernel strategy's socket options, stopping at the first the platform refuses.
  std::error_code apply(native_socket socket) const noexcept {
    std::error_code ec;
    std::apply([&](const auto&... strategy) { (void)((ec = apply_one(strategy, socket), !ec) && ...); }, strategies_);
    return ec;
  }

  void on_open(state& states, liveness_clock::time_point now) const noexcept {
    each([&](const auto& strategy, auto& s) {
      if constexpr (opening_strategy<std::remove_cvref_t<decltype(strategy)>>)
        strategy.on_open(s, now);
    }, states);
  }

  liveness_clock::time_point next_deadline(const state& states, const activity& seen) const noexcept {
    auto earliest = liveness_clock::time_point::max();
    each([&](const auto& strategy, const auto& s) {
      if constexpr (timed_strategy<std::remove_cvref_t<decltype(strategy)>>)
        earliest = std::min(earliest, strategy.next_deadline(s, seen));
    }, states);
    return earliest;
  }

  // The kernel's send counters, before a deadline check: the latest moment any strategy counts as proof of life,
  // or time_point{} for none.
  liveness_clock::time_point on_progress(state& states, const send_progress& seen,
                                         liveness_clock::time_point now) const noexcept {
    liveness_clock::time_point latest{};
    each([&](const auto& strategy, auto& s) {
      if constexpr (progress_watching_strategy<std::remove_cvref_t<decltype(strategy)>>)
        latest = std::max(latest, strategy.on_progress(s, seen, now));
    }, states);
    return latest;
  }

  // Asks every timed strategy, then acts: when any answers close, the first close is the only verdict carried
  // out (a ping queued just before a close would be wasted); otherwise every send and round trip is, in order.
  // act(verdict) carries one out and returns the outcome of a send, which goes back to its strategy's on_sent
  // with the moment of the send.
  template <class Act>
  void on_deadline(state& states, const activity& seen, liveness_clock::time_point now, Act&& act) const {
    std::array<verdict, timed_count> verdicts{};
    std::size_t asked = 0;
    each([&](const auto& strategy, auto& s) {
      if constexpr (timed_strategy<std::remove_cvref_t<decltype(strategy)>>)
        verdicts[asked++] = strategy.on_deadline(s, seen, now);
    }, states);
    carry_out<timed_strategy_tag>(verdicts, states, act);
  }

  // A control frame arrived: every strategy that watches them sees it; verdicts are carried out as above.
  template <class Act>
  void on_control(state& states, const control_frame& frame, liveness_clock::time_point now, Act&& act) const {
    if constexpr (watches_control) {
      std::array<verdict, control_count> verdicts{};
      std::size_t asked = 0;
      each([&](const auto& strategy, auto& s) {
        if constexpr (control_watching_strategy<std::remove_cvref_t<decltype(strategy)>>)
          verdicts[asked++] = strategy.on_control(s, frame, now);
      }, states);
      carry_out<control_strategy_tag>(verdicts, states, act);
    } else {
      (void)states, (void)frame, (void)now, (void)act;
    }
  }

  // The kernel ended the connection with ETIMEDOUT: name the strategy responsible. With both keepalive and a
  // user timeout, outstanding keepalive probes mean keepalive gave up.
  close_reason kernel_timeout_reason(native_socket socket) const noexcept {
    constexpr std::size_t kernel_strategies = (std::size_t{kernel_timeout_strategy<Strategies>} + ... + 0);
    if constexpr (kernel_strategies == 0) {
      (void)socket;
      return close_reason::io_error;
    } else if constexpr (kernel_strategies == 1) {
      (void)socket;
      close_reason reason = close_reason::io_error;
      ((kernel_timeout_strategy<Strategies> ? (void)(reason = kernel_reason_of<Strategies>()) : void()), ...);
      return reason;
    } else {
      sockopt::tcp_info info;
      if (!detail::get_socket_option(socket, info) && info.probes > 0)
        return close_reason::keepalive_timeout;
      return close_reason::user_timeout;
    }
  }

private:
  static constexpr std::size_t control_count = (std::size_t{control_watching_strategy<Strategies>} + ... + 0);
  struct timed_strategy_tag {};
  struct control_strategy_tag {};

  template <class Tag, class S>
  static constexpr bool answers() noexcept {
    if constexpr (std::is_same_v<Tag, timed_strategy_tag>)
      return timed_strategy<S>;
    else
      return control_watching_strategy<S>;
  }

  // verdicts[k] came from the k-th strategy that answers Tag's hook, in declaration order.
  template <class Tag, std::size_t N, class Act>
  void carry_out(const std::array<verdict, N>& verdicts, state& states, Act& act) const {
    const auto close = std::find_if(verdicts.begin(), verdicts.end(),
                                    [](const verdict& v) { return v.what() == verdict::action::close; });
    if (close != verdicts.end()) {
      act(*close);
      return;
    }
    std::size_t answered = 0;
    each([&](const auto& strategy, auto& s) {
      using S = std::remove_cvref_t<decltype(strategy)>;
      if constexpr (answers<Tag, S>()) {
        const verdict& v = verdicts[answered++];
        if (v.what() == verdict::action::none)
          return;
        const std::error_code outcome = act(v);
        // The send's own moment, not the hook's: a tick serving many connections runs late for the last ones,
        // and a round trip measured from the tick would include that lag.
        if constexpr (send_observing_strategy<S>) {
          if (v.what() == verdict::action::send)
            strategy.on_sent(s, v.frame(), outcome, liveness_clock::now());
        }
      }
    }, states);
  }

  template <class S>
  static constexpr close_reason kernel_reason_of() noexcept {
    if constexpr (kernel_timeout_strategy<S>)
      return S::kernel_timeout_reason;
    else
      return close_reason::io_error;
  }

  template <class S>
  static std::error_code validate_one(const S& strategy) noexcept {
    if constexpr (validating_strategy<S>)
      return strategy.validate();
    else
      return {};
  }

  template <class S>
  static std::error_code apply_one(const S& strategy, native_socket socket) noexcept {
    if constexpr (socket_option_strategy<S>)
      return strategy.apply(socket);
    else
      return {};
  }

  // Visits (strategy, its state) for every strategy in declaration order.
  template <class Visit, class States>
  void each(Visit&& visit, States& states) const {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (visit(std::get<I>(strategies_), std::get<I>(states)), ...);
    }(std::index_sequence_for<Strategies...>{});
  }

  [[no_unique_address]] std::tuple<Strategies...> strategies_;
};

template <class... Strategies>
liveness(Strategies...) -> liveness<Strategies...>;

namespace detail {
template <class T>
struct is_liveness : std::false_type {};
template <class... S>
struct is_liveness<liveness<S...>> : std::true_type {};
} // namespace detail

// What a connection, listener or connector takes as its policy: a tether::liveness<...> composition.
template <class L>
concept liveness_policy = detail::is_liveness<std::remove_cv_t<L>>::value;

} // namespace tether

// tether::liveness<S...>: the strategies a connection runs, chosen at compile time.
//
//   auto policy = tether::liveness{tether::tcp_keepalive{.idle = 60s, .interval = 10s, .count = 3},
//                                  tether::heartbeat{.interval = 15s, .timeout = 5s}};
//
// The strategy types decide what code exists; their fields are runtime values. Per-connection state is a
// tuple of the strategies' states (empty for kernel strategies, so they cost no bytes), and however many
// timed strategies there are, a connection owns one timer-wheel node: the earliest deadline wins.
#pragma once

#include <tether/liveness/strategy.hpp>

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <type_traits>

namespace tether {

template <class... Strategies>
class liveness {
  static_assert((liveness_strategy<Strategies> && ...),
                "tether::liveness: every strategy needs a nested default-constructible `state` and a "
                "`needs_control_frames` constant (see tether/liveness/strategy.hpp)");

  template <class S>
  static constexpr std::size_t occurrences = (std::size_t{std::is_same_v<S, Strategies>} + ... + 0);
  static_assert(((occurrences<Strategies> == 1) && ...), "tether::liveness: each strategy may appear only once");

public:
  using state = std::tuple<typename Strategies::state...>;

  template <class S>
  static constexpr bool has = occurrences<S> == 1;
  static constexpr bool needs_control_frames = (Strategies::needs_control_frames || ... || false);
  static constexpr bool timed = (timed_strategy<Strategies> || ... || false);

  constexpr liveness() = default;
  constexpr explicit liveness(Strategies... strategies)
    requires(sizeof...(Strategies) > 0)
      : strategies_{std::move(strategies)...} {}

  template <class S>
  constexpr const S& get() const noexcept {
    return std::get<S>(strategies_);
  }

  // Applies every kernel strategy's socket options, stopping at the first the platform refuses.
  std::error_code apply(native_socket socket) const noexcept {
    std::error_code ec;
    std::apply([&](const auto&... strategy) { (void)((ec = apply_one(strategy, socket), !ec) && ...); }, strategies_);
    return ec;
  }

  liveness_clock::time_point next_deadline(const state& states, const activity& seen) const noexcept {
    auto earliest = liveness_clock::time_point::max();
    for_each_timed([&](const auto& strategy, const auto& s) { earliest = std::min(earliest, strategy.next_deadline(s, seen)); },
                   states);
    return earliest;
  }

  // Every timed strategy looks at the connection; a close wins over a ping, and the first close wins.
  verdict on_deadline(state& states, const activity& seen, liveness_clock::time_point now) const noexcept {
    verdict result;
    for_each_timed(
        [&](const auto& strategy, auto& s) {
          if (result.what == verdict::action::close)
            return;
          const verdict v = strategy.on_deadline(s, seen, now);
          if (v.what != verdict::action::none)
            result = v;
        },
        states);
    return result;
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
  template <class S>
  static constexpr close_reason kernel_reason_of() noexcept {
    if constexpr (kernel_timeout_strategy<S>)
      return S::kernel_timeout_reason;
    else
      return close_reason::io_error;
  }

  template <class S>
  static std::error_code apply_one(const S& strategy, native_socket socket) noexcept {
    if constexpr (socket_option_strategy<S>)
      return strategy.apply(socket);
    else
      return {};
  }

  template <class Visit, class States>
  void for_each_timed(Visit&& visit, States& states) const noexcept {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (visit_if_timed<I>(visit, states), ...);
    }(std::index_sequence_for<Strategies...>{});
  }

  template <std::size_t I, class Visit, class States>
  void visit_if_timed(Visit& visit, States& states) const noexcept {
    using S = std::tuple_element_t<I, std::tuple<Strategies...>>;
    if constexpr (timed_strategy<S>)
      visit(std::get<I>(strategies_), std::get<I>(states));
  }

  [[no_unique_address]] std::tuple<Strategies...> strategies_;
};

template <class... Strategies>
liveness(Strategies...) -> liveness<Strategies...>;

} // namespace tether

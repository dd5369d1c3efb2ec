// The flags that choose a connection's codec and liveness strategies, shared by echo_server and echo_client, and
// the dispatch that turns them into types. tether fixes the strategies at compile time (tether::liveness<S...>),
// so each combination the flags can ask for is one instantiation, chosen once at startup; a strategy whose flag
// is absent is not in the pack and costs nothing.
#pragma once

#include "cli.hpp"

#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/codec/websocket_codec.hpp>
#include <tether/tls.hpp>
#include <tether/liveness/heartbeat.hpp>
#include <tether/liveness/idle_reaper.hpp>
#include <tether/liveness/liveness.hpp>
#include <tether/liveness/max_age.hpp>
#include <tether/liveness/tcp_keepalive.hpp>
#include <tether/liveness/user_timeout.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>

namespace examples {

enum class codec_choice { line, length, websocket };

struct connection_flags {
  codec_choice codec = codec_choice::line;
  std::optional<tether::tcp_keepalive> keepalive;
  std::optional<tether::user_timeout> user_timeout;
  std::optional<tether::heartbeat> heartbeat;
  std::chrono::milliseconds middlebox_timeout{0};  // a hint for tether::check only; 0: none declared
};

// Values the parsers accept can still lie outside what this kernel takes (keepalive idle above 32767 s on Linux);
// trying them on a scratch socket turns that into a usage error now rather than every connection failing later.
template <class Strategy>
void check_on_this_platform(const Strategy& strategy, std::string_view flag, std::string_view form,
                            std::string_view given) {
  asio::io_context scratch;
  asio::ip::tcp::socket probe{scratch, asio::ip::tcp::v4()};
  if (const std::error_code refused = strategy.apply(probe.native_handle()))
    throw usage_error{"bad value '" + std::string{given} + "' for " + std::string{flag} + ": " + refused.message() +
                      " (" + std::string{flag} + " " + std::string{form} + ")"};
}

inline void add_connection_flags(flag_parser& flags, connection_flags& chosen) {
  flags.value("--codec", "line|length|websocket", [&chosen](std::string_view v) {
    if (v != "line" && v != "length" && v != "websocket")
      return false;
    chosen.codec = v == "line" ? codec_choice::line : v == "length" ? codec_choice::length : codec_choice::websocket;
    return true;
  });
  flags.value("--keepalive", "IDLE,INTERVAL,COUNT (e.g. 60s,10s,3)", [&chosen](std::string_view v) {
    chosen.keepalive = parse_keepalive(v);
    if (chosen.keepalive)
      check_on_this_platform(*chosen.keepalive, "--keepalive", "IDLE,INTERVAL,COUNT", v);
    return chosen.keepalive.has_value();
  });
  flags.value("--user-timeout", "DUR above 0 (e.g. 30s)", [&chosen](std::string_view v) {
    const auto timeout = parse_duration(v);
    if (!timeout || timeout->count() == 0)
      return false;
    chosen.user_timeout = tether::user_timeout{*timeout};
    check_on_this_platform(*chosen.user_timeout, "--user-timeout", "DUR", v);
    return true;
  });
  flags.value("--heartbeat", "INTERVAL,TIMEOUT (e.g. 15s,5s)", [&chosen](std::string_view v) {
    chosen.heartbeat = parse_heartbeat(v);
    return chosen.heartbeat.has_value();
  });
  flags.value("--middlebox-timeout", "DUR above 0 (e.g. 60s)", [&chosen](std::string_view v) {
    const auto timeout = parse_duration(v);
    if (!timeout || timeout->count() == 0)
      return false;
    chosen.middlebox_timeout = *timeout;
    return true;
  });
}

// What a codec needs beyond the choice of framing: the WebSocket codec in its role, and TLS (no context: plain TCP).
struct codec_setup {
  tether::websocket_codec websocket{};
  std::shared_ptr<asio::ssl::context> tls{};
  tether::tls_role tls_side = tether::tls_role::server;
  std::string tls_server_name{};
};

// Calls run(codec) with the codec the flags chose, always inside tls_codec, which passes plain TCP through when
// there is no TLS context: TLS is decided at run time without doubling the instantiations.
template <class Run>
auto with_codec(codec_choice choice, Run&& run, const codec_setup& setup = {}) {
  const auto wrapped = [&](auto inner) {
    return run(tether::tls_codec<decltype(inner)>{.inner = std::move(inner), .context = setup.tls,
                                                  .side = setup.tls_side, .server_name = setup.tls_server_name});
  };
  if (choice == codec_choice::length)
    return wrapped(tether::length_prefixed_codec{});
  if (choice == codec_choice::websocket)
    return wrapped(setup.websocket);
  return wrapped(tether::line_codec{});
}

// Calls run(tether::liveness<Chosen...>{...}) with exactly the candidates that are present, in tuple order. Each
// level of the recursion decides one candidate and branches into "with it" and "without it", so n candidates
// instantiate run for all 2^n subsets and pick one of them at run time.
template <std::size_t Next = 0, class... Candidates, class Run, class... Chosen>
int with_liveness(const std::tuple<std::optional<Candidates>...>& candidates, Run&& run, const Chosen&... chosen) {
  if constexpr (Next == sizeof...(Candidates)) {
    return run(tether::liveness<Chosen...>{chosen...});
  } else {
    if (const auto& candidate = std::get<Next>(candidates))
      return with_liveness<Next + 1>(candidates, run, chosen..., *candidate);
    return with_liveness<Next + 1>(candidates, run, chosen...);
  }
}

constexpr std::string_view strategy_name(std::type_identity<tether::tcp_keepalive>) noexcept { return "tcp_keepalive"; }
constexpr std::string_view strategy_name(std::type_identity<tether::user_timeout>) noexcept { return "user_timeout"; }
constexpr std::string_view strategy_name(std::type_identity<tether::heartbeat>) noexcept { return "heartbeat"; }

// A strategy's name, or nothing where it is in the pack but off.
template <class Strategy>
constexpr std::string_view active_strategy_name(const Strategy&) noexcept {
  return strategy_name(std::type_identity<Strategy>{});
}
constexpr std::string_view active_strategy_name(const tether::max_age& limit) noexcept {
  return limit.age.count() > 0 ? "max_age" : "";
}
constexpr std::string_view active_strategy_name(const tether::idle_reaper& reaper) noexcept {
  return reaper.read_idle.count() > 0 || reaper.write_idle.count() > 0 || reaper.all_idle.count() > 0 ? "idle_reaper"
                                                                                                       : "";
}

// The strategies of a liveness pack that are on, for the start-up line: "tcp_keepalive+heartbeat", or "none".
template <class... Strategies>
std::string strategy_names(const tether::liveness<Strategies...>& pack) {
  const std::array<std::string_view, sizeof...(Strategies)> names{
      active_strategy_name(pack.template get<Strategies>())...};
  std::string joined;
  for (const std::string_view name : names) {
    if (!name.empty())
      joined += (joined.empty() ? "" : "+") + std::string{name};
  }
  return joined.empty() ? "none" : joined;
}

constexpr std::string_view codec_name(const tether::line_codec&) noexcept { return "line"; }
constexpr std::string_view codec_name(const tether::length_prefixed_codec&) noexcept { return "length"; }
constexpr std::string_view codec_name(const tether::websocket_codec&) noexcept { return "websocket"; }
template <class Inner>
constexpr std::string_view codec_name(const tether::tls_codec<Inner>& codec) noexcept {
  return codec_name(codec.inner);
}

} // namespace examples

// A goaway's "reconnect after" hint: the window, counted from the close, in which the server wants a client it
// sent away to come back. A server that sends thousands of clients away at once (a restart, a scale-in) names a
// window, and each client draws its own moment within it, so they return spread over the window instead of
// together. tether's connector honours it; listener::stop() sends one.
//
// On the wire it is a token of the goaway's payload, "reconnect-after=EARLIEST-LATEST" in whole milliseconds
// (a WebSocket close frame carries it in its reason text). Other tokens of the payload, separated by spaces, are
// left to the application.
//
//   conn.send_goaway(tether::goaway_payload({.earliest = 0ms, .latest = 5s}));  // "reconnect-after=0-5000"
//   if (auto hint = tether::parse_reconnect_hint(payload)) { ... }
#pragma once

#include <tether/detail/config.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace tether {

struct reconnect_hint {
  std::chrono::milliseconds earliest{0};
  std::chrono::milliseconds latest{0};

  bool operator==(const reconnect_hint&) const = default;
};

inline constexpr std::string_view reconnect_hint_key = "reconnect-after=";

// The goaway payload that carries `hint`. Negative bounds count as zero and a latest below earliest as earliest,
// so whatever a server computes goes out as a window a client can draw from.
inline std::string goaway_payload(reconnect_hint hint) {
  const auto earliest = hint.earliest.count() < 0 ? 0 : hint.earliest.count();
  const auto latest = hint.latest.count() < earliest ? earliest : hint.latest.count();
  std::string payload{reconnect_hint_key};
  payload += std::to_string(earliest);
  payload += '-';
  payload += std::to_string(latest);
  return payload;
}

// The hint among the space-separated tokens of a goaway payload; nothing when no token is a well-formed
// "reconnect-after=EARLIEST-LATEST" with EARLIEST <= LATEST, so that a malformed hint is ignored rather than
// trusted.
inline std::optional<reconnect_hint> parse_reconnect_hint(std::string_view payload) noexcept {
  while (!payload.empty()) {
    const auto space = payload.find(' ');
    const std::string_view token = payload.substr(0, space);
    payload = space == std::string_view::npos ? std::string_view{} : payload.substr(space + 1);
    if (!token.starts_with(reconnect_hint_key))
      continue;
    const std::string_view window = token.substr(reconnect_hint_key.size());
    std::uint32_t earliest = 0;
    std::uint32_t latest = 0;
    const char* const end = window.data() + window.size();
    const auto first = std::from_chars(window.data(), end, earliest);
    if (first.ec != std::errc{} || first.ptr == end || *first.ptr != '-')
      return std::nullopt;
    const auto second = std::from_chars(first.ptr + 1, end, latest);
    if (second.ec != std::errc{} || second.ptr != end || latest < earliest)
      return std::nullopt;
    return reconnect_hint{std::chrono::milliseconds{earliest}, std::chrono::milliseconds{latest}};
  }
  return std::nullopt;
}

} // namespace tether

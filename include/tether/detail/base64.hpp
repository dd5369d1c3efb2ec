// Base64 (RFC 4648, with padding) for the WebSocket handshake's keys.
#pragma once

#include <tether/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace tether::detail {

inline constexpr std::string_view base64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

inline std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t chunk = std::uint32_t{bytes[i]} << 16 |
                                (i + 1 < bytes.size() ? std::uint32_t{bytes[i + 1]} << 8 : 0) |
                                (i + 2 < bytes.size() ? std::uint32_t{bytes[i + 2]} : 0);
    out += base64_alphabet[chunk >> 18 & 63];
    out += base64_alphabet[chunk >> 12 & 63];
    out += i + 1 < bytes.size() ? base64_alphabet[chunk >> 6 & 63] : '=';
    out += i + 2 < bytes.size() ? base64_alphabet[chunk & 63] : '=';
  }
  return out;
}

// The number of bytes a well-formed, padded base64 text decodes to, or nullopt for anything else.
inline std::optional<std::size_t> base64_decoded_size(std::string_view text) noexcept {
  if (text.empty() || text.size() % 4 != 0)
    return std::nullopt;
  const std::size_t padding = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  for (std::size_t i = 0; i < text.size() - padding; ++i) {
    if (base64_alphabet.find(text[i]) == std::string_view::npos)
      return std::nullopt;
  }
  return text.size() / 4 * 3 - padding;
}

} // namespace tether::detail

// Binary framing for arbitrary bytes: a fixed header giving each frame's length and kind, then its payload.
//
// Wire format:
//
//   +---------------------------------+-----------+--------------------------+
//   | payload length                  | kind      | payload                  |
//   | 4 bytes, unsigned, big-endian   | 1 byte    | `payload length` bytes   |
//   +---------------------------------+-----------+--------------------------+
//
//   kind: 0 data, 1 ping, 2 pong, 3 goaway; any other value is malformed.
//
// The length counts the payload only, not the 5-byte header, and may be zero. Control frames carry a
// payload like data frames do (a heartbeat can echo its ping's payload in the pong). A declared length
// above max_payload_size is malformed as soon as the header has arrived, so a peer cannot make the
// connection buffer an oversized frame before it is refused.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/codec/frame.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

namespace tether {

struct length_prefixed_codec {
  // Parsing the 5-byte header again on every call costs less than remembering it.
  struct decoder_state {};
  static constexpr bool carries_control_frames = true;
  static constexpr std::size_t header_size = 5;

  std::size_t max_payload_size = 1024 * 1024;

  std::size_t max_frame_size() const noexcept { return max_payload_size; }
  decoded decode(std::string_view buffered, decoder_state& state) const noexcept;
  bool encode(frame_kind kind, std::string_view payload, std::string& out) const;
};

namespace detail {

inline constexpr auto highest_frame_kind = static_cast<std::uint8_t>(frame_kind::goaway);

} // namespace detail

inline decoded length_prefixed_codec::decode(std::string_view buffered, decoder_state&) const noexcept {
  if (buffered.size() < header_size)
    return decoded::need_more();
  const auto byte_at = [buffered](std::size_t index) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(buffered[index]));
  };
  const std::uint32_t length = byte_at(0) << 24 | byte_at(1) << 16 | byte_at(2) << 8 | byte_at(3);
  const std::uint32_t kind = byte_at(4);
  if (kind > detail::highest_frame_kind)
    return decoded::malformed("unknown frame kind byte");
  if (length > max_payload_size)
    return decoded::malformed("declared length exceeds max_payload_size");
  if (buffered.size() - header_size < length)
    return decoded::need_more();
  return decoded::frame(static_cast<frame_kind>(kind), buffered.substr(header_size, length), header_size + length);
}

inline bool length_prefixed_codec::encode(frame_kind kind, std::string_view payload, std::string& out) const {
  if (kind == frame_kind::binary)
    kind = frame_kind::data;
  if (static_cast<std::uint8_t>(kind) > detail::highest_frame_kind || payload.size() > max_payload_size ||
      payload.size() > std::numeric_limits<std::uint32_t>::max())
    return false;
  const auto length = static_cast<std::uint32_t>(payload.size());
  const std::size_t start = out.size();
  out.resize(start + header_size + payload.size());
  auto cursor = out.begin() + static_cast<std::ptrdiff_t>(start);
  for (const int shift : {24, 16, 8, 0})
    *cursor++ = static_cast<char>(static_cast<unsigned char>(length >> shift));
  *cursor++ = static_cast<char>(kind);
  std::copy(payload.begin(), payload.end(), cursor);
  return true;
}

} // namespace tether

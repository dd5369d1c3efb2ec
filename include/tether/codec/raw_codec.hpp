// No framing: the bytes as they arrive, for byte streams and for protocols that frame themselves.
//
// Every decode() delivers whatever is buffered, up to max_payload_size bytes, as one data frame, so the
// application sees the stream split wherever the network split it; encode() sends payloads as they are.
// There is no room on this wire for control frames: combining raw_codec with a strategy that talks to the
// peer in band (heartbeat) does not compile, while kernel keepalive, user timeout and idle reaping work.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/codec/frame.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace tether {

struct raw_codec {
  struct decoder_state {};
  static constexpr bool carries_control_frames = false;

  std::size_t max_payload_size = 64 * 1024; // the most bytes handed to the application at once

  std::size_t max_frame_size() const noexcept { return max_payload_size; }
  decoded decode(std::string_view buffered, decoder_state& state) const noexcept;
  // Payloads of any size are accepted: without boundaries on the wire, the peer splits them anyway.
  bool encode(frame_kind kind, std::string_view payload, std::string& out) const;
};

inline decoded raw_codec::decode(std::string_view buffered, decoder_state&) const noexcept {
  if (buffered.empty())
    return decoded::need_more();
  if (max_payload_size == 0)
    return decoded::malformed("max_payload_size is zero, so no byte can be delivered");
  const std::size_t size = std::min(buffered.size(), max_payload_size);
  return decoded::frame(frame_kind::data, buffered.substr(0, size), size);
}

inline bool raw_codec::encode(frame_kind kind, std::string_view payload, std::string& out) const {
  if (kind != frame_kind::data && kind != frame_kind::binary)
    return false;
  out.append(payload);
  return true;
}

} // namespace tether

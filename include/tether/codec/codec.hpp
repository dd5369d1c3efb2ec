// The contract between a connection and its framing: what a type must offer to be used as a codec, and
// which codecs can carry the control frames that in-band liveness strategies (heartbeat) depend on.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/codec/frame.hpp>

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

namespace tether {

// A codec is an immutable configuration shared by all connections; anything that changes while a
// connection reads lives in its decoder_state, one per connection.
//
//   decoder_state  default-constructible; lets decode() resume where it stopped instead of re-examining
//                  bytes it has already seen. It stays valid while the caller only appends to the buffer,
//                  and the codec resets it whenever it returns a frame.
//   decode(buffered, state)
//                  decodes at most one frame from the front of `buffered`. The caller erases `consumed`
//                  bytes after a frame and calls again until need_more. After malformed the stream has
//                  lost its framing for good: close the connection (close_reason::protocol_error).
//   encode(kind, payload, out)
//                  appends one encoded frame to `out`. Returns false, leaving `out` unchanged, when this
//                  codec cannot carry the frame (payload too long, a character the format reserves, a
//                  control frame on a codec without them).
//   carries_control_frames
//                  whether ping, pong and goaway frames exist on this wire at all.
//   max_frame_size()
//                  the longest payload decode() ever returns in one frame.
template <class C>
concept codec = std::default_initializable<typename C::decoder_state> &&
                requires(const C& instance, std::string_view bytes, typename C::decoder_state& state, frame_kind kind,
                         std::string& out) {
                  { instance.decode(bytes, state) } -> std::same_as<decoded>;
                  { instance.encode(kind, bytes, out) } -> std::same_as<bool>;
                  { instance.max_frame_size() } -> std::same_as<std::size_t>;
                  { C::carries_control_frames } -> std::convertible_to<bool>;
                  typename std::bool_constant<C::carries_control_frames>;
                };

// Required by strategies that talk to the peer in band, such as heartbeat: a connection combining them
// with a codec such as raw_codec does not compile.
template <class C>
concept control_frame_codec = codec<C> && C::carries_control_frames;

} // namespace tether

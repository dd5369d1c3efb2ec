// The contract between a connection and its framing: what a type must offer to be used as a codec, and which
// codecs can carry the control frames that in-band liveness strategies (heartbeat) depend on.
//
// A codec is an immutable configuration shared by all connections; anything that changes while a connection
// reads lives in its decoder_state, one per connection.
//
// | member                 | declaration                                                      | called                                  | may / must                                |
// |------------------------|------------------------------------------------------------------|-----------------------------------------|-------------------------------------------|
// | decoder_state          | a nested default-constructible type                              | one per connection                      | remember how far decode() has looked      |
// | carries_control_frames | static constexpr bool                                            | at compile time                         | say whether ping, pong and goaway exist   |
// | decode                 | decoded decode(std::string_view buffered, decoder_state&) const  | after every read, until need_more       | return one frame, need_more or malformed  |
// | encode                 | bool encode(frame_kind, std::string_view payload, std::string& out) const | for every frame sent            | append one frame, or return false leaving out unchanged |
// | max_frame_size         | std::size_t max_frame_size() const noexcept                      | when the connection sizes its buffers   | return the longest payload decode() returns |
//
// decode() sees the buffered bytes from the start of a frame and decodes at most one frame from their front.
// The connection erases `consumed` bytes after a frame and calls again until need_more. decoder_state stays
// valid while the connection only appends to the buffer, and the codec resets it whenever it returns a frame.
// After malformed the stream has lost its framing for good: the connection closes with protocol_error and the
// problem, which must be a string literal, as its detail. encode() refuses (returns false) what it cannot carry: a payload too long, a character
// the format reserves, a control frame on a codec without them.
//
// A type with a member of one of these names but another declaration is a compile error naming the member.
// The exemplar, compiled by the tests and quoted in docs/api.md, is docs/examples/custom_codec.cpp.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/codec/frame.hpp>

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

namespace tether {

template <class C>
concept codec = std::default_initializable<typename C::decoder_state> &&
                requires(const C& instance, std::string_view bytes, typename C::decoder_state& state, frame_kind kind,
                         std::string& out) {
                  { instance.decode(bytes, state) } -> std::same_as<decoded>;
                  { instance.encode(kind, bytes, out) } -> std::same_as<bool>;
                  { instance.max_frame_size() } -> std::same_as<std::size_t>;
                  typename std::bool_constant<C::carries_control_frames>;
                };

// Required by strategies that talk to the peer in band, such as heartbeat: a connection combining them with a
// codec such as raw_codec does not compile.
template <class C>
concept control_frame_codec = codec<C> && C::carries_control_frames;

namespace detail {

// Each rule of the table as a static_assert naming the member.
template <class C>
consteval bool check_codec() {
  static_assert(requires { typename C::decoder_state; },
                "tether codec: needs a nested `struct decoder_state {};` (empty when decode() keeps nothing)");
  if constexpr (requires { typename C::decoder_state; }) {
    static_assert(std::default_initializable<typename C::decoder_state>,
                  "tether codec: `decoder_state` must be default-constructible");
    static_assert(requires(const C& c, std::string_view bytes, typename C::decoder_state& state) {
      { c.decode(bytes, state) } -> std::same_as<decoded>;
    }, "tether codec: `decode` must be declared `tether::decoded decode(std::string_view, decoder_state&) const`");
  }
  static_assert(requires(const C& c, frame_kind kind, std::string_view payload, std::string& out) {
    { c.encode(kind, payload, out) } -> std::same_as<bool>;
  }, "tether codec: `encode` must be declared `bool encode(tether::frame_kind, std::string_view, std::string&) const`");
  static_assert(requires(const C& c) {
    { c.max_frame_size() } -> std::same_as<std::size_t>;
  }, "tether codec: `max_frame_size` must be declared `std::size_t max_frame_size() const noexcept`");
  static_assert(requires { typename std::bool_constant<C::carries_control_frames>; },
                "tether codec: needs `static constexpr bool carries_control_frames`");
  return true;
}

} // namespace detail
} // namespace tether

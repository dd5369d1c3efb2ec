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
// | encode                 | bool encode(frame_kind, std::string_view payload, std::string& out) const | for every frame sent            | append one frame, or return false leaving out unchanged; a codec with per-connection encoding state (TLS) takes `decoder_state&` before `out` |
// | max_frame_size         | std::size_t max_frame_size() const noexcept                      | when the connection sizes its buffers   | return the longest payload decode() returns |
//
// Codecs with a handshake (WebSocket's HTTP Upgrade) and a closing frame add:
//
// | member                 | declaration                                                      | called                                  | may / must                                |
// |------------------------|------------------------------------------------------------------|-----------------------------------------|-------------------------------------------|
// | handshakes             | static constexpr bool (true)                                     | at compile time                         | make the connection wait for the handshake before it writes a frame |
// | handshake_timeout      | std::chrono::milliseconds, a data member                         | when the connection starts              | bound the handshake: past it, the connection closes with handshake_failed |
// | begin_handshake        | void begin_handshake(decoder_state&, std::string& out) const     | when the connection starts              | append what this side sends first (a client's request), or nothing |
// | encode_close           | bool encode_close(close_reason, decoder_state&, std::string& out) const | when the connection closes for a reason the peer should hear | append the protocol's closing frame (WebSocket close with its status code, TLS close_notify) |
// | goaway_ends_stream     | static constexpr bool                                            | at compile time                         | say that a goaway is the peer's last frame (WebSocket close), which the connection answers by closing |
//
// While handshaking, decode() returns handshake (done: its payload is written as it is, before any frame, and
// `consumed` bytes were the handshake), rejected (its payload is written as it is, then the connection closes
// with handshake_failed and the problem as its detail), reply (bytes to write now, the handshake goes on),
// partial, need_more, or malformed. It bounds what it buffers. Frames sent before the handshake is done wait and
// follow its payload.
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

#include <tether/close_reason.hpp>
#include <tether/detail/config.hpp>
#include <tether/codec/frame.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

namespace tether {

// Most codecs encode from their configuration alone; one that keeps per-connection encoding state (TLS: the
// session's keys and record sequence) takes the connection's decoder_state as well.
template <class C>
concept stateless_encoder = requires(const C& instance, frame_kind kind, std::string_view bytes, std::string& out) {
  { instance.encode(kind, bytes, out) } -> std::same_as<bool>;
};
template <class C>
concept stateful_encoder = requires(const C& instance, frame_kind kind, std::string_view bytes,
                                    typename C::decoder_state& state, std::string& out) {
  { instance.encode(kind, bytes, state, out) } -> std::same_as<bool>;
};

template <class C>
concept codec = std::default_initializable<typename C::decoder_state> &&
                (stateless_encoder<C> || stateful_encoder<C>) &&
                requires(const C& instance, std::string_view bytes, typename C::decoder_state& state) {
                  { instance.decode(bytes, state) } -> std::same_as<decoded>;
                  { instance.max_frame_size() } -> std::same_as<std::size_t>;
                  typename std::bool_constant<C::carries_control_frames>;
                };

// Appends one encoded frame, whichever form of encode the codec has.
template <codec C>
bool encode_frame(const C& codec, frame_kind kind, std::string_view payload, typename C::decoder_state& state,
                  std::string& out) {
  if constexpr (stateful_encoder<C>)
    return codec.encode(kind, payload, state, out);
  else
    return codec.encode(kind, payload, out);
}

// Required by strategies that talk to the peer in band, such as heartbeat: a connection combining them with a
// codec such as raw_codec does not compile.
template <class C>
concept control_frame_codec = codec<C> && C::carries_control_frames;

// The optional parts of the table above.
template <class C>
concept handshaking_codec = codec<C> && requires(const C& c, typename C::decoder_state& state, std::string& out) {
  requires C::handshakes;
  { c.handshake_timeout } -> std::convertible_to<std::chrono::milliseconds>;
  c.begin_handshake(state, out);
};
template <class C>
concept closing_frame_codec =
    codec<C> && requires(const C& c, close_reason reason, typename C::decoder_state& state, std::string& out) {
      { c.encode_close(reason, state, out) } -> std::same_as<bool>;
    };
template <class C>
concept stream_ending_goaway_codec = codec<C> && requires { requires C::goaway_ends_stream; };

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
  static_assert(stateless_encoder<C> || stateful_encoder<C>,
                "tether codec: `encode` must be declared `bool encode(tether::frame_kind, std::string_view, "
                "std::string&) const` (or, with per-connection state, `bool encode(tether::frame_kind, "
                "std::string_view, decoder_state&, std::string&) const`)");
  static_assert(requires(const C& c) {
    { c.max_frame_size() } -> std::same_as<std::size_t>;
  }, "tether codec: `max_frame_size` must be declared `std::size_t max_frame_size() const noexcept`");
  static_assert(requires { typename std::bool_constant<C::carries_control_frames>; },
                "tether codec: needs `static constexpr bool carries_control_frames`");
  return true;
}

} // namespace detail
} // namespace tether

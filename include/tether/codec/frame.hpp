// What every codec speaks: the kinds of frame a connection exchanges and the result of one decode step.
#pragma once

#include <tether/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tether {

// data carries the application's bytes (WebSocket: a text message); binary is data a codec that tells the two apart
// marks as binary (WebSocket), and any other codec carries as data. ping, pong and goaway are control frames that
// the liveness strategies send and answer in band, so the application never sees them.
enum class frame_kind : std::uint8_t { data, ping, pong, goaway, binary };

enum class decode_status : std::uint8_t {
  frame,      // one whole frame was at the front of the input
  need_more,  // the input holds only the start of a frame; read more and decode again
  malformed,  // the input breaks the wire format or a limit; the connection cannot recover
  handshake,  // the front of the input completed the codec's handshake; payload is what to answer, as it is
  rejected,   // the handshake failed; payload is what to answer before closing, problem says why
  partial,    // the front of the input was a piece the codec keeps (a WebSocket fragment): drop it, decode again
  reply,      // payload is to be written as it is, now (TLS handshake records); drop `consumed`, decode again
};

// The outcome of decoding the front of a buffer. The payload views the caller's buffer, so it is valid
// until the caller changes that buffer (typically by erasing the consumed bytes).
struct decoded {
  decode_status status = decode_status::need_more;
  frame_kind kind = frame_kind::data; // valid when status == frame
  std::string_view payload;           // valid when status == frame
  std::size_t consumed = 0;           // bytes of input the frame used, terminator included
  std::string_view problem;           // a string literal saying why the input is malformed

  static constexpr decoded frame(frame_kind kind, std::string_view payload, std::size_t consumed) noexcept {
    return {decode_status::frame, kind, payload, consumed, {}};
  }
  static constexpr decoded need_more() noexcept { return {}; }
  static constexpr decoded malformed(std::string_view problem) noexcept {
    return {decode_status::malformed, frame_kind::data, {}, 0, problem};
  }
  static constexpr decoded partial(std::size_t consumed) noexcept {
    return {decode_status::partial, frame_kind::data, {}, consumed, {}};
  }
  static constexpr decoded answer(std::string_view bytes, std::size_t consumed) noexcept {
    return {decode_status::reply, frame_kind::data, bytes, consumed, {}};
  }
  static constexpr decoded handshake_done(std::string_view reply, std::size_t consumed) noexcept {
    return {decode_status::handshake, frame_kind::data, reply, consumed, {}};
  }
  static constexpr decoded handshake_rejected(std::string_view reply, std::string_view problem) noexcept {
    return {decode_status::rejected, frame_kind::data, reply, 0, problem};
  }
};

} // namespace tether

// WebSocket (RFC 6455) as a codec, in either role: the HTTP Upgrade handshake, then frames.
//
//   tether::listener server{io, {.port = 8080}, tether::websocket_codec{}, tether::liveness{tether::heartbeat{}}};
//   tether::connector client{io, {.service = "8080"},
//                            tether::websocket_codec{.side = tether::websocket_codec::role::client, .host = "localhost"}};
//
// Handshake. The server accepts a GET for `path` (any path when empty) with Host, "Upgrade: websocket",
// "Connection: Upgrade", a Sec-WebSocket-Key of 16 bytes in base64 and Sec-WebSocket-Version 13, and answers
// 101 with Sec-WebSocket-Accept (SHA-1 and base64 in detail/, so the codec needs no crypto library) and the
// first of its `subprotocols` the client offered, if any. It refuses a malformed request with 400, another
// version with 426 and "Sec-WebSocket-Version: 13", another path with 404, and a request over
// `max_handshake_size` with 431; the connection then closes with handshake_failed. The client sends the request
// for `path` with `host` and checks the accept key. Either way the handshake must finish within
// `handshake_timeout`.
//
// Frames. Data frames are text (frame_kind::data; its UTF-8 is checked, invalid text closes with 1007) or binary
// (frame_kind::binary); fragments are reassembled up to `max_message_size` (more closes with 1009). A server
// closes a client that does not mask with 1002; a client closes a server that masks with 1002, and masks what it
// sends with a random key per frame. Control frames (ping, pong, close) are at most 125 bytes and never
// fragmented; reserved bits and unknown opcodes close with 1002. ping and pong are tether's ping and pong, so a
// browser answers tether's heartbeat by itself; a close frame is the peer's goaway and its last frame: the
// connection answers with its own close frame, echoing the peer's code. Our closes say why: 1000 for close(),
// 1001 for a goaway (a graceful stop, a maximum age) or an idle close, 1002/1007/1009 for protocol errors, 1008
// for a ping flood.
#pragma once

#include <tether/close_reason.hpp>
#include <tether/codec/frame.hpp>
#include <tether/detail/base64.hpp>
#include <tether/detail/config.hpp>
#include <tether/detail/random_bytes.hpp>
#include <tether/detail/sha1.hpp>
#include <tether/detail/utf8.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether {

struct websocket_codec {
  enum class role : std::uint8_t { server, client };

  role side = role::server;
  std::size_t max_message_size = 1024 * 1024;  // a whole message, fragments reassembled
  std::size_t max_handshake_size = 8 * 1024;   // the request or the response, headers included
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds{10}};
  std::string path = "/";                    // server: the one path it serves, empty for any; client: the one it asks for
  std::string host = "localhost";            // client: the Host header
  std::vector<std::string> subprotocols{};  // server: accepted, in its order of preference; client: offered

  class decoder_state {
  public:
    // The status code of the close frame the peer sent: 0 before one arrived, 1005 for one without a code. The
    // peer's answer to a close frame of ours arrives while the connection drains, and is not decoded.
    std::uint16_t peer_close_code() const noexcept { return peer_close_code_; }
    // The subprotocol both sides agreed on, or empty.
    std::string_view subprotocol(const websocket_codec& codec) const noexcept {
      return subprotocol_ < 0 ? std::string_view{} : std::string_view{codec.subprotocols[static_cast<std::size_t>(subprotocol_)]};
    }
    bool handshake_done() const noexcept { return open_; }

  private:
    friend struct websocket_codec;
    // During the handshake: the server's reply, or the accept key the client expects. Then: the message being
    // reassembled, followed by the payload of a control frame that arrived in its middle.
    std::string buffer_;
    std::size_t control_at_ = std::string::npos;
    detail::utf8_validator utf8_;
    std::uint16_t peer_close_code_ = 0;
    std::uint16_t failure_code_ = 0;  // the close code the last malformed input calls for
    std::int8_t subprotocol_ = -1;
    bool open_ = false;
    bool in_message_ = false;
    bool message_text_ = false;
    bool message_done_ = false;  // buffer_ holds a message already delivered
  };

  static constexpr bool carries_control_frames = true;
  static constexpr bool handshakes = true;
  static constexpr bool goaway_ends_stream = true;
  static constexpr std::string_view accept_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

  std::size_t max_frame_size() const noexcept { return max_message_size; }
  decoded decode(std::string_view buffered, decoder_state& state) const;
  bool encode(frame_kind kind, std::string_view payload, std::string& out) const;
  void begin_handshake(decoder_state& state, std::string& out) const;
  bool encode_close(close_reason reason, const decoder_state& state, std::string& out) const;

  // Sec-WebSocket-Accept for a Sec-WebSocket-Key.
  static std::string accept_key(std::string_view key) {
    std::string keyed{key};
    keyed += accept_guid;
    const auto digest = detail::sha1::of(keyed);
    return detail::base64_encode(digest);
  }

private:
  decoded accept_request(std::string_view buffered, decoder_state& state) const;
  decoded check_response(std::string_view buffered, decoder_state& state) const;
  decoded decode_frame(std::string_view buffered, decoder_state& state) const;
  void append_frame(std::uint8_t opcode, std::string_view payload, std::string& out) const;
};

namespace detail {

constexpr char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr bool equals_ignoring_case(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

constexpr std::string_view trim_http_space(std::string_view text) noexcept {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  return text;
}

// Whether a comma-separated header value holds the token (case-insensitive), as Connection and Upgrade do.
constexpr bool header_has_token(std::string_view value, std::string_view token) noexcept {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (equals_ignoring_case(trim_http_space(value.substr(0, comma)), token))
      return true;
    if (comma == std::string_view::npos)
      break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// The header lines of an HTTP message head (the start line excluded), each as name and value.
template <class Visit>
bool for_each_http_header(std::string_view head, Visit&& visit) {
  auto line_end = head.find("\r\n");
  while (line_end != std::string_view::npos) {
    head.remove_prefix(line_end + 2);
    if (head.empty())
      break;
    line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return false;
    visit(line.substr(0, colon), trim_http_space(line.substr(colon + 1)));
  }
  return true;
}

// Codes an endpoint may put on the wire (RFC 6455 7.4 and the IANA registry); 1005, 1006 and 1015 never are.
constexpr bool sendable_close_code(std::uint16_t code) noexcept {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

} // namespace detail

inline decoded websocket_codec::decode(std::string_view buffered, decoder_state& state) const {
  if (!state.open_)
    return side == role::server ? accept_request(buffered, state) : check_response(buffered, state);
  return decode_frame(buffered, state);
}

inline decoded websocket_codec::decode_frame(std::string_view buffered, decoder_state& state) const {
  // What the last call handed out is no longer needed: a delivered message, or a control frame's payload.
  if (state.message_done_) {
    state.buffer_.clear();
    if (state.buffer_.capacity() > 64 * 1024)
      std::string{}.swap(state.buffer_);
    state.message_done_ = false;
  }
  if (state.control_at_ != std::string::npos) {
    state.buffer_.resize(state.control_at_);
    state.control_at_ = std::string::npos;
  }
  const auto fail = [&state](std::uint16_t code, std::string_view problem) {
    state.failure_code_ = code;
    return decoded::malformed(problem);
  };
  if (buffered.size() < 2)
    return decoded::need_more();
  const auto byte = [buffered](std::size_t i) { return static_cast<std::uint8_t>(buffered[i]); };
  const bool fin = (byte(0) & 0x80) != 0;
  const std::uint8_t opcode = byte(0) & 0x0F;
  const bool masked = (byte(1) & 0x80) != 0;
  const std::uint8_t length_code = byte(1) & 0x7F;
  const bool control = (opcode & 0x08) != 0;

  if ((byte(0) & 0x70) != 0)
    return fail(1002, "a frame sets reserved bits that no negotiated extension defines");
  if (side == role::server && !masked)
    return fail(1002, "a client frame is not masked");
  if (side == role::client && masked)
    return fail(1002, "a server frame is masked");
  if (control) {
    if (opcode > 0x0A)
      return fail(1002, "a frame has an unknown control opcode");
    if (!fin)
      return fail(1002, "a control frame is fragmented");
    if (length_code > 125)
      return fail(1002, "a control frame is longer than 125 bytes");
  } else if (opcode > 0x02) {
    return fail(1002, "a frame has an unknown data opcode");
  }

  std::size_t header = 2;
  std::uint64_t length = length_code;
  if (length_code == 126) {
    if (buffered.size() < 4)
      return decoded::need_more();
    length = std::uint64_t{byte(2)} << 8 | byte(3);
    header = 4;
  } else if (length_code == 127) {
    if (buffered.size() < 10)
      return decoded::need_more();
    length = 0;
    for (std::size_t i = 2; i < 10; ++i)
      length = length << 8 | byte(i);
    if (length >> 63)
      return fail(1002, "a frame declares a length with the most significant bit set");
    header = 10;
  }
  if (!control) {
    if (opcode == 0 && !state.in_message_)
      return fail(1002, "a continuation frame has no message to continue");
    if (opcode != 0 && state.in_message_)
      return fail(1002, "a new message began before the last one ended");
    const std::size_t so_far = opcode == 0 ? state.buffer_.size() : 0;
    // Refused from the header alone, so a peer cannot make us buffer an oversized message first.
    if (length > max_message_size - std::min(so_far, max_message_size))
      return fail(1009, "a message is larger than max_message_size");
  }
  const std::size_t mask_at = header;
  if (masked)
    header += 4;
  if (buffered.size() < header || buffered.size() - header < length)
    return decoded::need_more();

  const std::size_t start = state.buffer_.size();
  if (control)
    state.control_at_ = start;
  state.buffer_.append(buffered.substr(header, static_cast<std::size_t>(length)));
  if (masked) {
    for (std::size_t i = 0; i < length; ++i)
      state.buffer_[start + i] = static_cast<char>(state.buffer_[start + i] ^ buffered[mask_at + i % 4]);
  }
  const std::size_t consumed = header + static_cast<std::size_t>(length);
  const std::string_view payload = std::string_view{state.buffer_}.substr(start);

  if (control) {
    switch (opcode) {
    case 0x08: {
      if (payload.size() == 1)
        return fail(1002, "a close frame has a one-byte body");
      std::uint16_t code = 1005;
      if (payload.size() >= 2) {
        code = static_cast<std::uint16_t>(static_cast<std::uint8_t>(payload[0]) << 8 | static_cast<std::uint8_t>(payload[1]));
        if (!detail::sendable_close_code(code))
          return fail(1002, "a close frame carries a status code no endpoint may send");
        if (!detail::valid_utf8(payload.substr(2)))
          return fail(1007, "a close frame's reason is not UTF-8");
      }
      state.peer_close_code_ = code;
      // The goaway's payload is the reason text, as an encoded goaway takes it; the code is kept above.
      return decoded::frame(frame_kind::goaway, payload.substr(payload.size() >= 2 ? 2 : 0), consumed);
    }
    case 0x09:
      return decoded::frame(frame_kind::ping, payload, consumed);
    case 0x0A:
      return decoded::frame(frame_kind::pong, payload, consumed);
    default:
      return fail(1002, "a frame has a reserved control opcode");
    }
  }
  if (opcode != 0) {
    state.in_message_ = true;
    state.message_text_ = opcode == 0x01;
    state.utf8_.reset();
  }
  if (state.message_text_ && !state.utf8_.feed(payload))
    return fail(1007, "a text message is not UTF-8");
  if (!fin)
    return decoded::partial(consumed);
  if (state.message_text_ && !state.utf8_.complete())
    return fail(1007, "a text message ends in the middle of a UTF-8 character");
  state.in_message_ = false;
  state.message_done_ = true;
  return decoded::frame(state.message_text_ ? frame_kind::data : frame_kind::binary, state.buffer_, consumed);
}

inline void websocket_codec::append_frame(std::uint8_t opcode, std::string_view payload, std::string& out) const {
  const bool mask = side == role::client;
  out.push_back(static_cast<char>(0x80 | opcode));
  const std::uint8_t mask_bit = mask ? 0x80 : 0x00;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xFF));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>(static_cast<std::uint64_t>(payload.size()) >> shift & 0xFF));
  }
  if (!mask) {
    out.append(payload);
    return;
  }
  std::array<std::uint8_t, 4> key{};
  detail::fill_random(key);
  out.append(reinterpret_cast<const char*>(key.data()), key.size());
  const std::size_t start = out.size();
  out.append(payload);
  for (std::size_t i = 0; i < payload.size(); ++i)
    out[start + i] = static_cast<char>(out[start + i] ^ static_cast<char>(key[i % 4]));
}

inline bool websocket_codec::encode(frame_kind kind, std::string_view payload, std::string& out) const {
  switch (kind) {
  case frame_kind::data:
    if (payload.size() > max_message_size || !detail::valid_utf8(payload))
      return false;
    append_frame(0x01, payload, out);
    return true;
  case frame_kind::binary:
    if (payload.size() > max_message_size)
      return false;
    append_frame(0x02, payload, out);
    return true;
  case frame_kind::ping:
  case frame_kind::pong:
    if (payload.size() > 125)
      return false;
    append_frame(kind == frame_kind::ping ? 0x09 : 0x0A, payload, out);
    return true;
  case frame_kind::goaway: {
    if (payload.size() > 123 || !detail::valid_utf8(payload))
      return false;
    std::string body{"\x03\xE9", 2};  // 1001, going away
    body.append(payload);
    append_frame(0x08, body, out);
    return true;
  }
  }
  return false;
}

inline bool websocket_codec::encode_close(close_reason reason, const decoder_state& state, std::string& out) const {
  if (!state.open_)
    return false;
  std::uint16_t code = 1011;
  switch (reason) {
  case close_reason::peer_closed:
    code = detail::sendable_close_code(state.peer_close_code_) ? state.peer_close_code_ : std::uint16_t{1000};
    break;
  case close_reason::local_close:
    code = 1000;
    break;
  case close_reason::shutdown:
  case close_reason::idle_timeout:
  case close_reason::max_age:
    code = 1001;
    break;
  case close_reason::protocol_error:
    code = state.failure_code_ != 0 ? state.failure_code_ : std::uint16_t{1002};
    break;
  case close_reason::ping_flood:
  case close_reason::backpressure:
  case close_reason::limit_exceeded:
    code = 1008;
    break;
  default:
    break;
  }
  const char body[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  append_frame(0x08, {body, 2}, out);
  return true;
}

inline void websocket_codec::begin_handshake(decoder_state& state, std::string& out) const {
  if (side != role::client)
    return;
  std::array<std::uint8_t, 16> nonce{};
  detail::fill_random(nonce);
  const std::string key = detail::base64_encode(nonce);
  state.buffer_ = accept_key(key);
  out += "GET " + (path.empty() ? std::string{"/"} : path) + " HTTP/1.1\r\nHost: " + host +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
         "\r\nSec-WebSocket-Version: 13\r\n";
  if (!subprotocols.empty()) {
    out += "Sec-WebSocket-Protocol: ";
    for (std::size_t i = 0; i < subprotocols.size(); ++i)
      out += (i ? ", " : "") + subprotocols[i];
    out += "\r\n";
  }
  out += "\r\n";
}

inline decoded websocket_codec::accept_request(std::string_view buffered, decoder_state& state) const {
  const auto refuse = [&state](std::string_view status, std::string_view problem, bool name_version = false) {
    state.buffer_ = "HTTP/1.1 ";
    state.buffer_ += status;
    state.buffer_ += "\r\nConnection: close\r\nContent-Length: 0\r\n";
    if (name_version)
      state.buffer_ += "Sec-WebSocket-Version: 13\r\n";
    state.buffer_ += "\r\n";
    return decoded::handshake_rejected(state.buffer_, problem);
  };
  const auto end = buffered.substr(0, max_handshake_size).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buffered.size() >= max_handshake_size)
      return refuse("431 Request Header Fields Too Large", "the upgrade request is larger than max_handshake_size");
    return decoded::need_more();
  }
  const std::string_view head = buffered.substr(0, end + 2);
  const std::string_view request_line = head.substr(0, head.find("\r\n"));
  // GET <target> HTTP/1.x
  const auto first_space = request_line.find(' ');
  const auto second_space = request_line.find(' ', first_space + 1);
  if (first_space == std::string_view::npos || second_space == std::string_view::npos ||
      request_line.substr(0, first_space) != "GET" || !request_line.substr(second_space + 1).starts_with("HTTP/1."))
    return refuse("400 Bad Request", "the upgrade request is not an HTTP/1.1 GET");
  const std::string_view target = request_line.substr(first_space + 1, second_space - first_space - 1);

  bool has_host = false, upgrade = false, connection = false;
  std::string_view key, version, offered;
  const bool well_formed = detail::for_each_http_header(head, [&](std::string_view name, std::string_view value) {
    if (detail::equals_ignoring_case(name, "Host"))
      has_host = true;
    else if (detail::equals_ignoring_case(name, "Upgrade"))
      upgrade = detail::header_has_token(value, "websocket");
    else if (detail::equals_ignoring_case(name, "Connection"))
      connection = detail::header_has_token(value, "upgrade");
    else if (detail::equals_ignoring_case(name, "Sec-WebSocket-Key"))
      key = value;
    else if (detail::equals_ignoring_case(name, "Sec-WebSocket-Version"))
      version = value;
    else if (detail::equals_ignoring_case(name, "Sec-WebSocket-Protocol"))
      offered = value;
  });
  if (!well_formed)
    return refuse("400 Bad Request", "the upgrade request has a malformed header line");
  if (!has_host || !upgrade || !connection)
    return refuse("400 Bad Request", "the upgrade request lacks Host, Upgrade: websocket or Connection: Upgrade");
  if (version != "13")
    return refuse("426 Upgrade Required", "the upgrade request asks for a WebSocket version other than 13", true);
  if (detail::base64_decoded_size(key) != std::optional<std::size_t>{16})
    return refuse("400 Bad Request", "the upgrade request's Sec-WebSocket-Key is not 16 bytes of base64");
  if (!path.empty() && target.substr(0, target.find('?')) != path)
    return refuse("404 Not Found", "the upgrade request asks for a path this server does not serve");

  state.subprotocol_ = -1;
  for (std::size_t i = 0; i < subprotocols.size() && state.subprotocol_ < 0; ++i) {
    if (detail::header_has_token(offered, subprotocols[i]))
      state.subprotocol_ = static_cast<std::int8_t>(i);
  }
  state.buffer_ = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
  state.buffer_ += accept_key(key);
  state.buffer_ += "\r\n";
  if (state.subprotocol_ >= 0)
    state.buffer_ += "Sec-WebSocket-Protocol: " + subprotocols[static_cast<std::size_t>(state.subprotocol_)] + "\r\n";
  state.buffer_ += "\r\n";
  state.open_ = true;
  state.message_done_ = true;  // the reply is handed out now and dropped at the next call
  return decoded::handshake_done(state.buffer_, end + 4);
}

inline decoded websocket_codec::check_response(std::string_view buffered, decoder_state& state) const {
  const auto end = buffered.substr(0, max_handshake_size).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buffered.size() >= max_handshake_size)
      return decoded::handshake_rejected({}, "the upgrade response is larger than max_handshake_size");
    return decoded::need_more();
  }
  const std::string_view head = buffered.substr(0, end + 2);
  const std::string_view status_line = head.substr(0, head.find("\r\n"));
  if (!status_line.starts_with("HTTP/1.1 101"))
    return decoded::handshake_rejected({}, "the server did not answer the upgrade with 101 Switching Protocols");
  bool upgrade = false, connection = false, accepted = false;
  std::string_view chosen;
  const bool well_formed = detail::for_each_http_header(head, [&](std::string_view name, std::string_view value) {
    if (detail::equals_ignoring_case(name, "Upgrade"))
      upgrade = detail::header_has_token(value, "websocket");
    else if (detail::equals_ignoring_case(name, "Connection"))
      connection = detail::header_has_token(value, "upgrade");
    else if (detail::equals_ignoring_case(name, "Sec-WebSocket-Accept"))
      accepted = value == state.buffer_;
    else if (detail::equals_ignoring_case(name, "Sec-WebSocket-Protocol"))
      chosen = value;
  });
  if (!well_formed || !upgrade || !connection)
    return decoded::handshake_rejected({}, "the upgrade response lacks Upgrade: websocket or Connection: Upgrade");
  if (!accepted)
    return decoded::handshake_rejected({}, "the upgrade response's Sec-WebSocket-Accept does not match our key");
  state.subprotocol_ = -1;
  if (!chosen.empty()) {
    const auto found = std::find(subprotocols.begin(), subprotocols.end(), chosen);
    if (found == subprotocols.end())
      return decoded::handshake_rejected({}, "the server chose a subprotocol we did not offer");
    state.subprotocol_ = static_cast<std::int8_t>(found - subprotocols.begin());
  }
  state.open_ = true;
  state.message_done_ = true;
  return decoded::handshake_done({}, end + 4);
}

} // namespace tether

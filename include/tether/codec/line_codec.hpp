// Newline-delimited text framing: readable in a packet capture and typeable from netcat or telnet.
//
// Wire format. Every frame is one line, its content followed by "\n":
//
//   data     <payload>\n            a payload that does not begin with DLE, sent as it is
//            DLE <payload>\n        a payload that begins with DLE gets one more DLE in front
//   ping     DLE "ping" \n          or  DLE "ping " <payload> \n
//   pong     DLE "pong" \n          or  DLE "pong " <payload> \n
//   goaway   DLE "goaway" \n        or  DLE "goaway " <payload> \n
//
// DLE is the byte 0x10 (ASCII "data link escape"), which typed text does not contain. A line starting with
// DLE DLE is data (minus the first DLE), so no payload can pass for a control line; a line starting with a
// single DLE and anything but the commands above is malformed rather than data, which keeps the space free
// for future commands. Control payloads follow the command after one space and may be empty.
//
// Line endings: one '\r' right before the '\n' is part of the terminator, not of the content, so peers
// that send "\r\n" work. A payload that itself ends in '\r' is therefore sent as "<payload>\r\r\n".
//
// Limits: a line's content (DLE and command included, terminator excluded) is at most max_line_length
// bytes. A longer line is malformed as soon as max_line_length + 2 bytes are buffered without a '\n',
// instead of buffering until a newline that a hostile or broken peer may never send. A payload containing
// '\n' cannot be sent; encode() refuses it.
#pragma once

#include <tether/detail/config.hpp>
#include <tether/codec/frame.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

namespace tether {

struct line_codec {
  struct decoder_state {
    std::size_t scanned = 0; // leading bytes of the buffer already known to hold no '\n'
  };
  static constexpr bool carries_control_frames = true;

  std::size_t max_line_length = 64 * 1024;

  std::size_t max_frame_size() const noexcept { return max_line_length; }
  decoded decode(std::string_view buffered, decoder_state& state) const noexcept;
  bool encode(frame_kind kind, std::string_view payload, std::string& out) const;
};

namespace detail {

inline constexpr std::string_view line_escape = "\x10"; // DLE

inline constexpr std::array<frame_kind, 3> line_control_kinds{frame_kind::ping, frame_kind::pong,
                                                              frame_kind::goaway};

// What precedes a non-empty control payload; without a payload the trailing space is left out.
constexpr std::string_view line_control_head(frame_kind kind) noexcept {
  switch (kind) {
  case frame_kind::ping:
    return "\x10ping ";
  case frame_kind::pong:
    return "\x10pong ";
  case frame_kind::goaway:
    return "\x10goaway ";
  case frame_kind::data:
  case frame_kind::binary:
    break;
  }
  return {};
}

constexpr decoded decode_line_content(std::string_view content, std::size_t consumed) noexcept {
  if (!content.starts_with(line_escape))
    return decoded::frame(frame_kind::data, content, consumed);
  if (content.substr(1).starts_with(line_escape))
    return decoded::frame(frame_kind::data, content.substr(1), consumed);
  for (const frame_kind kind : line_control_kinds) {
    const std::string_view head = line_control_head(kind);
    if (content.starts_with(head))
      return decoded::frame(kind, content.substr(head.size()), consumed);
    if (content == head.substr(0, head.size() - 1))
      return decoded::frame(kind, content.substr(content.size()), consumed);
  }
  return decoded::malformed("line starts with DLE but is neither escaped data nor a known control command");
}

} // namespace detail

inline decoded line_codec::decode(std::string_view buffered, decoder_state& state) const noexcept {
  // A valid line's '\n' lies within its first max_line_length + 2 bytes (content, optional '\r', '\n'), so
  // no more than that is ever searched. Saturating keeps max_line_length = SIZE_MAX meaning "unlimited".
  constexpr std::size_t terminator_room = 2;
  const std::size_t window_size = max_line_length <= std::string_view::npos - terminator_room
                                      ? max_line_length + terminator_room
                                      : std::string_view::npos;
  const std::string_view window = buffered.substr(0, window_size);
  const std::size_t newline = window.find('\n', state.scanned);
  if (newline == std::string_view::npos) {
    if (window.size() == window_size)
      return decoded::malformed("line longer than max_line_length");
    state.scanned = window.size();
    return decoded::need_more();
  }
  state = {};
  std::string_view content = buffered.substr(0, newline);
  if (content.ends_with('\r'))
    content.remove_suffix(1);
  if (content.size() > max_line_length)
    return decoded::malformed("line longer than max_line_length");
  return detail::decode_line_content(content, newline + 1);
}

inline bool line_codec::encode(frame_kind kind, std::string_view payload, std::string& out) const {
  std::string_view head;
  if (kind == frame_kind::binary)
    kind = frame_kind::data;
  if (kind != frame_kind::data) {
    head = detail::line_control_head(kind);
    if (head.empty())
      return false;
    if (payload.empty())
      head.remove_suffix(1);
  } else if (payload.starts_with(detail::line_escape)) {
    head = detail::line_escape;
  }
  if (payload.find('\n') != std::string_view::npos || payload.size() > max_line_length ||
      head.size() > max_line_length - payload.size())
    return false;

  const std::string_view terminator = payload.ends_with('\r') ? "\r\n" : "\n";
  const std::size_t start = out.size();
  out.resize(start + head.size() + payload.size() + terminator.size());
  auto cursor = out.begin() + static_cast<std::ptrdiff_t>(start);
  for (const std::string_view part : {head, payload, terminator})
    cursor = std::copy(part.begin(), part.end(), cursor);
  return true;
}

} // namespace tether

// The built-in codecs: line_codec (text lines, control lines escaped with DLE), length_prefixed_codec (binary
// frames with a 5-byte header) and raw_codec (bytes as they arrive, no control frames). decode() takes at
// most one frame from the front of a buffer; malformed input is final.
#include <tether/codec/codec.hpp>
#include <tether/codec/length_prefixed_codec.hpp>
#include <tether/codec/line_codec.hpp>
#include <tether/codec/raw_codec.hpp>

#include <fmt/core.h>

#include <string>
#include <string_view>
#include <vector>

using namespace std::string_literals;
using tether::decode_status;
using tether::frame_kind;

namespace {
int failures = 0;
void check(bool holds, std::string_view what) {
  if (!holds) {
    ++failures;
    fmt::print("FAILED: {}\n", what);
  }
}

struct frame {
  frame_kind kind;
  std::string payload;
  bool operator==(const frame&) const = default;
};

struct outcome {
  std::vector<frame> frames;
  std::string problem;  // empty unless the stream turned out malformed
};

// The loop a connection runs: decode, drop what was consumed, until the codec needs more or gives up.
template <tether::codec Codec>
outcome decode_all(const Codec& codec, std::string buffered) {
  typename Codec::decoder_state state;
  outcome result;
  for (;;) {
    const tether::decoded step = codec.decode(buffered, state);
    if (step.status == decode_status::need_more)
      return result;
    if (step.status == decode_status::malformed) {
      result.problem = step.problem;
      return result;
    }
    result.frames.push_back({step.kind, std::string{step.payload}});
    buffered.erase(0, step.consumed);  // the payload view is invalid from here on
  }
}
} // namespace

static_assert(tether::control_frame_codec<tether::line_codec>);
static_assert(tether::control_frame_codec<tether::length_prefixed_codec>);
static_assert(tether::codec<tether::raw_codec> && !tether::control_frame_codec<tether::raw_codec>);

int main() {
  const tether::line_codec lines{.max_line_length = 32};
  std::string wire;
  check(lines.encode(frame_kind::data, "hello", wire), "data line");
  check(lines.encode(frame_kind::ping, "7", wire), "ping line");
  check(lines.encode(frame_kind::data, "\x10looks like control", wire), "escaped data line");
  check(!lines.encode(frame_kind::data, "two\nlines", wire), "a newline cannot be carried");
  check(wire == "hello\n\x10ping 7\n\x10\x10looks like control\n", "line wire format");
  const outcome decoded_lines = decode_all(lines, wire + "partial");
  check(decoded_lines.frames == std::vector<frame>{{frame_kind::data, "hello"},
                                                   {frame_kind::ping, "7"},
                                                   {frame_kind::data, "\x10looks like control"}},
        "lines decode back; the partial line waits");
  check(decode_all(lines, "ok\r\n").frames == std::vector<frame>{{frame_kind::data, "ok"}}, "CRLF accepted");

  // Limits are enforced before the terminator arrives: 34 bytes without '\n' cannot become a 32-byte line.
  const outcome endless = decode_all(lines, std::string(34, 'a'));
  fmt::print("line_codec: {}\n", endless.problem);
  check(!endless.problem.empty(), "oversized line refused early");
  check(!decode_all(lines, "\x10reboot\n").problem.empty(), "unknown control command refused");

  const tether::length_prefixed_codec binary{.max_payload_size = 1024};
  std::string frames;
  check(binary.encode(frame_kind::data, "any\0bytes\n"s, frames), "binary data");
  check(binary.encode(frame_kind::goaway, "", frames), "goaway");
  check(frames.substr(0, 5) == "\0\0\0\x0a\0"s, "4-byte big-endian length, then the kind byte");
  check(decode_all(binary, frames).frames ==
            std::vector<frame>{{frame_kind::data, "any\0bytes\n"s}, {frame_kind::goaway, ""}},
        "binary frames decode back");
  // A declared length over the limit is refused from the header alone.
  const outcome huge = decode_all(binary, "\0\x10\0\0\0"s);
  fmt::print("length_prefixed_codec: {}\n", huge.problem);
  check(!huge.problem.empty(), "oversized declared length refused");

  const tether::raw_codec raw{.max_payload_size = 4};
  check(decode_all(raw, "0123456789").frames ==
            std::vector<frame>{{frame_kind::data, "0123"}, {frame_kind::data, "4567"}, {frame_kind::data, "89"}},
        "raw bytes in chunks of at most max_payload_size");
  std::string raw_out;
  check(!raw.encode(frame_kind::ping, "", raw_out), "raw carries no control frames");
  return failures == 0 ? 0 : 1;
}
